"""Bad input never stops the engine: each case ends in the folder SPEC names, with a reason."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from engine.domain.envelope import Envelope
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine
from engine.vocab import Folder

from .conftest import issue_by_summary, sync_all

OLD = time.time() - 3600


def inbox(demo: Demo) -> Path:
    """Globex's exchange RECEIVE folder (a link to Acme's SEND)."""
    return demo.root / "exchange" / "globex" / "RECEIVE"


def drop(demo: Demo, name: str, data: bytes, *, settled: bool = True) -> Path:
    """Put a file in Globex's inbox as a sender does: written under a hidden name, then renamed
    into place (a running engine may take it at once)."""
    path = inbox(demo) / name
    staged = path.with_name(f".{name}.part")
    staged.write_bytes(data)
    if settled:
        os.utime(staged, (OLD, OLD))
    staged.rename(path)
    return path


def envelope(
    demo: Demo, body: dict[str, Any], *, pair: str, seq: int = 1, epoch: int = 1, **overrides: Any
) -> bytes:
    fields: dict[str, Any] = dict(
        sync=demo.key,
        sender=demo.acme.id,
        recipient=demo.globex.id,
        id=str(uuid.uuid4()),
        type="ISSUE",
        created="2026-11-23T10:00:00.000000+00:00",
        config=1,
        issue=pair,
        epoch=epoch,
        seq=seq,
        body=body,
    )
    fields.update(overrides)
    return Envelope(**fields).to_json().encode()


def create_body(summary: str, type_id: str = "task", **extra: Any) -> dict[str, Any]:
    at = "2026-11-23T10:00:00.000000+00:00"
    fields = {"title": {"v": summary, "at": at, "base": ""}}
    fields.update({k: {"v": v, "at": at, "base": ""} for k, v in extra.items()})
    return {"op": "create", "type": type_id, "fields": fields, "parent": None}


def update_body(**fields: Any) -> dict[str, Any]:
    at = "2026-11-23T11:00:00.000000+00:00"
    return {"op": "update", "fields": {k: {"v": v, "at": at, "base": ""} for k, v in fields.items()}}


def run_globex(demo: Demo) -> None:
    Engine(demo.globex).run_once()


def reasons(demo: Demo) -> dict[str, tuple[str, str | None]]:
    """Original file name -> (folder, reason code) for globex's incoming messages."""
    return {
        m.original_name or "": (m.folder, m.reason_code)
        for m in demo.globex.messages(demo.key)
        if m.direction == "in"
    }


def still_syncs(demo: Demo, summary: str) -> None:
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": summary}, as_user="alice")
    sync_all(demo)
    assert issue_by_summary(demo.globex, "GLOBEX", summary) is not None


def test_malformed_envelopes_are_rejected_with_the_field_named(paired: Demo) -> None:
    drop(paired, "garbage.bac", b"\x00\x01 not json")
    drop(paired, "array.bac", b"[1, 2]")
    drop(paired, "noseq.bac", json.dumps({"format": 1, "sync": paired.key}).encode())
    drop(paired, "format9.bac", json.dumps({"format": 9}).encode())
    run_globex(paired)
    seen = reasons(paired)
    assert seen["garbage.bac"] == (Folder.REJECTED, "ENVELOPE_INVALID")
    assert seen["array.bac"] == (Folder.REJECTED, "ENVELOPE_INVALID")
    assert seen["noseq.bac"] == (Folder.REJECTED, "ENVELOPE_INVALID")
    assert seen["format9.bac"] == (Folder.REJECTED, "FORMAT_UNSUPPORTED")
    texts = {m.original_name: m.reason_text for m in paired.globex.messages(paired.key)}
    assert "field 'from'" in texts["noseq.bac"]
    folder = paired.globex.paths.data / paired.key / "GLOBEX-1" / Folder.REJECTED
    assert len(list(folder.iterdir())) == 4
    still_syncs(paired, "after malformed")


def test_messages_for_someone_else_are_rejected(paired: Demo) -> None:
    pair = uuid.uuid4().hex
    drop(paired, "wrongsync.bac", envelope(paired, create_body("x"), pair=pair, sync="OTHER-1"))
    drop(paired, "wrongto.bac", envelope(paired, create_body("x"), pair=pair, recipient="someone"))
    drop(paired, "wrongfrom.bac", envelope(paired, create_body("x"), pair=pair, sender="mallory"))
    run_globex(paired)
    seen = reasons(paired)
    assert seen["wrongsync.bac"] == (Folder.REJECTED, "WRONG_SYNCHRONIZATION")
    assert seen["wrongto.bac"] == (Folder.REJECTED, "WRONG_RECIPIENT")
    assert seen["wrongfrom.bac"] == (Folder.REJECTED, "WRONG_SENDER")
    assert issue_by_summary(paired.globex, "GLOBEX", "x") is None


def test_unknown_mapping_type_and_value_go_to_error_per_issue(paired: Demo) -> None:
    cases = {
        "mapping.bac": (create_body("m", nonexistent="v"), "UNKNOWN_MAPPING"),
        "type.bac": (create_body("t", type_id="epic"), "UNKNOWN_ISSUE_TYPE"),
        "value.bac": (create_body("v", urgency="u9"), "VALUE_NOT_MAPPED"),
    }
    pairs = {}
    for name, (body, _code) in cases.items():
        pairs[name] = uuid.uuid4().hex
        drop(paired, name, envelope(paired, body, pair=pairs[name]))
    run_globex(paired)
    seen = {m.original_name: m for m in paired.globex.messages(paired.key)}
    for name, (_body, code) in cases.items():
        message = seen[name]
        assert (message.folder, message.reason_code) == (Folder.ERROR, code)
        assert message.hold == pairs[name]
        path = paired.globex.paths.data / paired.key / "GLOBEX-1" / Folder.ERROR / pairs[name] / message.file
        assert path.is_file()
    still_syncs(paired, "after mapping errors")


def test_a_message_naming_a_quarter_million_fields_is_an_error_not_a_crash(paired: Demo) -> None:
    """More names than SQLite (as Debian builds it: 250,000) or PostgreSQL (65,535) take as query
    parameters: only bound mapping ids reach a query."""
    pair = uuid.uuid4().hex
    many = {f"f{k}": "v" for k in range(260_000)}
    drop(paired, "wide.bac", envelope(paired, create_body("wide", **many), pair=pair))
    run_globex(paired)
    assert reasons(paired)["wide.bac"] == (Folder.ERROR, "UNKNOWN_MAPPING")
    still_syncs(paired, "after a wide message")


def test_values_of_the_wrong_shape_are_errors_of_their_issue(paired: Demo) -> None:
    """An object or a list of objects where a mapped value belongs (unhashable in a lookup)."""
    cases = {
        "object.bac": create_body("object value", urgency={"u1": True}),
        "objects.bac": create_body("list of objects", urgency=[{"u1": True}]),
    }
    for name, body in cases.items():
        drop(paired, name, envelope(paired, body, pair=uuid.uuid4().hex))
    run_globex(paired)
    seen = reasons(paired)
    for name in cases:
        assert seen[name] == (Folder.ERROR, "BODY_INVALID")
    still_syncs(paired, "after values of the wrong shape")


def test_a_message_that_hits_a_bug_is_set_aside_and_its_chunk_still_applies(
    paired: Demo, monkeypatch: Any
) -> None:
    """Fault injection: the tracker fails in a way nothing expects (as a bug would) for one
    message; the chunk it was in is rolled back and applied message by message."""
    tracker = paired.globex.tracker
    create = tracker.create_issue

    def buggy(project: str, issue_type: str, fields: dict[str, Any], **kw: Any) -> str:
        if fields.get("summary") == "boom":
            raise RuntimeError("injected bug")
        return create(project, issue_type, fields, **kw)

    monkeypatch.setattr(tracker, "create_issue", buggy)
    before, poisoned, after = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    drop(paired, "1.bac", envelope(paired, create_body("before the bug"), pair=before))
    drop(paired, "2.bac", envelope(paired, create_body("boom"), pair=poisoned))
    drop(paired, "3.bac", envelope(paired, create_body("after the bug"), pair=after))
    drop(paired, "4.bac", envelope(paired, update_body(title="boom 2"), pair=poisoned, seq=2))
    run_globex(paired)
    seen = reasons(paired)
    assert seen["2.bac"] == (Folder.ERROR, "INTERNAL_ERROR")
    assert seen["4.bac"] == (Folder.ERROR, "HELD_BEHIND_ERROR")
    assert seen["1.bac"] == seen["3.bac"] == (Folder.PROCESSED, "")
    for summary in ("before the bug", "after the bug"):
        assert issue_by_summary(paired.globex, "GLOBEX", summary) is not None  # once, not twice
    text = next(m.reason_text for m in paired.globex.messages(paired.key) if m.original_name == "2.bac")
    assert "RuntimeError: injected bug" in text
    monkeypatch.setattr(tracker, "create_issue", create)  # the bug is fixed: retry applies both
    assert paired.globex.retry(paired.key, poisoned) == 2
    run_globex(paired)
    assert issue_by_summary(paired.globex, "GLOBEX", "boom 2") is not None
    still_syncs(paired, "after a bug")


def test_error_holds_later_messages_of_that_issue_until_retried_or_skipped(paired: Demo) -> None:
    pair = uuid.uuid4().hex
    drop(paired, "1.bac", envelope(paired, create_body("held", urgency="u9"), pair=pair, seq=1))
    at = "2026-11-23T11:00:00.000000+00:00"
    drop(paired, "2.bac", envelope(paired, update_body(details="second"), pair=pair, seq=2))
    run_globex(paired)
    seen = reasons(paired)
    assert seen["1.bac"] == (Folder.ERROR, "VALUE_NOT_MAPPED")
    assert seen["2.bac"] == (Folder.ERROR, "HELD_BEHIND_ERROR")
    drop(
        paired,
        "3.bac",
        envelope(
            paired,
            {"op": "comment", "comment": {"author": "alice", "body": "third", "created": at}},
            pair=pair,
            seq=3,
        ),
    )
    run_globex(paired)
    assert reasons(paired)["3.bac"] == (Folder.ERROR, "HELD_BEHIND_ERROR")
    # retrying without fixing fails the same way and keeps the order
    paired.globex.retry(paired.key, pair)
    run_globex(paired)
    assert reasons(paired)["1.bac"] == (Folder.ERROR, "VALUE_NOT_MAPPED")
    # skipping the first lets the rest apply, but the issue does not exist: update cannot apply
    paired.globex.skip(paired.key, pair)
    run_globex(paired)
    seen = reasons(paired)
    assert seen["1.bac"] == (Folder.PROCESSED, "SKIPPED")
    assert seen["2.bac"] == (Folder.ERROR, "ISSUE_NOT_SYNCED")


def test_attachment_name_with_a_path_is_not_written(paired: Demo) -> None:
    pair = uuid.uuid4().hex
    drop(paired, "c.bac", envelope(paired, create_body("with attachment"), pair=pair, seq=1))
    content = b"owned"
    import base64

    drop(
        paired,
        "a.bac",
        envelope(
            paired,
            {
                "op": "attachment",
                "attachment": {
                    "name": "../../evil.sh",
                    "media_type": "text/plain",
                    "size": len(content),
                    "content": base64.b64encode(content).decode(),
                },
            },
            pair=pair,
            seq=2,
        ),
    )
    run_globex(paired)
    assert reasons(paired)["a.bac"] == (Folder.ERROR, "ATTACHMENT_NAME_UNSAFE")
    issue = issue_by_summary(paired.globex, "GLOBEX", "with attachment")
    assert issue is not None and issue.attachments == []
    assert not (paired.globex.paths.root / "evil.sh").exists()
    assert not (paired.globex.paths.root.parent / "evil.sh").exists()


def test_empty_huge_unknown_and_special_files(paired: Demo) -> None:
    drop(paired, "empty.bac", b"")
    fresh_empty = drop(paired, "fresh-empty.bac", b"", settled=False)
    huge = inbox(paired) / "huge.bac"
    with open(huge, "wb") as handle:
        handle.truncate(65 * 1024 * 1024)  # sparse: larger than the 64 MiB limit
    drop(paired, "notes.txt", b"hello")
    os.symlink("/etc/passwd", inbox(paired) / "link.bac")
    os.mkfifo(inbox(paired) / "pipe.bac")
    run_globex(paired)
    seen = reasons(paired)
    assert seen["empty.bac"] == (Folder.REJECTED, "EMPTY_FILE")
    assert seen["huge.bac"] == (Folder.REJECTED, "TOO_LARGE")
    assert seen["notes.txt"] == (Folder.UNKNOWN, "NOT_A_MESSAGE_FILE")
    assert seen["link.bac"] == (Folder.UNKNOWN, "NOT_A_REGULAR_FILE")
    assert seen["pipe.bac"] == (Folder.UNKNOWN, "NOT_A_REGULAR_FILE")
    assert fresh_empty.exists(), "a zero-byte file may still be being written: it waits"
    assert "fresh-empty.bac" not in seen
    still_syncs(paired, "after special files")


def test_file_still_being_written_waits_until_complete(paired: Demo) -> None:
    data = envelope(paired, create_body("written slowly"), pair=uuid.uuid4().hex)
    path = drop(paired, "slow.bac", data[: len(data) // 2], settled=False)
    run_globex(paired)
    assert path.exists()
    assert "slow.bac" not in reasons(paired)
    path.write_bytes(data)
    run_globex(paired)
    assert reasons(paired)["slow.bac"] == (Folder.PROCESSED, "")
    assert issue_by_summary(paired.globex, "GLOBEX", "written slowly") is not None


def test_replayed_message_is_outdated_not_an_error(paired: Demo) -> None:
    data = envelope(paired, create_body("once"), pair=uuid.uuid4().hex)
    drop(paired, "first.bac", data)
    run_globex(paired)
    drop(paired, "again.bac", data)
    run_globex(paired)
    seen = reasons(paired)
    assert seen["first.bac"] == (Folder.PROCESSED, "")
    assert seen["again.bac"] == (Folder.OUTDATED, "DUPLICATE")
    assert len([i for i in paired.globex.tracker.list_issues("GLOBEX") if i.fields["summary"] == "once"]) == 1


def test_gap_waits_and_subtask_waits_for_its_parent(paired: Demo) -> None:
    parent, child = uuid.uuid4().hex, uuid.uuid4().hex
    drop(
        paired,
        "child.bac",
        envelope(paired, {**create_body("child", type_id="subtask"), "parent": parent}, pair=child, seq=1),
    )
    drop(paired, "parent2.bac", envelope(paired, update_body(details="two"), pair=parent, seq=2))
    run_globex(paired)
    seen = {m.original_name: m for m in paired.globex.messages(paired.key)}
    assert (seen["child.bac"].folder, seen["child.bac"].reason_code) == (Folder.MISSING, "PARENT_MISSING")
    assert seen["child.bac"].hold == parent
    assert (seen["parent2.bac"].folder, seen["parent2.bac"].reason_code) == (Folder.WAITING, "SEQ_GAP")
    drop(paired, "parent1.bac", envelope(paired, create_body("parent"), pair=parent, seq=1))
    run_globex(paired)
    seen = {m.original_name: m for m in paired.globex.messages(paired.key)}
    assert {seen[n].folder for n in ("child.bac", "parent1.bac", "parent2.bac")} == {Folder.PROCESSED}
    parent_issue = issue_by_summary(paired.globex, "GLOBEX", "parent")
    child_issue = issue_by_summary(paired.globex, "GLOBEX", "child")
    assert parent_issue is not None and child_issue is not None
    assert parent_issue.fields["description"] == "two"
    assert child_issue.parent_id == parent_issue.id


def test_tracker_offline_keeps_messages_and_retries(paired: Demo) -> None:
    paired.globex.tracker.set_maintenance(True)
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "during maintenance"}, as_user="alice")
    sync_all(paired)
    offline = [m for m in paired.globex.messages(paired.key, Folder.OFFLINE)]
    assert [m.reason_code for m in offline] == ["TRACKER_OFFLINE"]
    paired.globex.tracker.set_maintenance(False)
    paired.globex.retry(paired.key)
    sync_all(paired)
    assert issue_by_summary(paired.globex, "GLOBEX", "during maintenance") is not None
    assert paired.globex.messages(paired.key, Folder.OFFLINE) == []


def test_unwritable_exchange_folder_goes_to_send_error_and_recovers_in_order(paired: Demo) -> None:
    send_dir = paired.root / "exchange" / "acme" / "SEND"
    parked = send_dir.with_name("SEND.away")
    send_dir.rename(parked)
    send_dir.write_text("not a folder")
    t = paired.acme.tracker
    issue = t.create_issue("ACME", "Task", {"summary": "queued 1"}, as_user="alice")
    t.add_comment(issue, "queued 2", as_user="alice")
    Engine(paired.acme).run_once()
    errors = paired.acme.messages(paired.key, Folder.SEND_ERROR)
    assert [m.reason_code for m in errors] == ["EXCHANGE_NOT_WRITABLE"]
    assert len(paired.acme.messages(paired.key, Folder.SEND)) == 1, "the next message waits behind it"
    send_dir.unlink()
    parked.rename(send_dir)
    paired.acme.retry(paired.key)
    sync_all(paired)
    mirrored = issue_by_summary(paired.globex, "GLOBEX", "queued 1")
    assert mirrored is not None and [c.body for c in mirrored.comments] == ["alice wrote:\nqueued 2"]
    assert paired.acme.messages(paired.key, Folder.SEND_ERROR) == []
