"""The Textual application shell: runs the engine's workers unless another process holds them."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.message import Message

from engine.engine import Engine
from engine.events import EngineFailed, Event
from engine.installation import Installation
from screens.overview import OverviewScreen


class EngineEvent(Message):
    """An engine event, posted from a worker thread."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineEvent) and not isinstance(self.event, EngineFailed)


class BackboneApp(App[int]):
    TITLE = "Backbone TUI"
    BINDINGS = [Binding("q", "quit", "Quit", id="app.quit")]

    def __init__(self, installation: Installation, project: str | None = None,
                 run_engine: bool = True) -> None:
        super().__init__()
        self.installation = installation
        self.project = project
        self.engine: Engine | None = Engine(installation) if run_engine else None
        self._unsubscribe = installation.events.subscribe(lambda event: self.post_message(EngineEvent(event)))

    def on_mount(self) -> None:
        if self.engine is not None:
            if self.installation.lock.acquire():
                self.installation.lock.release()
                self.engine.start()
                self.sub_title = "engine running"
            else:
                pid = self.installation.lock.holder_pid()
                self.engine = None
                self.sub_title = f"engine held by process {pid}"
        self.push_screen(OverviewScreen(self.installation, self.project))
        self.set_interval(2.0, self._refresh)

    def _refresh(self) -> None:
        screen = self.screen
        if isinstance(screen, OverviewScreen):
            screen.action_refresh()

    def on_engine_event(self, message: EngineEvent) -> None:
        if isinstance(message.event, EngineFailed):
            self.notify(message.event.text, severity="error", timeout=30)
        self._refresh()

    def on_unmount(self) -> None:
        self._unsubscribe()
        if self.engine is not None:
            self.engine.stop()


def run_tui(installation: Installation, project: str | None = None) -> int:
    app = BackboneApp(installation, project)
    app.run()
    return app.return_code or 0
