"""The ledger check (RELIABILITY rule 12) and tracker snapshots shared by the ordering and crash tests.

Judged the same way after every scenario: nothing lost, nothing duplicated, per-issue order
kept, and every message's database row naming the folder its file is really in. Also the
fixed Acme message stream the ordering and crash-point tests deliver to Globex.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from engine.runtime.demo import pair_installations, settle
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.store.models import IssuePair, Message
from engine.vocab import Folder

# shared id of Acme's "Severity" and Globex's "Impact" options (see engine/defaults/demo-*.toml)
SEVERITY = {"Critical": "i1", "Major": "i2", "Minor": "i3"}
IMPACT = {"Blocker": "i1", "Significant": "i2", "Cosmetic": "i3"}


@dataclass(frozen=True)
class Row:
    """A message row, detached, with what the checks need from its envelope."""

    id: int
    side_id: int
    direction: str
    uuid: str
    type: str
    pair_id: str | None
    epoch: int
    seq: int
    folder: str
    hold: str | None
    reason_code: str
    file_name: str
    expected_path: Path
    body: dict[str, Any]
    updated: Any


def rows(inst: Installation, key: str) -> list[Row]:
    """Every message row of `key`'s sides in this installation, in id order."""
    sides = {side.id: side for side in inst.pipeline.sides() if side.sync_key == key}
    with inst.db.session() as s:
        found = s.exec(
            select(Message).where(col(Message.side_id).in_(list(sides))).order_by(col(Message.id))
        ).all()
    result = []
    for m in found:
        body: dict[str, Any] = {}
        if m.payload:
            body = json.loads(m.payload).get("body", {})
        result.append(
            Row(
                m.id or 0,
                m.side_id,
                m.direction,
                m.uuid,
                m.type,
                m.pair_id,
                m.epoch,
                m.seq,
                m.folder,
                m.hold,
                m.reason_code,
                m.file_name,
                sides[m.side_id].folders.path(m.folder, m.file_name, m.hold),
                body,
                m.updated,
            )
        )
    return result


def folder_problems(inst: Installation, key: str) -> list[str]:
    """Rows whose file is not where the row says, and files without a row (both ways)."""
    problems = []
    all_rows = rows(inst, key)
    expected = {row.expected_path for row in all_rows}
    for row in all_rows:
        if not row.expected_path.is_file():
            where = [
                str(p)
                for side in inst.pipeline.sides()
                if side.sync_key == key
                for p in side.folders.root.rglob(row.file_name)
            ]
            problems.append(
                f"message {row.id} ({row.direction} {row.type} seq {row.seq}) says "
                f"{row.folder}/{row.hold or ''} but its file is at {where or 'nowhere'}"
            )
    for side in inst.pipeline.sides():
        if side.sync_key != key:
            continue
        for path in side.folders.root.rglob("*"):
            if path.is_file() and path not in expected:
                problems.append(f"file {path} has no message row")
    return problems


def order_problems(inst: Installation, key: str, direction: str) -> list[str]:
    """Per issue pair: the PROCESSED (in) or queued/sent (out) seqs are exactly 1..n, once each,
    and incoming ones were applied in seq order."""
    problems = []
    done_folders = {Folder.PROCESSED} if direction == "in" else {Folder.SEND, Folder.SENT, Folder.SEND_ERROR}
    by_pair: dict[str, list[Row]] = defaultdict(list)
    for row in rows(inst, key):
        if row.direction == direction and row.pair_id and row.folder in done_folders:
            by_pair[row.pair_id].append(row)
    for pair_id, pair_rows in by_pair.items():
        seqs = sorted(row.seq for row in pair_rows)
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"pair {pair_id[:8]} {direction}: seqs {seqs} are not 1..{len(seqs)}")
        if direction == "in":
            applied = [row.seq for row in sorted(pair_rows, key=lambda r: (r.updated, r.id))]
            if applied != seqs:
                problems.append(f"pair {pair_id[:8]}: applied in the order {applied}")
        uuids = Counter(row.uuid for row in pair_rows)
        twice = [u for u, n in uuids.items() if n > 1]
        if twice:
            problems.append(f"pair {pair_id[:8]} {direction}: message ids {twice} done twice")
    return problems


def pending(inst: Installation, key: str) -> Counter[str]:
    """How many messages sit in each folder that is not a final one."""
    final = {Folder.PROCESSED, Folder.SENT, Folder.OUTDATED}
    return Counter(row.folder for row in rows(inst, key) if row.folder not in final)


# -- tracker state in shared terms (mapping ids), keyed by pair id ----------------------------


def shared_state(inst: Installation, key: str, project: str) -> dict[str, dict[str, Any]]:
    """Every issue of `project` in the partner-neutral terms of the demo configuration.

    Keyed by pair id (an issue without a pair: `local:<key>`); raises on a duplicate issue.
    Comments and attachments keep their order, so a duplicate or a reordering shows.
    """
    side_ids = [side.id for side in inst.pipeline.sides() if side.sync_key == key]
    with inst.db.session() as s:
        pairs = s.exec(select(IssuePair).where(col(IssuePair.side_id).in_(side_ids))).all()
    pair_of = {p.issue_id: p.pair_id for p in pairs if p.issue_id is not None}
    marker_prefix = f"backbone:{key}:"
    state: dict[str, dict[str, Any]] = {}
    for brief in inst.tracker.list_issues(project):
        issue = inst.tracker.read_issue(brief.id)
        assert issue is not None
        pair_id = pair_of.get(issue.id)
        if issue.marker and issue.marker.startswith(marker_prefix):
            marked = issue.marker[len(marker_prefix) :]
            assert pair_id in (None, marked), f"{issue.key}: marker {marked} but pair {pair_id}"
            pair_id = marked
        name = pair_id or f"local:{issue.key}"
        if name in state:
            raise AssertionError(f"duplicate issue for pair {name}: {issue.key}")
        fields = issue.fields
        if project == "ACME":
            customer, impact = fields.get("Customer"), SEVERITY.get(fields.get("Severity") or "")
            comments = [f"{c.author} wrote:\n{c.body}" for c in issue.comments]
        else:
            customer, impact = fields.get("Requested by"), IMPACT.get(fields.get("Impact") or "")
            comments = [c.body for c in issue.comments]
        state[name] = {
            "type": issue.issue_type,
            "status": issue.status,
            "title": fields["summary"],
            "details": fields["description"],
            "urgency": fields["priority"],
            "tags": fields["labels"],
            "due": fields["due_date"],
            "customer": customer,
            "impact": impact,
            "parent": pair_of.get(issue.parent_id or "", issue.parent_id),
            "comments": comments,
            "attachments": [(a.filename, a.size) for a in issue.attachments],
            "links": sorted((kind, pair_of.get(target, target)) for kind, target in issue.links),
        }
    return state


# -- a fixed message stream from Acme, delivered to Globex in any order -----------------------


@dataclass(frozen=True)
class Msg:
    file: Path  # a copy of the message file, kept aside
    uuid: str
    pair: str
    seq: int
    needs: str | None  # the pair id whose issue must exist first (a parent, a link target)


@dataclass(repr=False)
class Stream:
    root: Path  # the demo root; Globex's home is root/"globex"
    key: str
    template: Path  # Globex's home before any issue message arrived
    messages: list[Msg]  # in Acme's order
    reference: dict[str, dict[str, Any]]  # Globex's state after an in-order delivery

    @property
    def inbox(self) -> Path:
        """Where Globex's engine reads the partner's files (Acme's exchange SEND)."""
        return self.root / "exchange" / "globex" / "RECEIVE"

    def __repr__(self) -> str:
        return f"Stream({len(self.messages)} messages under {self.root})"

    def restore(self) -> Installation:
        """Globex's home as it was before the stream; an empty exchange folder."""
        home = self.root / "globex"
        shutil.rmtree(home)
        shutil.copytree(self.template, home, symlinks=True)
        for entry in os.scandir(self.inbox):
            os.unlink(entry.path)
        return Installation(home)

    def deliver(self, batch: list[int], tag: str) -> None:
        """Put these messages (indexes; repeats are copies) into the exchange folder so that
        the engine reads them in this order (it reads names in sorted order)."""
        for position, index in enumerate(batch):
            final = self.inbox / f"{tag}-{position:04d}-{index:03d}.bac"
            staging = self.inbox / f".{final.name}.part"
            shutil.copyfile(self.messages[index].file, staging)
            os.replace(staging, final)


def make_changes(acme: Installation, run: Any) -> None:
    """A stream that needs every ordering rule; `run()` between phases so that updates are
    separate messages instead of being folded into the create."""
    t = acme.tracker
    bug = t.create_issue(
        "ACME",
        "Bug",
        {"summary": "Checkout 500", "priority": "High", "Customer": "Initech", "Severity": "Major"},
        as_user="alice",
    )
    task = t.create_issue("ACME", "Task", {"summary": "Rotate keys"}, as_user="bob")
    story = t.create_issue("ACME", "Story", {"summary": "Dark mode", "labels": ["ui"]}, as_user="carol")
    run()
    sub = t.create_issue("ACME", "Sub-task", {"summary": "Regression test"}, as_user="alice", parent_id=bug)
    t.add_comment(bug, "Reproduced on staging.", as_user="bob")
    t.update_issue(task, {"summary": "Rotate partner keys", "priority": "Low"}, as_user="bob")
    t.add_link(bug, task, "blocks", as_user="alice")
    t.add_comment(bug, "Pricing batch size is 100.", as_user="alice")
    t.add_attachment(bug, "trace.log", b"ERROR batch size 100 exceeded\n" * 3, as_user="alice")
    sub2 = t.create_issue("ACME", "Sub-task", {"summary": "Update runbook"}, as_user="bob", parent_id=task)
    run()
    t.transition(bug, "In Progress", as_user="alice")
    t.update_issue(bug, {"description": "Carts over 100 items fail."}, as_user="alice")
    t.add_comment(task, "Keys expire on Friday.", as_user="bob")
    t.add_comment(sub, "Test written, failing as expected.", as_user="alice")
    t.update_issue(story, {"labels": ["ui", "portal"], "due_date": "2027-01-31"}, as_user="carol")
    t.add_attachment(sub2, "runbook.md", b"# Runbook\n", as_user="bob")
    run()
    t.transition(bug, "In Review", as_user="alice")
    t.update_issue(task, {"priority": "Highest", "description": "Before the audit."}, as_user="bob")
    t.add_comment(bug, "Fix deployed to staging.", as_user="alice")
    t.update_issue(bug, {"Customer": "Initrode", "Severity": "Critical"}, as_user="alice")
    t.transition(sub, "Done", as_user="alice")
    t.add_comment(story, "Mock-ups attached to the epic.", as_user="carol")
    run()
    t.transition(bug, "Done", as_user="alice")
    t.update_issue(story, {"summary": "Dark mode for the portal"}, as_user="carol")
    run()


def build_stream(base: Path) -> Stream:
    """Pair two installations under `base`, let Acme produce the stream, keep its files aside,
    and record Globex's state after an in-order delivery (checked against Acme's own)."""
    demo = pair_installations(base / "demo", encryption=False)  # one message per file
    settle((Engine(demo.acme), Engine(demo.globex)))  # only the pairing's messages so far
    key = demo.key
    make_changes(demo.acme, lambda: Engine(demo.acme).run_once())
    aside = base / "stream"
    aside.mkdir()
    messages = []
    for row in rows(demo.acme, key):
        if row.direction != "out" or row.type != "ISSUE":
            continue
        assert row.folder == Folder.SENT, row
        source = demo.root / "exchange" / "acme" / "SEND" / row.file_name
        target = aside / row.file_name
        os.replace(source, target)
        needs = (
            row.body.get("parent")
            if row.body.get("op") == "create"
            else (row.body.get("target") if row.body.get("op") == "link" else None)
        )
        messages.append(Msg(target, row.uuid, row.pair_id or "", row.seq, needs))
    assert not os.listdir(demo.root / "exchange" / "acme" / "SEND")
    acme_state = shared_state(demo.acme, key, "ACME")
    demo.close()
    template = base / "globex-template"
    shutil.copytree(demo.root / "globex", template, symlinks=True)
    s = Stream(demo.root, key, template, messages, {})
    globex = s.restore()
    try:
        s.deliver(list(range(len(messages))), "00")
        Engine(globex).run_once()
        s.reference = shared_state(globex, key, "GLOBEX")
        assert pending(globex, key) == Counter()
    finally:
        globex.close()
    # the in-order reference is itself right: Globex mirrors Acme's issues exactly
    assert s.reference == acme_state
    assert len(messages) >= 20 and len({m.pair for m in messages}) == 5
    return s


@pytest.fixture(scope="module", autouse=True)
def one_message_per_file() -> Iterator[None]:
    """Import into a test module that reasons about single message files: no bundles there
    (the environment reaches engines in subprocesses too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BACKBONE_BUNDLE_MAX", "1")
        yield
