"""Acknowledgements, resend requests and retention between two real installations (G3)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import col, select

from backbone_tui.cli import main
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.store.models import History, IssuePair, Message
from engine.vocab import Direction, Folder, MessageType, Reason

from .conftest import issue_by_summary, sync_all


def _out(inst: Installation, folder: str | None = None) -> list[Message]:
    with inst.db.session() as s:
        query = select(Message).where(Message.direction == Direction.OUT)
        if folder:
            query = query.where(Message.folder == folder)
        return list(s.exec(query.order_by(col(Message.id))).all())


def test_the_receiver_acknowledges_and_the_sender_marks_sent_messages(paired: Demo) -> None:
    paired.globex.change_settings(paired.key, {"ack_interval": "0"})
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "acked"}, as_user="alice")
    sync_all(paired)
    sent = [row for row in _out(paired.acme, Folder.SENT) if row.type == MessageType.ISSUE]
    assert sent and all(row.acked for row in sent)
    acks = [row for row in _out(paired.globex) if row.type == MessageType.ACK]
    assert len(acks) == 1 and acks[0].folder == Folder.SENT
    body = json.loads(acks[0].payload or "")["body"]
    assert [pair[2] for pair in body["pairs"]] == [1]
    # nothing new applied: no further ACK, and the ACK itself is not acknowledged back
    sync_all(paired)
    assert len([row for row in _out(paired.globex) if row.type == MessageType.ACK]) == 1
    assert not [row for row in _out(paired.acme) if row.type == MessageType.ACK]


def test_acknowledgements_wait_for_the_ack_interval(paired: Demo) -> None:
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "batched"}, as_user="alice")
    sync_all(paired)  # the default interval is a minute: nothing acknowledged yet
    assert not [row for row in _out(paired.globex) if row.type == MessageType.ACK]
    assert not any(row.acked for row in _out(paired.acme, Folder.SENT) if row.type == MessageType.ISSUE)
    delivery = paired.globex.pipeline.delivery
    assert delivery.unacked
    delivery.tick(now=max(delivery.unacked.values()) + 61)
    sync_all(paired)
    assert all(row.acked for row in _out(paired.acme, Folder.SENT) if row.type == MessageType.ISSUE)


def test_retention_deletes_acknowledged_sent_and_processed_messages(paired: Demo) -> None:
    paired.globex.change_settings(paired.key, {"ack_interval": "0", "retention_processed": "0"})
    paired.acme.change_settings(paired.key, {"retention_sent": "0"})
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "pruned"}, as_user="alice")
    sync_all(paired)
    assert paired.acme.delivery.prune() >= 1
    assert paired.globex.delivery.prune() >= 1
    assert not [row for row in _out(paired.acme, Folder.SENT) if row.acked]
    with paired.globex.db.session() as s:
        assert not s.exec(select(Message).where(Message.folder == Folder.PROCESSED)).all()
    side = paired.acme.queries.sides_of(paired.key)[0]
    assert not [p for p in side.folders.path(Folder.SENT, "x").parent.iterdir() if p.suffix == ".bac"]
    with paired.acme.db.session() as s:
        kinds = [row.kind for row in s.exec(select(History)).all()]
    assert "retention" in kinds
    # later changes still apply in order: retention never loses the sequence
    issue = issue_by_summary(paired.acme, "ACME", "pruned")
    paired.acme.tracker.update_issue(issue.id, {"priority": "High"}, as_user="alice")
    sync_all(paired)
    assert issue_by_summary(paired.globex, "GLOBEX", "pruned").fields["priority"] == "High"


def test_unacknowledged_sent_messages_are_kept(paired: Demo) -> None:
    paired.acme.change_settings(paired.key, {"retention_sent": "0"})
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "kept"}, as_user="alice")
    sync_all(paired)
    before = len(_out(paired.acme, Folder.SENT))
    paired.acme.delivery.prune()
    assert len(_out(paired.acme, Folder.SENT)) == before > 0


def test_a_lost_message_is_resent_after_resend_after(paired: Demo) -> None:
    acme_id = paired.acme.tracker.create_issue("ACME", "Task", {"summary": "gap"}, as_user="alice")
    sync_all(paired)
    # seq 2 is sent and lost on the way
    paired.acme.tracker.update_issue(acme_id, {"priority": "High"}, as_user="alice")
    Engine(paired.acme).run_once()
    lost = _exchange_files(paired)
    assert lost, "the update should be in the exchange folder"
    for path in lost:
        path.unlink()
    # seq 3 arrives and waits for seq 2
    paired.acme.tracker.update_issue(acme_id, {"priority": "Low"}, as_user="alice")
    sync_all(paired)
    with paired.globex.db.session() as s:
        waiting = s.exec(select(Message).where(Message.folder == Folder.WAITING)).all()
    assert [row.reason_code for row in waiting] == [Reason.SEQ_GAP]
    assert issue_by_summary(paired.globex, "GLOBEX", "gap").fields["priority"] == "Medium"
    # after resend_after the receiver asks, the sender sends seq 2 again from SENT, the gap closes
    paired.globex.change_settings(paired.key, {"resend_after": "5"})
    with paired.globex.db.write() as s:
        for row in s.exec(select(Message).where(Message.folder == Folder.WAITING)).all():
            row.updated = row.updated.replace(year=row.updated.year - 1)
            s.add(row)
    paired.globex.pipeline.delivery._gaps_checked = 0.0
    sync_all(paired)
    assert issue_by_summary(paired.globex, "GLOBEX", "gap").fields["priority"] == "Low"
    with paired.acme.db.session() as s:
        texts = [row.text for row in s.exec(select(History).where(History.kind == "resend")).all()]
    assert any("1 message(s) sent again" in text for text in texts), texts
    # a second pass asks nothing more
    assert paired.globex.pipeline.delivery.request_gaps() == 0


def _exchange_files(paired: Demo) -> list[Path]:
    side = paired.globex.queries.sides_of(paired.key)[0]
    inbox = side.exchange / "RECEIVE" if side.exchange else None
    assert inbox is not None
    return [p for p in inbox.iterdir() if p.is_file()]


def test_a_range_no_longer_held_is_answered_with_a_resync(paired: Demo) -> None:
    paired.globex.change_settings(paired.key, {"ack_interval": "0"})
    paired.acme.change_settings(paired.key, {"retention_sent": "0"})
    acme_id = paired.acme.tracker.create_issue("ACME", "Task", {"summary": "resync me"}, as_user="alice")
    sync_all(paired)
    paired.acme.delivery.prune()  # seq 1 is acknowledged and gone from SENT
    with paired.globex.db.write() as s:  # globex forgets it applied it (a restored backup)
        for pair in s.exec(select(IssuePair)).all():
            pair.in_seq, pair.acked_seq = 0, 0
            s.add(pair)
    assert (
        main(
            ["--home", str(paired.globex.paths.root), "messages", "resend", paired.key, "--issue", "GLOBEX-1"]
        )
        == 0
    )
    paired.acme.tracker.update_issue(acme_id, {"priority": "High"}, as_user="alice")
    sync_all(paired)
    resyncs = [row for row in _out(paired.acme) if row.type == MessageType.RESYNC]
    assert len(resyncs) == 1
    assert issue_by_summary(paired.globex, "GLOBEX", "resync me").fields["priority"] == "High"


def test_a_malformed_ack_is_rejected(paired: Demo) -> None:
    side = paired.acme.queries.sides_of(paired.key)[0]
    partner = paired.globex.queries.sides_of(paired.key)[0]
    envelope = {
        "format": 1,
        "sync": paired.key,
        "from": partner.endpoint,
        "to": side.endpoint,
        "id": "0" * 8 + "-0000-4000-8000-" + "0" * 12,
        "type": "ACK",
        "created": "2026-12-02T00:00:00+00:00",
        "config": side.config_version,
        "issue": None,
        "epoch": 0,
        "seq": 0,
        "body": {"pairs": [["not-a-pair", 1, 1]], "messages": []},
    }
    paired.acme.pipeline.ingest_bytes(side, "bad.bac", json.dumps(envelope).encode())
    paired.acme.pipeline.apply(side)
    with paired.acme.db.session() as s:
        row = s.exec(select(Message).where(Message.type == "ACK")).one()
    assert (row.folder, row.reason_code) == (Folder.REJECTED, Reason.BODY_INVALID)
