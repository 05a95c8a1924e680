"""The error table's rows and actions on real homes: retry, skip with a reason, resync, resend,
recreate or ignore an issue deleted here, and skipping the tracker change that stopped a side."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import select

from engine.errors import BackboneError, FieldError
from engine.pipeline.detect import _Detector
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.store.models import History, Issue, IssuePair, Message, SyncSide
from engine.trackers.base import Change
from engine.vocab import Folder, Reason

from .conftest import issue_by_summary, sync_all
from .ledger import folder_problems
from .test_bad_input import drop, envelope, run_globex, update_body


def synced_issue(demo: Demo, summary: str) -> tuple[str, str, str]:
    """An issue created at Acme and synced: (Acme's id, Globex's key, the pair id)."""
    acme_id = demo.acme.tracker.create_issue("ACME", "Task", {"summary": summary}, as_user="alice")
    sync_all(demo)
    copy = issue_by_summary(demo.globex, "GLOBEX", summary)
    assert copy is not None
    return acme_id, copy.key, demo.globex.resolve_pair(demo.key, copy.key)


def in_seq(inst: Installation, pair_id: str) -> int:
    with inst.db.session() as s:
        pair = s.exec(select(IssuePair).where(IssuePair.pair_id == pair_id)).one()
    return pair.in_seq


def operator_lines(inst: Installation, key: str) -> list[str]:
    return [text for _at, kind, _pair, text in inst.history(key) if kind == "operator"]


def held_by_bad_value(demo: Demo, summary: str) -> tuple[str, str]:
    """A synced Globex issue whose next partner message carries an unmapped value: (key, pair)."""
    _, key, pair = synced_issue(demo, summary)
    seq = in_seq(demo.globex, pair) + 1
    drop(demo, f"{summary}.bac", envelope(demo, update_body(urgency="u9"), pair=pair, seq=seq))
    run_globex(demo)
    return key, pair


def delete_here(inst: Installation, issue_key: str) -> None:
    """An administrator deletes the issue in the tracker (the embedded one has no command for it)."""
    with inst.db.write() as s:
        row = s.exec(select(Issue).where(Issue.key == issue_key)).one()
        s.delete(row)


def deleted_at_globex(demo: Demo, summary: str) -> tuple[str, str, str]:
    """A synced issue deleted at Globex; Acme's next edit lands in ERROR as ISSUE_DELETED."""
    acme_id, key, pair = synced_issue(demo, summary)
    delete_here(demo.globex, key)
    demo.acme.tracker.update_issue(acme_id, {"summary": f"{summary} again"}, as_user="alice")
    sync_all(demo)
    (row,) = [r for r in demo.globex.problems(demo.key) if r.pair_id == pair]
    assert (row.folder, row.reason_code) == (Folder.ERROR, Reason.ISSUE_DELETED)
    return acme_id, key, pair


def test_error_table_rows_say_where_what_and_which_actions(paired: Demo) -> None:
    key, pair = held_by_bad_value(paired, "table row")
    (row,) = paired.globex.problems(paired.key)
    assert (row.folder, row.reason_code, row.issue_key, row.pair_id) == (
        Folder.ERROR,
        Reason.VALUE_NOT_MAPPED,
        key,
        pair,
    )
    assert row.sync_key == paired.key and row.side == "GLOBEX-1"
    assert row.message_type == "ISSUE" and row.direction == "in" and row.message_uuid
    assert row.actions == ("retry", "skip", "resync", "resend")
    assert json.loads(json.dumps(row.to_json()))["actions"] == list(row.actions)
    assert paired.globex.problems(None) == [row]  # the global table holds it too
    assert paired.acme.problems(paired.key) == []


def test_skip_needs_a_reason_and_records_it(paired: Demo) -> None:
    key, pair = held_by_bad_value(paired, "skip me")
    with pytest.raises(FieldError):
        paired.globex.troubleshooting.act(paired.key, "skip", [key], reason=" ")
    result = paired.globex.troubleshooting.act(paired.key, "skip", [key], reason="value added by hand")
    assert result.messages == 1
    with paired.globex.db.session() as s:
        skipped = s.exec(select(Message).where(Message.pair_id == pair, Message.folder == Folder.PROCESSED))
        assert Reason.SKIPPED in {m.reason_code for m in skipped}
    (line,) = operator_lines(paired.globex, paired.key)
    assert key in line and "value added by hand" in line
    assert paired.globex.problems(paired.key) == []


def test_retry_resync_and_resend_act_on_the_checked_rows(paired: Demo) -> None:
    first, _ = held_by_bad_value(paired, "first checked")
    second, second_pair = held_by_bad_value(paired, "second checked")
    retried = paired.globex.troubleshooting.act(paired.key, "retry", [first, second])
    assert (retried.issues, retried.messages) == ((first, second), 2)
    run_globex(paired)  # not fixed: both fail the same way again
    assert {r.issue_key for r in paired.globex.problems(paired.key)} == {first, second}
    resynced = paired.globex.troubleshooting.act(paired.key, "resync", [first])
    assert resynced.messages == 1
    asked = paired.globex.troubleshooting.act(paired.key, "resend", [second_pair])
    assert asked.messages == 1
    with paired.globex.db.session() as s:
        types = [m.type for m in s.exec(select(Message).where(Message.direction == "out"))]
    assert "RESYNC" in types and "RESEND" in types
    lines = operator_lines(paired.globex, paired.key)
    assert sum("retried" in line for line in lines) == 2
    assert any(line.startswith(f"resynchronized {first}") for line in lines)
    assert any("resend" in line for line in lines)
    with pytest.raises(BackboneError, match="no issue of"):
        paired.globex.troubleshooting.act(paired.key, "retry", ["ab" * 16])


def test_recreate_makes_the_deleted_issue_again_from_the_partners_snapshot(paired: Demo) -> None:
    acme_id, key, pair = deleted_at_globex(paired, "deleted here")
    assert paired.globex.problems(paired.key)[0].actions == ("recreate", "ignore", "skip")
    paired.acme.tracker.update_issue(acme_id, {"description": "while deleted"}, as_user="alice")
    sync_all(paired)  # held behind the error
    result = paired.globex.troubleshooting.recreate(paired.key, [pair], "deleted by mistake")
    assert result.messages == 2
    assert {r.reason_code for r in paired.globex.problems(paired.key)} == {Reason.RESYNC_REQUESTED}
    sync_all(paired)
    copy = issue_by_summary(paired.globex, "GLOBEX", "deleted here again")
    assert copy is not None and copy.key != key
    assert copy.fields["description"] == "while deleted"  # every value, from the snapshot
    assert paired.globex.problems(paired.key) == []
    assert folder_problems(paired.globex, paired.key) == []
    assert any(
        "recreating" in line and "deleted by mistake" in line
        for line in operator_lines(paired.globex, paired.key)
    )
    paired.acme.tracker.update_issue(acme_id, {"summary": "after recreate"}, as_user="alice")
    sync_all(paired)  # the new issue is synced like any other
    assert paired.globex.tracker.read_issue(copy.id).fields["summary"] == "after recreate"  # type: ignore[union-attr]


def test_ignore_processes_held_and_later_changes_without_applying(paired: Demo) -> None:
    acme_id, _key, pair = deleted_at_globex(paired, "ignore me")
    with pytest.raises(FieldError):
        paired.globex.troubleshooting.ignore(paired.key, [pair], "")
    result = paired.globex.troubleshooting.ignore(paired.key, [pair], "closed as a duplicate")
    assert result.messages == 1
    paired.acme.tracker.update_issue(acme_id, {"summary": "ignored later"}, as_user="alice")
    sync_all(paired)
    with paired.globex.db.session() as s:
        rows = s.exec(select(Message).where(Message.pair_id == pair, Message.direction == "in")).all()
        ignored = [m for m in rows if m.reason_code == Reason.IGNORED]
    assert len(ignored) == 2 and all(m.folder == Folder.PROCESSED for m in ignored)
    assert (
        "closed as a duplicate" in ignored[0].reason_text or "closed as a duplicate" in ignored[1].reason_text
    )
    assert issue_by_summary(paired.globex, "GLOBEX", "ignored later") is None
    assert paired.globex.problems(paired.key) == []
    assert folder_problems(paired.globex, paired.key) == []
    assert any("closed as a duplicate" in line for line in operator_lines(paired.globex, paired.key))


def failure_of(inst: Installation) -> dict[str, Any]:
    with inst.db.session() as s:
        (side,) = s.exec(select(SyncSide)).all()
    return json.loads(side.failure) if side.failure else {}


def test_skip_change_passes_over_exactly_the_change_that_trips_a_bug(
    paired: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patched message building stands in for a bug that one issue's changes trip; the
    tracker and the database are real. Start alone stops again; skipping sends the rest."""
    build = _Detector.messages_for
    tracker = paired.acme.tracker

    def buggy(self: _Detector, change: Change) -> Any:
        issue = tracker.read_issue(change.issue_id)
        if issue is not None and issue.fields["summary"] == "boom":
            raise RuntimeError("injected bug")
        return build(self, change)

    monkeypatch.setattr(_Detector, "messages_for", buggy)
    tracker.create_issue("ACME", "Task", {"summary": "before boom"}, as_user="alice")
    tracker.create_issue("ACME", "Task", {"summary": "boom"}, as_user="alice")
    tracker.create_issue("ACME", "Task", {"summary": "after boom"}, as_user="alice")
    Engine(paired.acme).run_once()
    failure = failure_of(paired.acme)
    assert paired.acme.sync_info(paired.key).status == "STOPPED"
    assert "create of ACME-" in failure["what"] and failure["error"] == "RuntimeError: injected bug"
    assert isinstance(failure["change"], int) and failure["at"]
    found = paired.acme.analyze(paired.key).problems[0]
    assert found.reason == Reason.STOPPED_BY_BUG and found.severity == "error"
    assert [fix.name for fix in found.fixes] == ["skip_change", "start"]
    paired.acme.start([paired.key])  # the bug is still there: it stops again and says so
    Engine(paired.acme).run_once()
    assert paired.acme.sync_info(paired.key).status == "STOPPED"
    assert failure_of(paired.acme)["change"] == failure["change"]
    with pytest.raises(FieldError):
        paired.acme.troubleshooting.skip_change(paired.key, "")
    result = paired.acme.troubleshooting.skip_change(paired.key, "reported as BUG-7")
    assert "started" in result.text
    sync_all(paired)
    assert issue_by_summary(paired.globex, "GLOBEX", "before boom") is not None
    assert issue_by_summary(paired.globex, "GLOBEX", "after boom") is not None
    assert issue_by_summary(paired.globex, "GLOBEX", "boom") is None
    assert failure_of(paired.acme) == {}
    assert paired.acme.sync_info(paired.key).status == "RUNNING"
    lines = operator_lines(paired.acme, paired.key)
    assert any("reported as BUG-7" in line for line in lines)
    assert any(f"change {failure['change']} " in line and "skipped" in line for line in lines)
    with paired.acme.db.session() as s:
        assert s.exec(select(History).where(History.kind == "operator")).first() is not None
