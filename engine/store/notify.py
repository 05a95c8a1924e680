"""Wake-ups between the processes of one home: small files in `notify/` the engine watches.

A process that changed something the engine should act on (an issue written through the
embedded tracker, a synchronization started or edited from the CLI) touches a file here; the
engine's watch on the folder wakes the worker that handles it. A notice only makes the engine
faster: its periodic safety checks find the same work without one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

NOTIFY_FOLDER = "notify"
TRACKER_CHANGED = "tracker"  # the embedded tracker's change log grew
SYNCS_CHANGED = "syncs"  # a synchronization's row changed (status, settings, configuration)


def notify_folder(home: Path) -> Path:
    """The home's folder of wake-up files."""
    return home / NOTIFY_FOLDER


def touch(path: Path) -> None:
    """Mark `path` as changed now (created when missing); a failure is ignored, the periodic
    checks cover what a lost notice would have said."""
    with contextlib.suppress(OSError):
        try:
            os.utime(path)
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
