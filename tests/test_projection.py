"""A start walks every message folder only when they may differ from the database: after a
process was killed, after work stopped half-way, after the database was replaced by a copy, or
when asked (`backbone run --reconcile`). After clean work it trusts the folders (bench/idle.py:
start-up at 10,000 synchronizations). Real homes, real processes killed with SIGKILL."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backbone_tui.cli import main
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.store import fsutil
from engine.vocab import Folder, Reason
from tests.conftest import sync_all

ROOT = Path(__file__).resolve().parent.parent


def _orphan(demo: Demo) -> Path:
    """A message file under Globex's RECEIVE that no row names (what a rename before a lost
    commit leaves); a walk files it, a trusted start leaves it."""
    side = demo.globex.paths.data / demo.key / "GLOBEX-1"
    path = side / Folder.RECEIVE / "00000000000000000001-orphan.dat"
    path.write_bytes(b"not a message")
    return path


def _reopen(demo: Demo) -> Installation:
    demo.globex.close()
    demo.globex = Installation(demo.root / "globex")
    return demo.globex


def _synced(demo: Demo) -> None:
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": "one"}, as_user="alice")
    sync_all(demo)
    Engine(demo.globex).reconcile()  # the seal the first start leaves


def test_after_clean_work_a_start_trusts_the_folders(paired: Demo) -> None:
    _synced(paired)
    globex = _reopen(paired)
    assert globex.projection.why_walk(globex.projection.abandoned()) is None
    orphan = _orphan(paired)
    assert Engine(globex).reconcile() == 0
    assert orphan.exists()  # not looked at: nothing could have left it
    assert Engine(globex).reconcile(full=True) == 1  # as `backbone run --reconcile`
    assert not orphan.exists()
    filed = [m for m in globex.messages(paired.key) if m.original_name == orphan.name]
    assert [(m.folder, m.reason_code) for m in filed] == [(Folder.UNKNOWN, Reason.ORPHAN_FILE)]


def test_a_killed_process_makes_the_next_start_walk(paired: Demo) -> None:
    _synced(paired)
    paired.globex.close()
    orphan = _orphan(paired)
    code = (
        "import os, sys\n"
        "from engine.service.installation import Installation\n"
        "Installation(sys.argv[1])\n"
        "os.kill(os.getpid(), 9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(paired.root / "globex")], cwd=ROOT, check=False)
    assert killed.returncode == -signal.SIGKILL
    globex = paired.globex = Installation(paired.root / "globex")
    abandoned = globex.projection.abandoned()
    assert len(abandoned) == 1
    assert "stopped without finishing" in (globex.projection.why_walk(abandoned) or "")
    assert Engine(globex).reconcile() == 1
    assert not orphan.exists()
    assert not abandoned[0].exists()  # forgotten once the walk is done
    assert Engine(globex).reconcile() == 0


def test_work_cut_short_by_an_error_makes_the_next_start_walk(
    paired: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    _synced(paired)
    globex = _reopen(paired)
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "two"}, as_user="alice")
    Engine(paired.acme).run_once()

    def full_disk(source: Path, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil, "move", full_disk)  # applying moves RECEIVE -> PROCESSED
    with pytest.raises(OSError, match="No space left"):
        Engine(globex).run_once()
    monkeypatch.undo()
    orphan = _orphan(paired)
    globex = _reopen(paired)  # a clean close after the error keeps the mark
    assert "stopped without finishing" in (globex.projection.why_walk(globex.projection.abandoned()) or "")
    assert Engine(globex).reconcile() == 1
    assert not orphan.exists()


def test_a_database_restored_from_a_copy_makes_the_next_start_walk(paired: Demo, tmp_path: Path) -> None:
    _synced(paired)
    paired.globex.close()
    database = paired.root / "globex" / "backbone.db"
    copy = tmp_path / "backup.db"
    shutil.copy(database, copy)  # a cold backup
    globex = paired.globex = Installation(paired.root / "globex")
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "after the backup"}, as_user="alice")
    sync_all(paired)  # Globex files messages the copy knows nothing of
    paired.globex.close()
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    shutil.copy(copy, database)
    globex = paired.globex = Installation(paired.root / "globex")
    assert "backup" in (globex.projection.why_walk(globex.projection.abandoned()) or "")
    assert Engine(globex).reconcile() >= 1  # the files the copy has no rows for are filed again


def test_backbone_run_reconcile_walks_after_a_clean_stop(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    _synced(paired)
    paired.globex.close()
    orphan = _orphan(paired)
    home = str(paired.root / "globex")
    assert main(["--home", home, "run", "--once"]) == 0
    assert orphan.exists()
    assert main(["--home", home, "run", "--once", "--reconcile"]) == 0
    assert not orphan.exists()
    paired.globex = Installation(paired.root / "globex")
