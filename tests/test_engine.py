"""The engine's workers, its clean stop, conflicts, and reconciliation at start."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.events import EngineFailed, Event
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine, wait_until
from engine.vocab import Folder

from .conftest import issue_by_summary, sync_all


def test_threaded_engines_sync_with_watchdog_and_publish_events(paired: Demo) -> None:
    events: list[Event] = []
    paired.globex.events.subscribe(events.append)
    engines = [Engine(paired.acme), Engine(paired.globex)]
    for engine in engines:
        engine.start()
    try:
        paired.acme.tracker.create_issue("ACME", "Task", {"summary": "threaded"}, as_user="alice")
        assert wait_until(lambda: issue_by_summary(paired.globex, "GLOBEX", "threaded") is not None, 20)
    finally:
        for engine in engines:
            engine.stop()
    assert any(getattr(e, "folder", None) == Folder.PROCESSED for e in events)
    assert not paired.acme.lock.held and not paired.globex.lock.held


def test_run_stops_cleanly_on_ctrl_c(paired: Demo) -> None:
    home = paired.globex.paths.root
    paired.globex.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "backbone_tui.cli", "--home", str(home), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "engine running" in process.stdout.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "engine stopped" in out


def test_concurrent_edits_newest_wins_and_conflict_is_recorded(paired: Demo) -> None:
    acme_id = paired.acme.tracker.create_issue("ACME", "Task", {"summary": "contested"}, as_user="alice")
    sync_all(paired)
    globex_issue = issue_by_summary(paired.globex, "GLOBEX", "contested")
    assert globex_issue is not None
    # both sides edit before either hears of the other's change: Globex's edit is newer
    paired.acme.tracker.update_issue(acme_id, {"description": "acme's"}, as_user="alice")
    Engine(paired.acme).run_once()  # Acme's change is queued and sent
    time.sleep(0.01)
    paired.globex.tracker.update_issue(globex_issue.id, {"description": "globex's"}, as_user="carol")
    Engine(paired.globex).run_once()  # Globex registers its own edit, then sees Acme's older one
    sync_all(paired)
    assert paired.acme.tracker.read_issue(acme_id).fields["description"] == "globex's"  # type: ignore[union-attr]
    assert paired.globex.tracker.read_issue(globex_issue.id).fields["description"] == "globex's"  # type: ignore[union-attr]
    conflicts = [h for h in paired.globex.history(paired.key) if h[1] == "conflict"]
    assert len(conflicts) == 1 and "kept the local value" in conflicts[0][3]
    conflicts = [h for h in paired.acme.history(paired.key) if h[1] == "conflict"]
    assert len(conflicts) == 1 and "kept the partner's value" in conflicts[0][3]


def test_reconcile_puts_files_where_the_database_says(paired: Demo) -> None:
    for n in range(3):
        paired.acme.tracker.create_issue("ACME", "Task", {"summary": f"r{n}"}, as_user="alice")
    sync_all(paired)
    side = paired.globex.paths.data / paired.key / "GLOBEX-1"
    processed = sorted((side / Folder.PROCESSED).iterdir())
    # a crash between the database commit and the rename leaves a file behind
    processed[0].rename(side / Folder.RECEIVE / processed[0].name)
    # a file we renamed into RECEIVE before the crash, without its row
    orphan = side / Folder.RECEIVE / "00000000000000000001-orphan.bac"
    orphan.write_bytes(processed[1].read_bytes())
    # our own unfinished write
    (side / Folder.RECEIVE / ".x.bac.1234.part").write_bytes(b"half")
    fixed = Engine(paired.globex).reconcile(full=True)  # as `backbone run --reconcile`
    assert fixed >= 2
    assert (side / Folder.PROCESSED / processed[0].name).exists()
    assert not list((side / Folder.RECEIVE).iterdir()) or all(
        not p.name.endswith(".part") for p in (side / Folder.RECEIVE).iterdir()
    )
    Engine(paired.globex).run_once()
    names = {m.original_name: m for m in paired.globex.messages(paired.key)}
    assert names[orphan.name].folder == Folder.OUTDATED and names[orphan.name].reason_code == "DUPLICATE"
    for message in paired.globex.messages(paired.key):
        folder = side / message.folder / (message.hold or "")
        assert (folder / message.file).is_file(), message


def test_corrupt_database_stops_the_engine_with_a_clear_message(paired: Demo) -> None:
    events: list[Event] = []
    paired.globex.events.subscribe(events.append)
    engine = Engine(paired.globex)
    engine.start()
    try:
        database = Path(paired.globex.paths.database)
        paired.globex.db.dispose()
        with open(database, "r+b") as handle:
            handle.seek(0)
            handle.write(b"garbage" * 1000)
        for suffix in ("-wal", "-shm"):
            Path(str(database) + suffix).unlink(missing_ok=True)
        assert wait_until(lambda: engine.failure is not None, 20)
    finally:
        engine.stop()
    assert "database" in (engine.failure or "")
    assert any(isinstance(e, EngineFailed) for e in events)


def test_threaded_engines_detect_every_change_of_a_burst(paired: Demo) -> None:
    """More changes than one detect batch, while the apply worker also detects: none is left behind."""
    ids = [
        paired.acme.tracker.create_issue("ACME", "Task", {"summary": f"b{n}"}, as_user="alice")
        for n in range(20)
    ]
    sync_all(paired)
    engines = [Engine(paired.acme), Engine(paired.globex)]
    for engine in engines:
        engine.start()
    try:
        for n in range(450):
            paired.acme.tracker.update_issue(ids[n % 20], {"description": f"d{n}"}, as_user="alice")
            if n % 50 == 0:  # partner traffic, so the apply worker detects on Acme too
                mirrored = issue_by_summary(paired.globex, "GLOBEX", "b0")
                if mirrored is not None:
                    paired.globex.tracker.add_comment(mirrored.id, f"c{n}", as_user="carol")

        def done() -> bool:
            return all(
                (issue := issue_by_summary(paired.globex, "GLOBEX", f"b{i}")) is not None
                and issue.fields["description"] == f"d{max(n for n in range(450) if n % 20 == i)}"
                for i in range(20)
            )

        assert wait_until(done, 90), "some changes were never detected"
    finally:
        for engine in engines:
            engine.stop()


def test_detect_with_a_stale_side_reads_the_cursor_afresh(paired: Demo) -> None:
    """A side object read before another thread's detect committed must not stall detection."""
    issue = paired.acme.tracker.create_issue("ACME", "Task", {"summary": "stale"}, as_user="alice")
    (stale,) = paired.acme.pipeline.sides()
    (fresh,) = paired.acme.pipeline.sides()
    assert paired.acme.pipeline.detect(fresh) == 1
    for n in range(3):
        paired.acme.tracker.update_issue(issue, {"description": f"v{n}"}, as_user="alice")
    assert paired.acme.pipeline.detect(stale) == 3
    assert stale.id in paired.acme.pipeline.caught_up
    assert len([m for m in paired.acme.messages(paired.key) if m.type == "ISSUE"]) == 4


def test_a_change_that_trips_a_bug_stops_its_synchronization_not_the_engine(
    paired: Demo, monkeypatch: Any
) -> None:
    """Fault injection: reading one issue fails as a bug would. Its synchronization stops with
    the change named, the engine does not raise, and nothing is skipped: once fixed and started
    again, the change is sent."""
    tracker = paired.acme.tracker
    read = tracker.read_issue

    def buggy(issue_id: str) -> Any:
        data = read(issue_id)
        if data is not None and data.fields["summary"] == "boom":
            raise RuntimeError("injected bug")
        return data

    monkeypatch.setattr(tracker, "read_issue", buggy)
    tracker.create_issue("ACME", "Task", {"summary": "boom"}, as_user="alice")
    Engine(paired.acme).run_once()  # does not raise
    info = paired.acme.sync_info(paired.key)
    assert info.status == "STOPPED"
    assert "RuntimeError: injected bug" in info.status_detail
    assert "(create of issue " in info.status_detail  # the key needs read_issue: the broken call
    monkeypatch.setattr(tracker, "read_issue", read)  # the bug is fixed
    paired.acme.start([paired.key])
    sync_all(paired)
    assert issue_by_summary(paired.globex, "GLOBEX", "boom") is not None


def test_a_deleted_side_reads_as_a_lookup_error(paired: Demo) -> None:
    """The mail thread of an email side ends on this (an assert did it before: gone under -O)."""
    side_id = paired.acme.pipeline.sides()[0].id
    assert paired.acme.pipeline.side(side_id).sync_key == paired.key
    paired.acme.delete(paired.key)
    with pytest.raises(LookupError, match=f"side {side_id} no longer exists"):
        paired.acme.pipeline.side(side_id)
