"""The detect step's working set: issue pairs and field states of one batch, and the messages a
tracker change becomes."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlmodel import Session

from engine.config.mapping import FieldMapping, MappingConfig
from engine.domain.side import SideCtx, side_failure
from engine.errors import TrackerOffline
from engine.events import MessageMoved
from engine.pipeline.records import (
    BATCH,
    Outgoing,
    Queued,
    iso,
)
from engine.store import statements as S
from engine.store.models import History, Synchronization, SyncSide
from engine.trackers.base import Change, WritesAsAccount, utcnow
from engine.vocab import Direction, Folder, MessageType, SyncStatus

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


log = logging.getLogger("backbone.pipeline")


@dataclass
class _OutPair:
    """An issue pair as the detect step uses it: written back by `_Detector.save`."""

    pair_id: str
    issue_id: str | None
    out_epoch: int = 1
    out_seq: int = 0
    id: int | None = None  # None: new, inserted by save()
    dirty: bool = False


@dataclass
class _OutState:
    """A field's last agreed value (JSON) as the detect step uses it."""

    mapping_id: str
    value: str
    at: str
    origin: str
    id: int | None = None  # None: new, inserted by save()
    dirty: bool = False
    source: str = ""  # provenance: the message that carries it ("out EPOCH:SEQ")


class _Detector:
    """Builds the messages for tracker changes within one detect transaction.

    Pairs and field states are read with a few prebuilt statements, changed in memory, and
    written back by `save()` in one statement per kind of change."""

    def __init__(self, pipeline: Pipeline, s: Session, side: SideCtx, config: MappingConfig) -> None:
        self.p = pipeline
        self.s = s
        self.conn = s.connection()
        self.side = side
        self.config = config
        self.pairs: dict[str, _OutPair | None] = {}
        self.states: dict[tuple[str, str], _OutState] = {}
        self.looked_up: set[str] = set()  # issue ids whose pair (or its absence) is known
        self.complete: set[str] = set()  # pair ids whose field states are all loaded

    def preload(self, issue_ids: set[str]) -> None:
        """Load the pairs and field states of a batch's issues with two queries."""
        side = self.side.id
        pairs = [
            _pair_of(row)
            for row in self.conn.execute(S.PAIRS_OF_ISSUES, {"b_side": side, "b_issues": sorted(issue_ids)})
        ]
        pair_ids = [pair.pair_id for pair in pairs]
        if pair_ids:
            for row in self.conn.execute(S.STATES_OF_PAIRS, {"b_side": side, "b_pairs": pair_ids}):
                self.states[(row.pair_id, row.mapping_id)] = _state_of(row)
        for pair in pairs:
            self.pairs[pair.issue_id or ""] = pair
        self.looked_up |= issue_ids
        self.complete |= set(pair_ids)

    def save(self) -> None:
        """Write the new and changed pairs and field states (before the transaction commits)."""
        side = self.side.id
        pairs = [pair for pair in self.pairs.values() if pair is not None]
        new_pairs = [
            {
                "side_id": side,
                "pair_id": p.pair_id,
                "issue_id": p.issue_id,
                "out_epoch": p.out_epoch,
                "out_seq": p.out_seq,
            }
            for p in pairs
            if p.id is None
        ]
        changed = [{"b_id": p.id, "out_seq": p.out_seq} for p in pairs if p.id is not None and p.dirty]
        new_states = [
            {
                "side_id": side,
                "pair_id": pair_id,
                "mapping_id": st.mapping_id,
                "value": st.value,
                "at": st.at,
                "origin": st.origin,
                "source": st.source,
            }
            for (pair_id, _), st in self.states.items()
            if st.id is None
        ]
        changed_states = [
            {"b_id": st.id, "value": st.value, "at": st.at, "origin": st.origin, "source": st.source}
            for st in self.states.values()
            if st.id is not None and st.dirty
        ]
        for statement, rows in (
            (S.INSERT_PAIR, new_pairs),
            (S.UPDATE_OUT_SEQ, changed),
            (S.INSERT_STATE, new_states),
            (S.UPDATE_STATE_BY_ID, changed_states),
        ):
            if rows:
                self.conn.execute(statement, rows)

    def messages_for(self, change: Change) -> list[Outgoing]:
        """The messages for one change, in the order they are queued (each pair's seq follows)."""
        out = self._messages_for(change)
        next_seq: dict[str, int] = {}
        for message in out:
            if message.pair is None:
                continue
            pair = message.pair
            seq = next_seq[pair.pair_id] = next_seq.get(pair.pair_id, pair.out_seq) + 1
            changed = list(message.body.get("fields") or {}) + (
                ["status"] if "status" in message.body else []
            )
            for mapping_id in changed:
                state = self.states.get((pair.pair_id, mapping_id))
                if state is not None:
                    state.source = f"out {pair.out_epoch}:{seq}"
        return out

    def _messages_for(self, change: Change) -> list[Outgoing]:
        out: list[Outgoing] = []
        pair = self._pair(change.issue_id, out)
        if pair is None or change.op == "create":
            return out
        if change.op in ("update", "transition"):
            body = self._field_changes(pair, change)
            if body:
                out.append(Outgoing(MessageType.ISSUE, {"op": "update", "fields": body}, pair))
        elif change.op == "comment" and self.config.sends("comments"):
            out.extend(self._comment(pair, change))
        elif change.op == "attach" and self.config.sends("attachments"):
            out.extend(self._attachment(pair, change))
        elif change.op == "link" and self.config.links:
            target = self._pair(str(change.data["target"]), out)
            if target is not None:
                out.append(
                    Outgoing(
                        MessageType.ISSUE,
                        {"op": "link", "target": target.pair_id, "kind": change.data.get("kind", "relates")},
                        pair,
                    )
                )
        return out

    def _pair(self, issue_id: str, out: list[Outgoing]) -> _OutPair | None:
        """The issue's pair; an unpaired issue of a mapped type is paired with a create message."""
        if issue_id in self.pairs:
            return self.pairs[issue_id]
        if issue_id in self.looked_up:
            pair = self._create_pair(issue_id, out)
            self.pairs[issue_id] = pair
            return pair
        row = self.conn.execute(S.PAIR_OF_ISSUE, {"b_side": self.side.id, "b_issue": issue_id}).first()
        pair = _pair_of(row) if row is not None else self._create_pair(issue_id, out)
        self.pairs[issue_id] = pair
        return pair

    def _create_pair(self, issue_id: str, out: list[Outgoing]) -> _OutPair | None:
        issue = self.p.tracker_for(self.side).read_issue(issue_id)
        if issue is None or issue.project != self.side.project:
            return None
        type_id = self.config.type_id(issue.issue_type)
        if type_id is None:
            return None
        parent_pair: _OutPair | None = None
        if issue.parent_id is not None:
            if not self.config.subtasks:
                return None
            parent_pair = self._pair(issue.parent_id, out)
            if parent_pair is None:
                self.s.add(
                    History(
                        side_id=self.side.id,
                        at=utcnow(),
                        kind="skipped",
                        text=f"{issue.key}: its parent is not synced, so it is not either",
                    )
                )
                return None
        marker = issue.marker if issue.marker and issue.marker.startswith(self.side.marker_prefix) else None
        pair_id = marker[len(self.side.marker_prefix) :] if marker else uuid.uuid4().hex
        pair = _OutPair(pair_id, issue_id)  # inserted by save()
        if marker:
            return pair  # the partner created it: nothing to announce
        self.complete.add(pair_id)
        at = iso(issue.updated)
        fields: dict[str, Any] = {}
        for mapping in self.config.fields:
            if mapping.sends and mapping.local in issue.fields:
                if self._unshared(pair, mapping, issue.fields[mapping.local], issue.key):
                    continue
                shared = mapping.to_shared(issue.fields[mapping.local])
                fields[mapping.id] = {"v": shared, "at": at, "base": ""}
                self._set_state(pair, mapping.id, shared, at, "local")
        body: dict[str, Any] = {
            "op": "create",
            "type": type_id,
            "fields": fields,
            "parent": parent_pair.pair_id if parent_pair else None,
        }
        status_id = self.config.status_id(issue.status)
        if status_id is not None:
            body["status"] = {"v": status_id, "at": at, "base": ""}
            self._set_state(pair, "status", status_id, at, "local")
        out.append(Outgoing(MessageType.ISSUE, body, pair))
        return pair

    def _field_changes(self, pair: _OutPair, change: Change) -> dict[str, Any]:
        at = iso(change.at)
        result: dict[str, Any] = {}
        for name, (_old, new) in change.data.get("fields", {}).items():
            if name == "status":
                mapping_id, shared = "status", self.config.status_id(new)
                if shared is None:
                    continue
            else:
                mapping = self.config.field_by_local(name)
                if (
                    mapping is None
                    or not mapping.sends
                    or self._unshared(pair, mapping, new, change.issue_id)
                ):
                    continue
                mapping_id, shared = mapping.id, mapping.to_shared(new)
            state = self._state(pair, mapping_id)
            if state is not None and json.loads(state.value) == shared:
                continue  # the partner has this value already
            result[mapping_id] = {"v": shared, "at": at, "base": state.at if state else ""}
            self._set_state(pair, mapping_id, shared, at, "local")
        return result

    def _unshared(self, pair: _OutPair, mapping: FieldMapping, value: Any, issue: str) -> bool:
        """A value the mapping's table has no shared id for: not sent, and noted for the admin."""
        missing = mapping.unshared(value)
        if missing and isinstance(value, list):
            return False  # a list sends the values that do have one
        if missing:
            self._skipped(
                pair,
                f"issue {issue}: field mapping {mapping.id}: {missing[0]!r} has no shared value "
                "(add it to the mapping's values, or a default); not sent",
            )
        return bool(missing)

    def _skipped(self, pair: _OutPair, text: str) -> None:
        """Note in the issue's history what was not sent, and why."""
        self.s.add(
            History(side_id=self.side.id, pair_id=pair.pair_id, at=utcnow(), kind="skipped", text=text)
        )

    def _comment(self, pair: _OutPair, change: Change) -> list[Outgoing]:
        issue = self.p.tracker_for(self.side).read_issue(change.issue_id)
        comment_id = str(change.data.get("comment"))
        comment = next((c for c in issue.comments if c.id == comment_id), None) if issue else None
        if comment is None:
            return []
        return [
            Outgoing(
                MessageType.ISSUE,
                {
                    "op": "comment",
                    "comment": {
                        "author": comment.author,
                        "body": comment.body,
                        "created": iso(comment.created),
                    },
                },
                pair,
            )
        ]

    def _attachment(self, pair: _OutPair, change: Change) -> list[Outgoing]:
        info, content = self.p.tracker_for(self.side).read_attachment(str(change.data.get("attachment")))
        why = self.config.attachment_filter("to_partner").refuses(info.filename, info.media_type, info.size)
        if why:
            self._skipped(pair, f"attachment {info.filename!r}: {why}; not sent")
            return []
        return [
            Outgoing(
                MessageType.ISSUE,
                {
                    "op": "attachment",
                    "attachment": {
                        "name": info.filename,
                        "media_type": info.media_type,
                        "size": info.size,
                        "content": base64.b64encode(content).decode(),
                    },
                },
                pair,
            )
        ]

    def _state(self, pair: _OutPair, mapping_id: str) -> _OutState | None:
        key = (pair.pair_id, mapping_id)
        if key not in self.states and pair.pair_id not in self.complete:
            found = self.conn.execute(
                S.STATE_OF_PAIR, {"b_side": self.side.id, "b_pair": pair.pair_id, "b_mapping": mapping_id}
            ).first()
            if found is None:
                return None
            self.states[key] = _state_of(found)
        return self.states.get(key)

    def _set_state(self, pair: _OutPair, mapping_id: str, value: Any, at: str, origin: str) -> None:
        state = self._state(pair, mapping_id)
        if state is None:
            state = _OutState(mapping_id, "null", at, origin)
            self.states[(pair.pair_id, mapping_id)] = state
        state.value, state.at, state.origin, state.dirty = json.dumps(value), at, origin, True


def _pair_of(row: Row[Any]) -> _OutPair:
    return _OutPair(row.pair_id, row.issue_id, row.out_epoch, row.out_seq, row.id)


def _state_of(row: Row[Any]) -> _OutState:
    return _OutState(row.mapping_id, row.value, row.at, row.origin, row.id, source=row.source)


class DetectStep:
    """Turns tracker changes into queued messages: cursor, sequence and rows in one commit."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.caught_up: set[int] = set()  # sides whose last detect read to the end of the change log

    def detect(self, side: SideCtx) -> int:
        """Turn new tracker changes into queued messages; cursor, seq and rows in one commit.

        `caught_up` holds the sides whose last detect saw the end of the change log."""
        self.caught_up.discard(side.id)
        if not side.running:
            return 0
        with self.p.db.session() as s:
            stored = s.get(SyncSide, side.id)
            if stored is None:
                return 0
            side.cursor = stored.cursor  # another thread's detect may have moved it
            skip_change = _skipped_change(stored.failure)
        try:
            tracker = self.p.tracker_for(side)
            changes = tracker.changes_since(side.project, side.cursor, BATCH)
        except TrackerOffline:
            return 0  # nothing is lost: the cursor stays where it is
        if not changes:
            self.caught_up.add(side.id)
            return 0
        config = self.p.side_store.config(side)
        queued: list[Queued] = []
        own = {side.sync_user}  # the authors of this synchronization's own writes (echoes)
        if isinstance(tracker, WritesAsAccount):
            own.add(tracker.account_author)
        ours = [change for change in changes if change.author not in own]
        current: Change | None = None
        try:
            with self.p.db.write() as s:
                row = s.get(SyncSide, side.id)
                if row is None or row.cursor != side.cursor:
                    return 0
                detector = _Detector(self.p, s, side, config)
                if ours:
                    detector.preload({change.issue_id for change in ours})
                for change in ours:
                    current = change
                    if change.id == skip_change:
                        s.add(_skip_record(side, change))
                        continue
                    for out in detector.messages_for(change):
                        queued.append(self.p.ledger.queue(s, side, out))
                detector.save()
                row.cursor = changes[-1].id
                if row.failure and _failed_change(row.failure) <= row.cursor:
                    row.failure = ""  # detection went past the change that stopped this side
                s.add(row)
                if queued:
                    self.p.ledger.touch(side.sync_key)
        except TrackerOffline:
            return 0  # rolled back: the same changes are read again later
        except SADatabaseError:
            raise  # the database itself failed: the engine stops and says why
        except Exception as exc:  # noqa: BLE001 - a change tripped a bug: stop this synchronization
            self._stop_after_bug(side, current, exc)
            return 0
        side.cursor = changes[-1].id
        if len(changes) < BATCH:
            self.caught_up.add(side.id)
        self.p.ledger.write_send_files(side, queued)
        for message in queued:
            self.p.events.publish(
                MessageMoved(side.sync_key, message.id, Folder.SEND, "", Direction.OUT, message.type)
            )
        return len(changes)

    def _stop_after_bug(self, side: SideCtx, change: Change | None, exc: Exception) -> None:
        """Stop one synchronization whose tracker change cannot be turned into a message (the
        batch was rolled back and its cursor kept: nothing is skipped); the others go on."""
        log.error("detect for %s failed on %s", side.sync_key, change, exc_info=exc)
        what = "a tracker change"
        if change is not None:
            try:
                issue = self.p.tracker_for(side).read_issue(change.issue_id)
            except Exception:  # noqa: BLE001 - only to name it
                issue = None
            what = f"change {change.id} ({change.op} of {issue.key if issue else 'issue ' + change.issue_id})"
        error = f"{type(exc).__name__}: {exc}"[:400]
        with self.p.db.write() as s:
            sync = s.get(Synchronization, side.sync_key)
            if sync is not None:
                sync.status = SyncStatus.STOPPED
                sync.status_detail = (
                    f"stopped: {what} could not be sent, internal error, please report: {error}"
                )[:500]
                s.add(sync)
            row = s.get(SyncSide, side.id)
            if row is not None:
                failure = {
                    "change": change.id if change is not None else None,
                    "what": what,
                    "error": error,
                    "at": iso(utcnow()),
                }
                row.failure = json.dumps(failure)
                s.add(row)
        side.status = SyncStatus.STOPPED
        self.p.ledger.publish_status(side.sync_key)


def _failed_change(text: str) -> int:
    """The change id a side's failure names (0: none named, so any pass clears it)."""
    change = side_failure(text).get("change")
    return change if isinstance(change, int) and not isinstance(change, bool) else 0


def _skipped_change(text: str) -> int | None:
    """The change id an administrator chose to skip (the failure's `skip` flag), else None."""
    return (_failed_change(text) or None) if side_failure(text).get("skip") is True else None


def _skip_record(side: SideCtx, change: Change) -> History:
    """The history line of a change passed over because an administrator chose to skip it."""
    return History(
        side_id=side.id,
        at=utcnow(),
        kind="operator",
        text=f"change {change.id} ({change.op} of issue {change.issue_id}) skipped by the detect step, "
        "as an administrator chose; nothing was sent for it",
    )
