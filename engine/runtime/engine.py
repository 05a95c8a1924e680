"""The engine: detection, sending, receiving and applying in worker threads, or in one pass."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import DatabaseError as SADatabaseError
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from engine.channels import channel_class
from engine.domain.side import SideCtx
from engine.events import EngineFailed, SyncChanged
from engine.service.installation import Installation
from engine.trackers.settings import EMBEDDED
from engine.vocab import Folder, SyncStatus

log = logging.getLogger("backbone.engine")

DETECT_INTERVAL = 0.25
SEND_INTERVAL = 1.0
SCAN_INTERVAL = 2.0  # the receive worker's tick when no side asks for a shorter scan_interval
APPLY_INTERVAL = 1.0
HOUSEKEEPING_INTERVAL = 1.0
SIDES_TTL = 1.0


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._wake()


class _Pacer:
    """When each side last did a paced step (a scan, a send), to keep its interval setting."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}

    def due(self, side: SideCtx, setting: str, now: float) -> bool:
        """Whether `side`'s interval `setting` (seconds) has passed since its last step."""
        interval = side.settings.get(setting)
        if interval and now - self._last.get(side.id, -interval) < interval:
            return False
        self._last[side.id] = now
        return True


class Engine:
    """Runs the pipeline for every side of one installation; one per home (lock file)."""

    def __init__(self, installation: Installation) -> None:
        self.inst = installation
        self.pipeline = installation.pipeline
        self._stop = installation.stop_event  # the pipeline's steps watch the same event
        self._stop.clear()
        self._wakes = {
            name: threading.Event() for name in ("detect", "send", "receive", "apply", "housekeeping")
        }
        self._threads: list[threading.Thread] = []
        self._side_locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._watched: set[Path] = set()
        self._arranged: set[int] = set()  # sides whose arrivals are watched or fetched by a thread
        self._mail_threads: dict[int, threading.Thread] = {}
        self._threaded = False
        self.failure: str | None = None
        self._sides_cache: tuple[float, list[SideCtx]] | None = None
        self._sides_guard = threading.Lock()
        self._change_mark = 0
        self._detect_seen: set[int] = set()
        self._dirty: set[int] = set()  # sides that may have changes left to detect
        self._unsubscribe: Callable[[], None] | None = None
        self._scans, self._sends = _Pacer(), _Pacer()
        self._arrived = threading.Event()  # an inbox watch fired: scan every side now
        self._receive_tick = SCAN_INTERVAL  # the shortest scan_interval of any side, at most 2 s
        self._busy: set[int] = set()  # sides whose last scan took files: scanned again at once

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def start(self) -> None:
        """Take the home's lock, reconcile folders with the database, start the workers."""
        self.inst.lock.require()
        try:
            self.inst.check_database()
        except BaseException:
            self.inst.lock.release()
            raise
        self._unsubscribe = self.inst.events.subscribe(self._on_event)
        self.reconcile()
        self._stop.clear()
        self._threaded = True
        self._observer = Observer()
        self._observer.start()
        for name, step, interval in (
            ("detect", self._detect_all, DETECT_INTERVAL),
            ("send", self._send_all, SEND_INTERVAL),
            ("receive", self._receive_all, lambda: self._receive_tick),
            ("apply", self._apply_all, APPLY_INTERVAL),
            ("housekeeping", self.inst.housekeeping, HOUSEKEEPING_INTERVAL),
        ):
            thread = threading.Thread(
                target=self._loop, args=(name, step, interval), name=f"backbone-{name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        log.info("engine started for %s (pid %d)", self.inst.paths.root, os.getpid())

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every worker to stop after the message in hand, and wait for them."""
        self._stop.set()
        for event in self._wakes.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        for thread in self._mail_threads.values():
            thread.join(timeout)
        self._mail_threads.clear()
        self.inst.close_receivers()
        self._threaded = False
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
            self._watched.clear()
        self._arranged.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.inst.lock.held:
            log.info(
                "engine stopped for %s%s", self.inst.paths.root, f": {self.failure}" if self.failure else ""
            )
        self.inst.lock.release()

    def wake(self) -> None:
        for event in self._wakes.values():
            event.set()

    def run_once(self, max_passes: int = 10_000) -> int:
        """Do all pending work (detect, send, receive, apply) and return; takes the lock."""
        owned = not self.inst.lock.held
        if owned:
            self.inst.lock.require()
        unsubscribe = self.inst.events.subscribe(self._on_event)
        try:
            self.inst.check_database()
            self.reconcile()
            return self.step(max_passes)
        finally:
            unsubscribe()
            self.close_channels()
            if owned:
                self.inst.lock.release()

    def close_channels(self) -> None:
        """Log out of mail servers opened by passes outside the worker threads."""
        self.inst.close_receivers()

    def step(self, max_passes: int = 10_000) -> int:
        """Passes over every side until one does nothing (the lock must be held)."""
        total = 0
        for _ in range(max_passes):
            work = self._detect_all() + self._send_all() + self._receive_all() + self._apply_all()
            work += self.inst.housekeeping()
            self.pipeline.flush_activity()
            total += work
            if not work or self._stop.is_set():
                break
        return total

    def reconcile(self) -> int:
        """Folders to match the database, for every side (messages read in one query)."""
        placements = self.pipeline.placements()
        return sum(
            self.pipeline.reconcile(side, placements.get(side.id, [])) for side in self.pipeline.sides()
        )

    # -- workers --------------------------------------------------------------------------

    def _on_event(self, event: object) -> None:
        if isinstance(event, SyncChanged) and event.status:
            self._forget_sides()

    def _loop(self, name: str, step: Callable[[], int], interval: float | Callable[[], float]) -> None:
        """Run `step` until stopped: again at once after work, else after `interval` or a wake."""
        wake = self._wakes[name]
        while not self._stop.is_set():
            try:
                work = step()
            except SADatabaseError as exc:
                self._fail(f"the engine stopped ({name}): {self.inst.db.damage_text(exc.orig or exc)}")
                return
            except Exception as exc:  # noqa: BLE001
                log.exception("worker %s failed", name)
                self._fail(f"{name} worker failed: {exc!r}; the engine stopped")
                return
            if work:
                self.pipeline.flush_activity()
                self._after(name)
                continue
            wake.wait(interval() if callable(interval) else interval)
            wake.clear()

    def _after(self, name: str) -> None:
        following = {"detect": "send", "receive": "apply", "apply": "send", "housekeeping": "send"}.get(name)
        if following:
            self._wakes[following].set()

    def _fail(self, text: str) -> None:
        self.failure = text
        log.error(text)
        self._stop.set()
        for event in self._wakes.values():
            event.set()
        self.inst.events.publish(EngineFailed(text))

    def _side_lock(self, side: SideCtx) -> threading.Lock:
        with self._locks_guard:
            return self._side_locks.setdefault(side.id, threading.Lock())

    def _sides(self) -> list[SideCtx]:
        """The sides, re-read at most every `SIDES_TTL` seconds (changes from another process
        show within that time; this process's own changes show at once)."""
        now = time.monotonic()
        with self._sides_guard:
            if self._sides_cache is None or now - self._sides_cache[0] > SIDES_TTL:
                self._sides_cache = (now, self.pipeline.sides())
            return self._sides_cache[1]

    def _forget_sides(self, _event: object = None) -> None:
        with self._sides_guard:
            self._sides_cache = None

    def _detect_all(self) -> int:
        """Detect for running sides whose project changed since the last look, until each has
        read to the end of the change log (a side just started or restarted is looked at too)."""
        running = [side for side in self._sides() if side.running]
        running_ids = {side.id for side in running}
        self._detect_seen &= running_ids  # a restarted side is looked at again
        changed_since = getattr(self.inst.tracker, "projects_changed_since", None)
        if changed_since is None:
            self._dirty = set(running_ids)
        else:  # the embedded tracker says which projects changed; a remote one is polled at its pace
            projects, self._change_mark = changed_since(self._change_mark)
            self._dirty |= {
                s.id
                for s in running
                if s.tracker != EMBEDDED or s.project in projects or s.id not in self._detect_seen
            }
        self._dirty &= running_ids
        work = 0
        for side in running:
            if side.id not in self._dirty:
                continue
            with self._side_lock(side):
                work += self.pipeline.detect(side)
            self._detect_seen.add(side.id)
            if side.id in self.pipeline.caught_up:
                self._dirty.discard(side.id)
        return work

    def _send_all(self) -> int:
        pending = self.pipeline.pending()
        now = time.monotonic()
        return sum(
            self.pipeline.send(side)
            for side in self._sides()
            if pending.get(side.id, set()) & {Folder.SEND, Folder.SEND_ERROR}
            and self._sends.due(side, "send_interval", now)
        )

    def _receive_all(self) -> int:
        sides = self._sides()
        self._watch(sides)
        work = 0
        arrived = self._arrived.is_set() or not self._threaded
        self._arrived.clear()
        now = time.monotonic()
        tick = SCAN_INTERVAL
        for side in sides:
            tick = min(tick, side.settings.get("scan_interval"))
            if channel_class(side).fetched:  # in threaded mode, by the side's own receive loop
                if not self._threaded and side.status != SyncStatus.DECLINED:
                    work += self.inst.fetch_arrivals(side)
            elif arrived or side.id in self._busy or self._scans.due(side, "scan_interval", now):
                taken = self.pipeline.ingest(side)  # it took files: more may wait, look again at once
                self._busy.discard(side.id)
                if taken:
                    self._busy.add(side.id)
                work += taken
        self._receive_tick = tick
        return work

    def _on_arrival(self) -> None:
        self._arrived.set()
        self._wakes["receive"].set()

    def _fetch_loop(self, side_id: int) -> None:
        """One side whose channel fetches: fetch, then wait (IMAP IDLE) until the server has more."""
        while not self._stop.is_set():
            try:
                side = self.pipeline.side(side_id)
            except LookupError:
                return  # the synchronization was deleted
            try:
                if self.inst.fetch_arrivals(side):
                    self._wakes["apply"].set()
                    continue
                self.inst.wait_for_arrivals(side, side.settings.get("mail_idle"))
            except SADatabaseError as exc:
                self._fail(f"the engine stopped (mail receive): {self.inst.db.damage_text(exc.orig or exc)}")
                return
            except Exception:  # noqa: BLE001
                log.exception("mail receive for %s failed; retrying", side.sync_key)
                self._stop.wait(5)

    def _apply_all(self) -> int:
        pending = self.pipeline.pending()
        work = 0
        for side in self._sides():
            if not pending.get(side.id, set()) & {Folder.RECEIVE, Folder.OFFLINE}:
                continue
            with self._side_lock(side):
                if side.running:
                    # local edits are registered before partner values are written over them
                    self.pipeline.detect(side)
                work += self.pipeline.apply(side)
        return work

    def _watch(self, sides: list[SideCtx]) -> None:
        """Arrange, once per side, to be woken by arrivals: a receive loop for a channel that
        fetches, a watch on the inbox folder of one that has one."""
        if self._observer is None:
            return
        for side in sides:
            if side.id in self._arranged:
                continue
            if channel_class(side).fetched:
                thread = threading.Thread(
                    target=self._fetch_loop, args=(side.id,), name=f"backbone-mail-{side.id}", daemon=True
                )
                self._mail_threads[side.id] = thread
                self._arranged.add(side.id)
                thread.start()
                continue
            channel = self.pipeline.channel_for(side)
            folder = channel.inbox
            channel.close()
            if folder is None or folder in self._watched:
                self._arranged.add(side.id)  # handed in (local), or watched already
                continue
            if not folder.is_dir():
                continue  # looked at again next pass: the share may come back
            try:
                # watch where a symbolic link points: watchdog does not follow it
                self._observer.schedule(_Wake(self._on_arrival), os.path.realpath(folder), recursive=False)
                self._watched.add(folder)
                self._arranged.add(side.id)
            except OSError as exc:
                log.warning("cannot watch %s (%s); the periodic scan covers it", folder, exc)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
