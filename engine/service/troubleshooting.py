"""Troubleshooting: the problem rows of the error table and the actions that fix them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import load_only
from sqlmodel import Session, col, select

from engine.domain.side import SideCtx, side_failure
from engine.errors import BackboneError, FieldError
from engine.store.models import History, IssuePair, Message, Synchronization, SyncSide
from engine.trackers.base import utcnow
from engine.vocab import Direction, Folder, Reason, SyncStatus

if TYPE_CHECKING:
    from engine.service.installation import Installation

#: the folders whose messages are problems a person looks at, in the order a screen shows them
PROBLEM_FOLDERS: tuple[str, ...] = (
    Folder.ERROR,
    Folder.REJECTED,
    Folder.SEND_ERROR,
    Folder.MISSING,
    Folder.WAITING,
    Folder.OFFLINE,
    Folder.UNKNOWN,
)
#: what the error table reads of a message (not its payload: an attachment's content is in it)
TABLE_COLUMNS = tuple(
    getattr(Message, name)
    for name in Message.model_fields
    if name not in ("payload", "original_name", "file_name", "created", "next_attempt", "size")
)
#: action machine name -> the label a screen shows
ACTION_LABELS: dict[str, str] = {
    "retry": "Retry",
    "skip": "Skip (with a reason)",
    "resync": "Resync the issue",
    "resend": "Request a resend",
    "recreate": "Recreate as a new issue",
    "ignore": "Ignore future changes",
    "skip_change": "Skip this change",
    "start": "Start again once fixed",
    "publish": "Publish the configuration",
    "renew_key": "Renew the key",
}
#: the actions that need the operator's reason
REASON_REQUIRED = frozenset({"skip", "ignore", "skip_change"})


@dataclass(frozen=True)
class ProblemRow:
    """One message problem as the error table shows it (plain data)."""

    message_id: int
    sync_key: str
    side: str  # the side's folder, e.g. GLOBEX-1
    folder: str
    reason_code: str
    reason_text: str
    issue_key: str  # occurred in: the local issue ("" : not here, or deleted here)
    pair_id: str | None  # triggered by: the partner's issue, by the pair id both sides share
    message_uuid: str
    message_type: str
    direction: str
    epoch: int
    seq: int
    updated: datetime  # when it came to this folder
    attempts: int
    actions: tuple[str, ...] = ()  # machine names of ACTION_LABELS that apply to this row

    @property
    def issue(self) -> str:
        """What actions take to name the issue: its local key, else the pair id."""
        return self.issue_key or self.pair_id or ""

    def to_json(self) -> dict[str, Any]:
        """The JSON shape the CLI's --json and the REST API share."""
        data = dict(self.__dict__)
        data["updated"] = self.updated.isoformat()
        data["actions"] = list(self.actions)
        return data


@dataclass(frozen=True)
class ActionResult:
    """What an action did: on which issues, how many messages, in one line for people."""

    action: str
    key: str
    issues: tuple[str, ...]
    messages: int
    text: str
    details: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "key": self.key,
            "issues": list(self.issues),
            "messages": self.messages,
            "text": self.text,
            "details": list(self.details),
        }


def row_actions(folder: str, reason_code: str, has_pair: bool) -> tuple[str, ...]:
    """The actions that may fix a message problem in `folder` with `reason_code`."""
    if folder == Folder.ERROR:
        if reason_code == Reason.ISSUE_DELETED:
            return ("recreate", "ignore", "skip")
        return ("retry", "skip", "resync", "resend")
    if folder == Folder.MISSING:
        return ("retry", "resend")
    if folder == Folder.WAITING:
        return ("resend",) if reason_code != Reason.CONFIG_PENDING else ()
    if folder in (Folder.OFFLINE, Folder.SEND_ERROR):
        return ("retry",)
    if folder == Folder.REJECTED and has_pair:
        return ("resend",)
    return ()


class Troubleshooting:
    """The error table's rows, and retry, skip, resync, resend, recreate and ignore on issues."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    # -- the error table ------------------------------------------------------------------------

    def problems(self, key: str | None = None, *, limit: int = 5000) -> list[ProblemRow]:
        """The messages in the problem folders of one synchronization (or of all), oldest first."""
        with self.i.db.session() as s:
            side_query = select(SyncSide.id, SyncSide.sync_key, SyncSide.folder)
            if key is not None:
                side_query = side_query.where(SyncSide.sync_key == key)
            sides = {side_id: (sync_key, folder) for side_id, sync_key, folder in s.exec(side_query)}
            if key is not None and not sides:
                raise BackboneError(f"synchronization {key} does not exist")
            query = (
                select(Message)
                .options(load_only(*TABLE_COLUMNS))
                .where(col(Message.folder).in_(PROBLEM_FOLDERS))
            )
            if key is not None:
                query = query.where(col(Message.side_id).in_(list(sides)))
            rows = list(s.exec(query.order_by(col(Message.id)).limit(limit)).all())
            wanted = {(row.side_id, row.pair_id) for row in rows if row.pair_id}
            issue_of: dict[tuple[int, str], str] = {}
            if wanted:
                pairs = select(IssuePair.side_id, IssuePair.pair_id, IssuePair.issue_id).where(
                    col(IssuePair.pair_id).in_(sorted({pair for _, pair in wanted}))
                )
                for side_id, pair_id, issue_id in s.exec(pairs):
                    if (side_id, pair_id) in wanted and issue_id:
                        issue_of[(side_id, pair_id)] = issue_id
        keys = self.i.trackers.pair_keys(issue_of)
        result = []
        for row in rows:
            sync_key, side_folder = sides.get(row.side_id, ("", ""))
            if not sync_key:
                continue
            result.append(
                ProblemRow(
                    row.id or 0,
                    sync_key,
                    side_folder,
                    row.folder,
                    row.reason_code,
                    row.reason_text,
                    keys.get((row.side_id, row.pair_id or ""), ""),
                    row.pair_id,
                    row.uuid,
                    row.type,
                    row.direction,
                    row.epoch,
                    row.seq,
                    row.updated,
                    row.attempts,
                    row_actions(row.folder, row.reason_code, bool(row.pair_id)),
                )
            )
        return result

    def act(self, key: str, action: str, issues: list[str], reason: str = "") -> ActionResult:
        """Run an action by its machine name on issues (the checked rows of the error table)."""
        if action in REASON_REQUIRED and not reason.strip():
            raise FieldError("reason", f"{action}: say why (it is recorded in the history)")
        if action == "skip_change":
            return self.skip_change(key, reason)
        if action == "start":
            self.i.start([key])
            return ActionResult(action, key, (), 0, f"{key} started")
        handlers = {
            "retry": lambda: self.retry_issues(key, issues),
            "skip": lambda: self.skip_issues(key, issues, reason),
            "resync": lambda: self.resync_issues(key, issues),
            "resend": lambda: self.resend_issues(key, issues, reason),
            "recreate": lambda: self.recreate(key, issues, reason),
            "ignore": lambda: self.ignore(key, issues, reason),
        }
        if action not in handlers:
            raise FieldError(
                "action", f"{action!r}: expected one of {', '.join(handlers)}, skip_change, start"
            )
        if not issues:
            raise FieldError("issue", f"{action}: name at least one issue")
        return handlers[action]()

    # -- the actions ----------------------------------------------------------------------------

    def resolve_pair(self, key: str, issue: str) -> str:
        """A pair id from a pair id or a local issue key (e.g. GLOBEX-12)."""
        if len(issue) == 32 and all(c in "0123456789abcdef" for c in issue):
            return issue
        pair, unknown = None, None
        for side in self.i.queries.sides_of(key):  # each side's tracker knows its own keys
            try:
                issue_id = self.i.trackers.for_side(side).issue_key_to_id(issue)
            except BackboneError as exc:
                unknown = exc
                continue
            with self.i.db.session() as s:
                pair = s.exec(
                    select(IssuePair).where(IssuePair.side_id == side.id, IssuePair.issue_id == issue_id)
                ).first()
            if pair is not None:
                break
            unknown = None  # the issue exists: it is not synced
        if pair is None:
            raise unknown or BackboneError(f"{issue} is not synced by {key}")
        return pair.pair_id

    def resync(
        self, key: str, issue: str | None = None, field: str | None = None, project: str | None = None
    ) -> int:
        """Send a RESYNC (a snapshot, a new epoch) of one issue or of every synced issue, with
        every value this side sends or only the mapping `field`; how many issues."""
        if issue and project is None and len(self.i.queries.sides_of(key)) > 1:
            project = issue.rsplit("-", 1)[0]  # a local synchronization: the side of that issue
        side = self.i.lifecycle._one_side(key, project)  # one side: two snapshots would swap values
        pairs = [self.resolve_pair(key, issue)] if issue else None
        return self.i.pipeline.resync(side, pair_ids=pairs, mapping_ids=[field] if field else None)

    def retry(self, key: str, issue: str | None = None) -> int:
        """Queue again what waits: one issue's held messages, or everything held or failed."""
        count = 0
        for side in self.i.queries.sides_of(key):
            if issue:
                issue = self.resolve_pair(key, issue)
                count += self.i.pipeline.release_issue(side, issue, skip_first=False)[1]
            else:
                count += self.i.pipeline.retry_folder(side, Folder.OFFLINE)
                count += self.i.pipeline.retry_folder(side, Folder.SEND_ERROR)
                count += sum(
                    self.i.pipeline.release_issue(side, pair, skip_first=False)[1]
                    for pair in self._held_pairs(side)
                )
        self.i._changed(key)
        return count

    def skip(self, key: str, issue: str, reason: str = "") -> tuple[int, int]:
        """Skip the first held message of an issue; (messages skipped, messages queued again)."""
        return self._skip_pair(key, issue, self.resolve_pair(key, issue), reason)

    def _skip_pair(self, key: str, issue: str, pair_id: str, reason: str) -> tuple[int, int]:
        results = []
        for side in self.i.queries.sides_of(key):
            skipped, queued = self.i.pipeline.release_issue(side, pair_id, skip_first=True)
            if skipped and reason:
                self._record(side, pair_id, f"skipped the first held message of {issue}: {reason}")
            results.append((skipped, queued))
        self.i._changed(key)
        return sum(skipped for skipped, _ in results), sum(queued for _, queued in results)

    def retry_issues(self, key: str, issues: list[str]) -> ActionResult:
        """Queue the issues' held messages again and make their failed sends and applies due now."""
        pairs = self._pairs(key, issues)
        count = 0
        for side in self.i.queries.sides_of(key):
            for issue, pair_id in pairs:
                queued = sum(
                    self.i.pipeline.release_issue(side, hold, skip_first=False)[1]
                    for hold in [pair_id, *self._missing_holds(side, pair_id)]
                )
                due = self._due_now(side, pair_id)
                if queued or due:
                    self._record(side, pair_id, f"retried {issue}: {queued + due} message(s) queued again")
                count += queued + due
        self.i._changed(key)
        return ActionResult("retry", key, _names(pairs), count, f"{key}: {count} message(s) queued again")

    def skip_issues(self, key: str, issues: list[str], reason: str) -> ActionResult:
        """Skip the first held message of each issue, recording the operator's reason."""
        if not reason.strip():
            raise FieldError("reason", "skip: say why (it is recorded in the history)")
        skipped = queued = 0
        for issue, pair_id in self._pairs(key, issues):
            done, again = self._skip_pair(key, issue, pair_id, reason.strip())
            skipped, queued = skipped + done, queued + again
        text = f"{key}: {skipped} message(s) skipped, {queued} queued again"
        return ActionResult("skip", key, tuple(issues), skipped, text)

    def resync_issues(self, key: str, issues: list[str]) -> ActionResult:
        """Send a RESYNC of each issue (from the side that has it)."""
        pairs = self._pairs(key, issues)
        count = 0
        for side in self.i.queries.sides_of(key):
            present = self._present_pairs(side, [pair_id for _, pair_id in pairs])
            if present:
                count += self.i.pipeline.resync(side, pair_ids=present)
                for issue, pair_id in pairs:
                    if pair_id in present:
                        self._record(side, pair_id, f"resynchronized {issue}: a snapshot was sent")
            if count and side.partner_side_id is not None:
                break  # a local synchronization: one snapshot, or the two would swap values
        self.i._changed(key)
        return ActionResult("resync", key, _names(pairs), count, f"{key}: {count} issue(s) resynchronized")

    def resend_issues(self, key: str, issues: list[str], reason: str = "") -> ActionResult:
        """Ask the partner to send each issue's messages again (after what was applied here)."""
        pairs = self._pairs(key, issues)
        count = 0
        for issue, pair_id in pairs:
            count += self.i.delivery.request_resend(key, pair_id, resync=False, reason=reason)
            for side in self._sides_with_pair(key, pair_id):
                self._record(side, pair_id, f"asked the partner to resend {issue}" + _why(reason))
        return ActionResult("resend", key, _names(pairs), count, f"{key}: {count} resend request(s) queued")

    def recreate(self, key: str, issues: list[str], reason: str = "") -> ActionResult:
        """For issues deleted here: forget the deleted issue, hold its messages until the partner's
        snapshot (asked for here) creates it again with every value."""
        pairs = self._pairs(key, issues)
        count = 0
        asked = 0
        for issue, pair_id in pairs:
            for side in self._sides_with_pair(key, pair_id):
                count += self._forget_deleted(side, pair_id, issue, reason)
                if side.partner_side_id is not None:  # local: the other side sends its snapshot here
                    asked += self.i.pipeline.resync(
                        self.i.pipeline.side(side.partner_side_id), pair_ids=[pair_id]
                    )
                else:
                    asked += self.i.delivery.request_resend(key, pair_id, resync=True, reason="recreate")
        self.i._changed(key)
        text = f"{key}: {len(pairs)} issue(s) to recreate, {count} message(s) wait for {asked} snapshot(s)"
        return ActionResult("recreate", key, _names(pairs), count, text)

    def ignore(self, key: str, issues: list[str], reason: str) -> ActionResult:
        """For issues deleted here: their held and later messages are processed without applying."""
        if not reason.strip():
            raise FieldError("reason", "ignore: say why (it is recorded in the history)")
        pairs = self._pairs(key, issues)
        count = 0
        text = f"ignored by an administrator: {reason.strip()}"[:500]
        for issue, pair_id in pairs:
            for side in self._sides_with_pair(key, pair_id):
                with self.i.pipeline.ledger.tx(side) as (s, moves):
                    pair = self._pair_row(s, side, pair_id)
                    if pair is None:
                        continue
                    pair.ignored, pair.held = True, False
                    s.add(pair)
                    for row in self._waiting_rows(s, side, pair_id):
                        self.i.pipeline.ledger.move_in_tx(
                            s, moves, side, row, Folder.PROCESSED, None, Reason.IGNORED, text
                        )
                        count += 1
                    s.add(_history(side, pair_id, f"ignoring future changes of {issue}: {reason.strip()}"))
        self.i._changed(key)
        return ActionResult("ignore", key, _names(pairs), count, f"{key}: {count} message(s) ignored")

    def skip_change(self, key: str, reason: str, project: str | None = None) -> ActionResult:
        """Skip the tracker change that stopped a side (a bug it trips) and start again: the detect
        step passes over exactly that change; the changes before and after it are sent."""
        if not reason.strip():
            raise FieldError("reason", "skip-change: say why (it is recorded in the history)")
        skipped: list[str] = []
        with self.i.db.write() as s:
            for side in self.i.queries.sides_of(key, project):
                row = s.get(SyncSide, side.id)
                failure = side_failure(row.failure) if row is not None else {}
                if row is None or not isinstance(failure.get("change"), int):
                    continue
                failure["skip"] = True
                row.failure = json.dumps(failure)
                s.add(row)
                what = str(failure.get("what", f"change {failure['change']}"))
                s.add(_history(side, None, f"skipping {what}, which stopped this side: {reason.strip()}"))
                skipped.append(what)
            if not skipped:
                raise BackboneError(f"{key}: no side was stopped by a tracker change; nothing to skip")
            sync = s.get(Synchronization, key)
            startable = sync is not None and sync.status == SyncStatus.STOPPED
        started = ""
        if startable and not self.i.configuration.problems_before_start(key):
            self.i.start([key])
            started = f"; {key} started"
        self.i._changed(key)
        return ActionResult(
            "skip_change", key, (), 0, f"{key}: {', '.join(skipped)} will be skipped{started}"
        )

    # -- helpers --------------------------------------------------------------------------------

    def _pairs(self, key: str, issues: list[str]) -> list[tuple[str, str]]:
        """(the name as given, its pair id) for each issue, each once; unknown ones raise."""
        seen: dict[str, str] = {}
        for issue in issues:
            pair_id = self.resolve_pair(key, issue.strip())
            seen.setdefault(pair_id, issue.strip())
        side_ids = [side.id for side in self.i.queries.sides_of(key)]
        with self.i.db.session() as s:
            known = set(
                s.exec(
                    select(IssuePair.pair_id).where(
                        col(IssuePair.side_id).in_(side_ids), col(IssuePair.pair_id).in_(list(seen))
                    )
                ).all()
            ) | set(
                s.exec(
                    select(Message.pair_id).where(
                        col(Message.side_id).in_(side_ids), col(Message.pair_id).in_(list(seen))
                    )
                ).all()
            )
        for pair_id, name in seen.items():
            if pair_id not in known:
                raise BackboneError(f"{name}: no issue of {key} has this pair id")
        return [(name, pair_id) for pair_id, name in seen.items()]

    def _missing_holds(self, side: SideCtx, pair_id: str) -> list[str]:
        """The issues an issue's messages in MISSING wait for (a parent, a link target)."""
        with self.i.db.session() as s:
            holds = s.exec(
                select(Message.hold)
                .where(
                    Message.side_id == side.id, Message.folder == Folder.MISSING, Message.pair_id == pair_id
                )
                .distinct()
            ).all()
        return [hold for hold in holds if hold and hold != pair_id]

    def _sides_with_pair(self, key: str, pair_id: str) -> list[SideCtx]:
        sides = self.i.queries.sides_of(key)
        with self.i.db.session() as s:
            return [side for side in sides if self._pair_row(s, side, pair_id) is not None]

    def _present_pairs(self, side: SideCtx, pair_ids: list[str]) -> list[str]:
        with self.i.db.session() as s:
            return list(
                s.exec(
                    select(IssuePair.pair_id).where(
                        IssuePair.side_id == side.id,
                        col(IssuePair.pair_id).in_(pair_ids),
                        col(IssuePair.issue_id).is_not(None),
                    )
                ).all()
            )

    def _forget_deleted(self, side: SideCtx, pair_id: str, issue: str, reason: str) -> int:
        """The pair forgets its deleted issue; its held messages wait for the snapshot."""
        with self.i.pipeline.ledger.tx(side) as (s, moves):
            pair = self._pair_row(s, side, pair_id)
            if pair is None:
                return 0
            tracker = self.i.trackers.for_side(side)
            if pair.issue_id is not None and tracker.read_issue(pair.issue_id) is not None:
                raise BackboneError(f"{issue} still exists here: recreate is for an issue deleted here")
            pair.issue_id, pair.held, pair.ignored = None, False, False
            s.add(pair)
            rows = self._waiting_rows(s, side, pair_id)
            for row in rows:
                self.i.pipeline.ledger.move_in_tx(
                    s,
                    moves,
                    side,
                    row,
                    Folder.WAITING,
                    None,
                    Reason.RESYNC_REQUESTED,
                    "waits for the partner's snapshot (RESYNC) that recreates the issue deleted here",
                )
            s.add(
                _history(side, pair_id, f"recreating {issue} (deleted here) from a snapshot" + _why(reason))
            )
        return len(rows)

    def _waiting_rows(self, s: Session, side: SideCtx, pair_id: str) -> list[Message]:
        """An issue's incoming messages held in ERROR or MISSING or waiting, in order."""
        held = (col(Message.folder).in_([Folder.ERROR, Folder.MISSING])) & (Message.hold == pair_id)
        waiting = (Message.folder == Folder.WAITING) & (Message.pair_id == pair_id)
        return list(
            s.exec(
                select(Message)
                .where(Message.side_id == side.id, Message.direction == Direction.IN, held | waiting)
                .order_by(col(Message.epoch), col(Message.seq), col(Message.id))
            ).all()
        )

    def _due_now(self, side: SideCtx, pair_id: str) -> int:
        """Make an issue's messages in OFFLINE and SEND_ERROR due now; how many."""
        with self.i.db.write() as s:
            rows = s.exec(
                select(Message).where(
                    Message.side_id == side.id,
                    Message.pair_id == pair_id,
                    col(Message.folder).in_([Folder.OFFLINE, Folder.SEND_ERROR]),
                )
            ).all()
            for row in rows:
                row.next_attempt = 0.0
                s.add(row)
        return len(rows)

    @staticmethod
    def _pair_row(s: Session, side: SideCtx, pair_id: str) -> IssuePair | None:
        return s.exec(
            select(IssuePair).where(IssuePair.side_id == side.id, IssuePair.pair_id == pair_id)
        ).first()

    def _record(self, side: SideCtx, pair_id: str | None, text: str) -> None:
        with self.i.db.write() as s:
            s.add(_history(side, pair_id, text))

    def _held_pairs(self, side: SideCtx) -> list[str]:
        with self.i.db.session() as s:
            return [
                p.pair_id
                for p in s.exec(
                    select(IssuePair).where(IssuePair.side_id == side.id, col(IssuePair.held).is_(True))
                )
            ]


def _history(side: SideCtx, pair_id: str | None, text: str) -> History:
    """An operator action as the history shows it."""
    return History(side_id=side.id, pair_id=pair_id, at=utcnow(), kind="operator", text=text[:1000])


def _names(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(name for name, _ in pairs)


def _why(reason: str) -> str:
    return f": {reason.strip()}" if reason.strip() else ""
