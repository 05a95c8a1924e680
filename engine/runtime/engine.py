"""The engine: detection, sending, receiving and applying in worker threads, or in one pass."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DatabaseError as SADatabaseError
from watchdog.events import (
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from engine.channels import channel_class
from engine.domain.side import SideCtx
from engine.events import EngineFailed, SyncChanged
from engine.service.installation import Installation
from engine.store import fsutil, notify
from engine.trackers.settings import EMBEDDED
from engine.vocab import Folder, SyncStatus

log = logging.getLogger("backbone.engine")

# Workers sleep until woken: the embedded tracker's commits wake detection (here directly, from
# another process through the home's notify/ folder), watched inboxes wake receiving, queued
# messages wake sending, ingested ones applying. The intervals below bound each sleep: they are
# the safety checks that find work a lost wake-up would have announced, each costing the same
# whatever the number of synchronizations.
DETECT_INTERVAL = (
    0.25  # sides of a remote tracker are asked this often (its connector keeps its poll_interval)
)
# Each safety tick costs 1-12 ms of CPU (a few queries), so they are seconds apart: an idle
# engine spends under 1% of a core (bench/idle.py). Retries (OFFLINE, SEND_ERROR) and ACK
# batches are due at their own times; they are at most one interval late.
SAFETY_INTERVAL = 5.0  # otherwise detection reads the change log's newest id this often
SEND_INTERVAL = 5.0  # the queue's folders (one indexed query) are looked at this often
SCAN_INTERVAL = 5.0  # the receive worker's longest sleep
SAFETY_SCANS_PER_SECOND = 20.0  # watched inboxes scanned without an event, round robin
APPLY_INTERVAL = 5.0
HOUSEKEEPING_INTERVAL = 2.0
SIDES_TTL = 1.0  # every side is read again at most this often, and only when the database changed
SIDES_READ_SHARE = 0.05  # ... and so that reading them takes at most this share of the time
# The events a watch asks the kernel for. Without a filter inotify also reports every opening
# and reading of the folder, and each scan of an inbox woke the watcher threads: at 10,000
# synchronizations the safety scans alone kept them at 10% of a core.
ARRIVAL_EVENTS: list[type[FileSystemEvent]] = [FileCreatedEvent, FileMovedEvent, FileClosedEvent]
NOTICE_EVENTS: list[type[FileSystemEvent]] = [FileCreatedEvent, FileAttribEvent, FileModifiedEvent]


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: Callable[[FileSystemEvent], None]) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._wake(event)


def _observer() -> BaseObserver:
    """A watchdog observer; on Linux one whose inotify does not hold events back. watchdog keeps
    a move out of a folder for 0.5 s waiting for its other half, and every later event of that
    folder waits behind it: taking a message out of an inbox delayed the next arrival's wake-up
    by up to half a second. Any event only wakes a worker that then scans, so pairs do not matter."""
    try:
        from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
    except ImportError:  # not Linux
        return Observer()

    class PromptEmitter(InotifyEmitter):
        def on_thread_start(self) -> None:
            super().on_thread_start()
            queue = getattr(getattr(self._inotify, "_move_event_grouper", None), "_queue", None)
            if queue is not None and hasattr(queue, "delay"):
                queue.delay = 0

    observer = InotifyObserver()
    observer._emitter_class = PromptEmitter
    return observer


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


@dataclass
class _View:
    """The sides as last read, with the indexes the workers use."""

    sides: list[SideCtx]
    by_id: dict[int, SideCtx] = field(default_factory=dict)
    running: list[SideCtx] = field(default_factory=list)
    running_ids: set[int] = field(default_factory=set)
    remote_running: list[SideCtx] = field(default_factory=list)  # their tracker is not embedded
    running_by_project: dict[str, list[SideCtx]] = field(default_factory=dict)  # embedded ones

    def __post_init__(self) -> None:
        for side in self.sides:
            self.by_id[side.id] = side
            if not side.running:
                continue
            self.running.append(side)
            self.running_ids.add(side.id)
            if side.tracker == EMBEDDED:
                self.running_by_project.setdefault(side.project, []).append(side)
            else:
                self.remote_running.append(side)


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
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, ObservedWatch] = {}  # inbox folder -> its watch
        self._remote: dict[Path, str | None] = {}  # inbox folder -> its network file system, if any
        self._arranged: set[int] = set()  # sides whose arrivals are watched or fetched by a thread
        self._mail_threads: dict[int, threading.Thread] = {}
        self._threaded = False
        self.failure: str | None = None
        # the sides, read again only when the database changed (`PRAGMA data_version`)
        self._view_cache: _View | None = None
        self._view_read = 0.0
        self._view_ttl = SIDES_TTL
        self._db_version: int | None = None
        self._probe: sqlite3.Connection | None = None
        self._sides_guard = threading.Lock()
        # detection
        self._change_mark = 0  # the newest change-log id looked at
        self._marks: dict[str, int] = {}  # project -> its newest change-log id
        self._detect_view: _View | None = None
        self._detect_seen: set[int] = set()
        self._dirty: set[int] = set()  # sides that may have changes left to detect
        self._unsubscribe: Callable[[], None] | None = None
        self._unlisten: Callable[[], None] | None = None
        # receiving
        self._scans, self._sends = _Pacer(), _Pacer()
        self._arrivals_guard = threading.Lock()
        self._arrived: set[Path] = set()  # watched inboxes with events since the last pass
        self._inbox_sides: dict[Path, set[int]] = {}  # watched inbox -> the sides reading it
        self._inbox_of: dict[int, Path] = {}  # side -> its watched inbox
        self._unwatched: set[int] = set()  # sides with an inbox no watch covers: scanned on their own
        self._lingering: set[int] = set()  # sides whose inbox kept files (not complete yet)
        self._rotation: list[int] = []  # watched sides, for the spread safety scan
        self._rotation_at = 0
        self._safety_budget = 0.0
        self._safety_clock = time.monotonic()
        self._arrange_view: _View | None = None
        self._arranged_at = -SCAN_INTERVAL
        self._receive_tick = SCAN_INTERVAL
        self._busy: set[int] = set()  # sides whose last scan took files: scanned again at once

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def start(self, *, full_reconcile: bool = False) -> None:
        """Take the home's lock, reconcile folders with the database (walking every folder
        when `full_reconcile`, else only when they may differ), start the workers."""
        self.inst.lock.require()
        try:
            self.inst.check_database()
        except BaseException:
            self.inst.lock.release()
            raise
        self._unsubscribe = self.inst.events.subscribe(self._on_event)
        on_change = getattr(self.inst.tracker, "on_change", None)
        if on_change is not None:
            self._unlisten = on_change(self._wakes["detect"].set)
        self._forget_sides()
        self.reconcile(full=full_reconcile)
        self._stop.clear()
        self._threaded = True
        self._observer = _observer()
        self._watch_notices()
        self._observer.start()
        for name, step, interval in (
            ("detect", self._detect_all, self._detect_timeout),
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
        for thread in [*self._threads, *self._mail_threads.values()]:
            thread.join(timeout)
            if thread.is_alive():
                self.inst.projection.spoil()  # still working as the process ends
        self._threads.clear()
        self._mail_threads.clear()
        self.inst.close_receivers()
        self._threaded = False
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        self._watches.clear()
        self._remote.clear()
        self._arranged.clear()
        self._inbox_sides.clear()
        self._inbox_of.clear()
        self._unwatched.clear()
        self._lingering.clear()
        self._rotation = []
        self._arrange_view = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self._close_probe()
        if self.inst.lock.held:
            log.info(
                "engine stopped for %s%s", self.inst.paths.root, f": {self.failure}" if self.failure else ""
            )
        self.inst.lock.release()

    def wake(self) -> None:
        for event in self._wakes.values():
            event.set()

    def run_once(self, max_passes: int = 10_000, *, full_reconcile: bool = False) -> int:
        """Do all pending work (detect, send, receive, apply) and return; takes the lock."""
        owned = not self.inst.lock.held
        if owned:
            self.inst.lock.require()
        unsubscribe = self.inst.events.subscribe(self._on_event)
        try:
            self.inst.check_database()
            self._forget_sides()  # a complete pass reads every side as stored now
            try:
                self.reconcile(full=full_reconcile)
                return self.step(max_passes)
            except BaseException:
                self.inst.projection.spoil()  # cut short: its files may be half moved
                raise
        finally:
            unsubscribe()
            self.close_channels()
            if owned:
                self.inst.lock.release()

    def close_channels(self) -> None:
        """Log out of mail servers opened by passes outside the worker threads (and close the
        database probe: an open connection keeps the WAL from its checkpoint at close)."""
        self.inst.close_receivers()
        if not self._threaded:
            self._close_probe()

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

    def reconcile(self, *, full: bool = False) -> int:
        """Folders to match the database, for every side (messages read in one query); files
        fixed. Skipped when they are known to match (`engine.store.projection`) unless `full`."""
        projection = self.inst.projection
        abandoned = projection.abandoned()
        why = "asked for" if full else projection.why_walk(abandoned)
        if why is None:
            log.debug("folders match the database: every process that moved files ended cleanly")
            return 0
        began = time.monotonic()
        placements = self.pipeline.placements()
        fixed = sum(self.pipeline.reconcile(side, placements.get(side.id, [])) for side in self._sides())
        projection.sealed_after_walk(abandoned)
        with self._sides_guard:  # the seal is our own commit: the sides just read are current
            if self._view_cache is not None:
                self._db_version = self._data_version()
        log.info(
            "reconciled every folder with the database (%s): %d file(s) fixed in %.1f s",
            why,
            fixed,
            time.monotonic() - began,
        )
        return fixed

    # -- workers --------------------------------------------------------------------------

    def _on_event(self, event: object) -> None:
        if isinstance(event, SyncChanged) and event.status:
            self._forget_sides()
            if self._threaded:
                self.wake()  # a side started, stopped or was configured: every worker looks again

    def _loop(self, name: str, step: Callable[[], int], interval: float | Callable[[], float]) -> None:
        """Run `step` until stopped: again at once after work, else after `interval` or a wake."""
        wake = self._wakes[name]
        while not self._stop.is_set():
            wake.clear()  # before the step: a wake-up during it makes the next wait return at once
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

    def _after(self, name: str) -> None:
        following = {"detect": "send", "receive": "apply", "apply": "send", "housekeeping": "send"}.get(name)
        if following:
            self._wakes[following].set()

    def _fail(self, text: str) -> None:
        self.failure = text
        self.inst.projection.spoil()
        log.error(text)
        self._stop.set()
        for event in self._wakes.values():
            event.set()
        self.inst.events.publish(EngineFailed(text))

    def _side_lock(self, side: SideCtx) -> threading.Lock:
        with self._locks_guard:
            return self._side_locks.setdefault(side.id, threading.Lock())

    def _sides(self) -> list[SideCtx]:
        return self._view().sides

    def _view(self) -> _View:
        """The sides, read again when the database changed since the last read, at most every
        `SIDES_TTL` seconds (longer where reading them all takes long: `SIDES_READ_SHARE`);
        this process's own status changes show at once (`_forget_sides`)."""
        now = time.monotonic()
        with self._sides_guard:
            view = self._view_cache
            if view is not None and now - self._view_read < self._view_ttl:
                return view
            version = self._data_version()
            if view is not None and version is not None and version == self._db_version:
                self._view_read = now  # nothing was committed since: look again after the TTL
                return view
            began = time.monotonic()
            view = _View(self.pipeline.sides())
            spent = time.monotonic() - began
            self._view_ttl = max(SIDES_TTL, spent / SIDES_READ_SHARE)
            self._view_cache, self._view_read, self._db_version = view, time.monotonic(), version
            return view

    def _data_version(self) -> int | None:
        """SQLite's count of commits by other connections (None: not known, read anyway)."""
        if not self.inst.db.is_sqlite:
            return None
        try:
            if self._probe is None:
                self._probe = sqlite3.connect(self.inst.paths.database, check_same_thread=False, timeout=30)
            return int(self._probe.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def _close_probe(self) -> None:
        with self._sides_guard:
            if self._probe is not None:
                self._probe.close()
                self._probe = None

    def _forget_sides(self, _event: object = None) -> None:
        with self._sides_guard:
            self._view_cache = None

    def _detect_timeout(self) -> float:
        view = self._view_cache
        if self._dirty or (view is not None and view.remote_running):
            return DETECT_INTERVAL
        return SAFETY_INTERVAL

    def _detect_all(self) -> int:
        """Detect for running sides whose project changed since the last look, until each has
        read to the end of the change log (a side just started or restarted is looked at too,
        a remote tracker's at every pass: its connector polls at its own pace)."""
        view = self._view()
        newest = getattr(self.inst.tracker, "newest_changes", None)
        if newest is None:  # a tracker that cannot say which projects changed
            self._dirty = set(view.running_ids)
        else:
            marks, self._change_mark = newest(self._change_mark)
            for project, mark in marks.items():
                self._marks[project] = max(mark, self._marks.get(project, 0))
                self._dirty.update(side.id for side in view.running_by_project.get(project, ()))
            if view is not self._detect_view:  # sides started or restarted since the last look
                self._detect_view = view
                self._detect_seen &= view.running_ids
                for side in view.running:
                    if side.id in self._detect_seen:
                        continue
                    if side.tracker != EMBEDDED or self._marks.get(side.project, 0) > side.cursor:
                        self._dirty.add(side.id)
                    else:
                        self._detect_seen.add(side.id)  # nothing after its cursor
            self._dirty.update(side.id for side in view.remote_running)
        self._dirty &= view.running_ids
        work = 0
        for side_id in sorted(self._dirty):
            side = view.by_id[side_id]
            with self._side_lock(side):
                work += self.pipeline.detect(side)
            self._detect_seen.add(side.id)
            if side.id in self.pipeline.caught_up:
                self._dirty.discard(side.id)
        return work

    def _pending_sides(self, folders: set[str]) -> list[SideCtx]:
        """The sides with messages in one of `folders`, in id order (a side not known yet, made
        by another process, has the sides read again)."""
        pending = self.pipeline.pending()
        wanted = sorted(side_id for side_id, held in pending.items() if held & folders)
        view = self._view()
        if any(side_id not in view.by_id for side_id in wanted):
            self._forget_sides()
            view = self._view()
        return [view.by_id[side_id] for side_id in wanted if side_id in view.by_id]

    def _send_all(self) -> int:
        now = time.monotonic()
        return sum(
            self.pipeline.send(side)
            for side in self._pending_sides({Folder.SEND, Folder.SEND_ERROR})
            if self._sends.due(side, "send_interval", now)
        )

    def _receive_all(self) -> int:
        """Take arrivals: every side in a pass outside the workers; in the worker, the sides
        whose inbox had events, those whose last scan took files or left some, those no watch
        covers (at their `scan_interval`), and a few others as a safety scan spread over time."""
        view = self._view()
        if not self._threaded:
            work = 0
            for side in view.sides:
                if channel_class(side).fetched:
                    if side.status != SyncStatus.DECLINED:
                        work += self.inst.fetch_arrivals(side)
                else:
                    work += self.pipeline.ingest(side)
            return work
        now = time.monotonic()
        self._arrange(view, now)
        with self._arrivals_guard:
            arrived, self._arrived = self._arrived, set()
        due: set[int] = set(self._busy)
        for folder in arrived:
            due |= self._inbox_sides.get(folder, set())
        tick = SCAN_INTERVAL
        for side_id in self._unwatched | self._lingering:
            own = view.by_id.get(side_id)
            if own is None:
                continue
            tick = min(tick, own.settings.get("scan_interval"))
            if side_id not in due and self._scans.due(own, "scan_interval", now):
                due.add(side_id)
        due |= self._safety_scan(view, now)
        self._receive_tick = tick
        work = 0
        for side_id in sorted(due):
            woken = view.by_id.get(side_id)
            if woken is None or channel_class(woken).fetched:
                continue
            taken = self.pipeline.ingest(woken)  # it took files: more may wait, look again at once
            self._busy.discard(side_id)
            if taken:
                self._busy.add(side_id)
            elif side_id in self._inbox_of:
                self._check_inbox(woken)
            work += taken
        return work

    def _safety_scan(self, view: _View, now: float) -> set[int]:
        """The next watched sides in turn, `SAFETY_SCANS_PER_SECOND` on average (each at most
        once per its `scan_interval`): what a lost or unseen event left is found this way."""
        elapsed, self._safety_clock = now - self._safety_clock, now
        if not self._rotation:
            self._safety_budget = 0.0
            return set()
        self._safety_budget = min(
            float(len(self._rotation)), self._safety_budget + elapsed * SAFETY_SCANS_PER_SECOND
        )
        chosen: set[int] = set()
        while self._safety_budget >= 1.0:
            self._safety_budget -= 1.0
            self._rotation_at %= len(self._rotation)
            side = view.by_id.get(self._rotation[self._rotation_at])
            self._rotation_at += 1
            if side is not None and self._scans.due(side, "scan_interval", now):
                chosen.add(side.id)
        return chosen

    def _check_inbox(self, side: SideCtx) -> None:
        """After a scan that took nothing: a watched inbox that still holds files (one being
        written, gpg unavailable) is scanned at the side's `scan_interval` until it is empty; one
        that failed (a share gone) is unwatched, to be watched again once it is back."""
        folder = self._inbox_of[side.id]
        if side.channel_error:
            self._unwatch(folder)
            return
        try:
            waiting = any(not name.startswith(".") for name in os.listdir(folder))
        except OSError:
            waiting = False
        if waiting:
            self._lingering.add(side.id)
        else:
            self._lingering.discard(side.id)

    def _on_arrival(self, folder: Path) -> None:
        with self._arrivals_guard:
            self._arrived.add(folder)
        self._wakes["receive"].set()

    def _watch_notices(self) -> None:
        """Watch the home's notify/ folder: another process's tracker writes wake detection."""
        if self._observer is None:
            return
        folder = notify.notify_folder(self.inst.paths.root)
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            self._observer.schedule(
                _Wake(self._on_notice), str(folder), recursive=False, event_filter=NOTICE_EVENTS
            )
        except OSError as exc:
            log.warning("cannot watch %s (%s); changes are found by the periodic check", folder, exc)

    def _on_notice(self, event: FileSystemEvent) -> None:
        name = os.path.basename(os.fsdecode(event.src_path))
        if name == notify.SYNCS_CHANGED:
            self._forget_sides()
            self.wake()
        elif name == notify.TRACKER_CHANGED:
            self._wakes["detect"].set()

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
        work = 0
        for side in self._pending_sides({Folder.RECEIVE, Folder.OFFLINE}):
            with self._side_lock(side):
                if side.running:
                    # local edits are registered before partner values are written over them
                    self.pipeline.detect(side)
                work += self.pipeline.apply(side)
        return work

    def _arrange(self, view: _View, now: float) -> None:
        """Arrange, once per side, to be woken by arrivals: a receive loop for a channel that
        fetches, a watch on the inbox folder of one that has one. Looked at when the sides were
        read again, and every `SCAN_INTERVAL` while a side's inbox cannot be watched yet."""
        if self._observer is None:
            return
        if view is self._arrange_view and (not self._unwatched or now - self._arranged_at < SCAN_INTERVAL):
            return
        self._arrange_view, self._arranged_at = view, now
        for side in view.sides:
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
            if folder is None:
                self._arranged.add(side.id)  # handed in (local): nothing to scan
                continue
            if folder not in self._watches and not self._schedule(folder):
                self._unwatched.add(side.id)  # scanned at its scan_interval; watched once it can be
                continue
            self._unwatched.discard(side.id)
            self._arranged.add(side.id)
            self._inbox_of[side.id] = folder
            self._inbox_sides.setdefault(folder, set()).add(side.id)
            self._busy.add(side.id)  # a new watch sees no file that came before it: scan once now
        known = view.by_id.keys()
        self._unwatched &= known
        self._rotation = sorted(side_id for side_id in self._inbox_of if side_id in known)

    def _schedule(self, folder: Path) -> bool:
        """Watch `folder` (where a symbolic link points: watchdog does not follow it)."""
        assert self._observer is not None
        if not folder.is_dir():
            return False  # looked at again later: the share may come back
        if folder not in self._remote:
            self._remote[folder] = fsutil.network_filesystem(folder)
            if self._remote[folder]:
                log.info(
                    "inbox %s is on a network share (%s): a watch does not see the partner's "
                    "files there; its synchronizations scan it every scan_interval",
                    folder,
                    self._remote[folder],
                )
        if self._remote[folder]:
            return False
        try:
            watch = self._observer.schedule(
                _Wake(lambda _event: self._on_arrival(folder)),
                os.path.realpath(folder),
                recursive=False,
                event_filter=ARRIVAL_EVENTS,
            )
        except OSError as exc:
            log.warning("cannot watch %s (%s); the periodic scan covers it", folder, exc)
            return False
        self._watches[folder] = watch
        return True

    def _unwatch(self, folder: Path) -> None:
        """Stop watching an inbox that failed: its sides are scanned on their own until it is back."""
        watch = self._watches.pop(folder, None)
        if watch is not None and self._observer is not None:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)
        for side_id in self._inbox_sides.pop(folder, set()):
            self._inbox_of.pop(side_id, None)
            self._arranged.discard(side_id)
            self._unwatched.add(side_id)
            self._lingering.discard(side_id)
        self._rotation = [side_id for side_id in self._rotation if side_id in self._inbox_of]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
