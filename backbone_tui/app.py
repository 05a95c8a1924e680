"""The Textual application shell: runs the engine's workers unless another process holds them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from engine.errors import BackboneError
from engine.events import EngineFailed, Event
from engine.runtime.engine import Engine
from engine.service.installation import Installation, SyncInfo
from screens.commands import APP_COMMANDS
from screens.overview import OverviewScreen

T = TypeVar("T")
RELOAD_GROUP, ACTIONS_GROUP, ENGINE_GROUP = "reload", "actions", "engine"
FINISHED = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)


class EngineEvent(Message):
    """An engine event, posted from a worker thread; a newer one replaces one still queued."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return (
            isinstance(message, EngineEvent)
            and not isinstance(message.event, EngineFailed)
            and not isinstance(self.event, EngineFailed)
        )


class BackboneApp(App[int]):
    """Implements `screens.driver.Driver`: owns the engine, the workers and the reloads."""

    CSS_PATH = "backbone.tcss"
    TITLE = "Backbone"
    BINDINGS = [command.binding() for command in APP_COMMANDS]

    def __init__(
        self,
        installation: Installation,
        project: str | None = None,
        run_engine: bool = True,
        *,
        clock: Callable[[], datetime] | None = None,
        poll_interval: float = 2.0,
        reload_gap: float = 0.2,
    ) -> None:
        super().__init__()
        self.installation = installation
        self.project = project
        self.clock = clock or (lambda: datetime.now(UTC))
        self.engine: Engine | None = Engine(installation) if run_engine else None
        self.poll_interval = poll_interval
        self.reload_gap = reload_gap
        self.notices: list[tuple[SeverityLevel, str]] = []
        self.reloads = 0
        self._reload_running = False
        self._reload_again = False
        self._last_load_seconds = 0.0
        self._engine_guard = threading.Lock()
        self._engine_closed = False
        self._done: dict[Worker[Any], Callable[[Any], object]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self.overview = OverviewScreen(self, project)

    # -- Driver ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock()

    def submit(
        self,
        title: str,
        work: Callable[[], T],
        done: Callable[[T], Any] | None = None,
        *,
        group: str = ACTIONS_GROUP,
    ) -> None:
        worker = self.run_worker(work, name=title, group=group, thread=True, exit_on_error=False)
        if done is not None:
            self._done[worker] = done

    def request_reload(self) -> None:
        if self._reload_running:
            self._reload_again = True
            return
        self._start_reload()

    def _start_reload(self) -> None:
        self._reload_running = True
        scope, installation = self.overview.model.scope, self.installation

        def load() -> tuple[str | None, list[SyncInfo]]:
            began = time.monotonic()
            syncs = installation.list_syncs(project=scope)
            self._last_load_seconds = time.monotonic() - began
            return scope, syncs

        self.submit("Refresh", load, self._reloaded, group=RELOAD_GROUP)

    def _reloaded(self, result: tuple[str | None, list[SyncInfo]]) -> None:
        self.reloads += 1
        if not self.overview.apply_syncs(*result):
            self._reload_again = True

    @property
    def reload_pending(self) -> bool:
        return self._reload_running or self._reload_again

    # -- lifecycle ------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return self.overview

    def on_mount(self) -> None:
        self._start_engine()
        self._unsubscribe = self.installation.events.subscribe(self._from_engine)
        self.set_interval(self.poll_interval, self.request_reload)
        self.request_reload()

    def _start_engine(self) -> None:
        """Start the engine's workers in the background (reconciling a big home takes a while)."""
        engine = self.engine
        if engine is None:
            self.sub_title = "engine off (view only)"
            return
        if not self.installation.lock.acquire():
            self.engine = None
            self.sub_title = f"engine held by process {self.installation.lock.holder_pid()}"
            return
        self.installation.lock.release()
        self.sub_title = "engine starting"

        def start() -> None:
            with self._engine_guard:
                if not self._engine_closed:
                    engine.start()

        def started(_: None) -> None:
            if engine.running:
                self.sub_title = "engine running"

        self.submit("Start the engine", start, started, group=ENGINE_GROUP)

    def _from_engine(self, event: Event) -> None:
        """Called on the engine's (or an action worker's) thread: only post a message."""
        self.post_message(EngineEvent(event))

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        with self._engine_guard:  # waits for a start in progress
            self._engine_closed = True
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    # -- events ---------------------------------------------------------------------------

    def on_engine_event(self, message: EngineEvent) -> None:
        if isinstance(message.event, EngineFailed):
            self.sub_title = "engine stopped (failure)"
            self.notify(message.event.text, severity="error", timeout=30)
        self.request_reload()
        live = getattr(self.screen, "engine_changed", None)  # a screen that follows the engine
        if callable(live):
            live()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where background work ends: results, failures, follow-up reloads."""
        worker, state = event.worker, event.state
        if state not in FINISHED:
            return
        done = self._done.pop(worker, None)
        if state == WorkerState.SUCCESS and done is not None:
            done(worker.result)
        elif state == WorkerState.ERROR:
            error = worker.error
            text = str(error) if isinstance(error, BackboneError) else f"{type(error).__name__}: {error}"
            self.notify(f"{worker.name} failed: {text}", severity="error", timeout=15)
        if worker.group == RELOAD_GROUP:
            if self._reload_again:  # stay "running" through the gap, so requests coalesce
                self._reload_again = False
                # big homes reload slowly: keep reloading under a third of the time
                self.set_timer(max(self.reload_gap, 2 * self._last_load_seconds), self._start_reload)
            else:
                self._reload_running = False
        elif worker.group == ACTIONS_GROUP:
            self.request_reload()
        elif worker.group == ENGINE_GROUP and state == WorkerState.ERROR:
            self.engine = None
            self.sub_title = "engine not running (failed to start)"

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications never parse markup (they quote user data) and are kept for tests."""
        self.notices.append((severity, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def action_help_quit(self) -> None:
        """ctrl+c copies in a text field; elsewhere it says how to quit (Textual's hint is markup)."""
        self.notify("Press q (or ctrl+q) to quit Backbone", title="Do you want to quit?")

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, OverviewScreen):
            for title, help_text, callback in screen.palette_commands():
                yield SystemCommand(title, help_text, callback)
            return
        # the other screens and dialogs: every binding with an id that applies now
        for binding in screen.BINDINGS:
            if not isinstance(binding, Binding) or not binding.id or binding.id.startswith("app."):
                continue
            if not screen.check_action(binding.action.split("(")[0], ()):
                continue
            area = binding.id.split(".")[0]
            yield SystemCommand(
                f"{area}: {binding.description}",
                str(binding.tooltip or binding.description),
                partial(screen.run_action, binding.action),
            )


def run_tui(installation: Installation, project: str | None = None) -> int:
    app = BackboneApp(installation, project)
    app.run()
    return app.return_code or 0
