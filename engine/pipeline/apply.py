"""The apply step: what is in RECEIVE, in order per issue; holds, waits and releases (G4, G5)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, and_, or_
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlmodel import Session, col, select

from engine.domain.envelope import CONTROL_TYPES, ISSUE_TYPES, Envelope
from engine.domain.side import SideCtx
from engine.errors import (
    ApplyError,
    MissingIssueError,
    ReasonError,
    TrackerAuthFailed,
    TrackerOffline,
    TrackerRefused,
)
from engine.pipeline.applier import _Applier, _InPair, _upsert_pair
from engine.pipeline.delivery import DELIVERY_TYPES
from engine.pipeline.ledger import Work
from engine.pipeline.records import (
    APPLY_CHUNK,
    BATCH,
    Queued,
    _Move,
    backoff,
)
from engine.store import statements as S
from engine.store.models import Message, SyncSide
from engine.vocab import Direction, Folder, MessageType, Reason

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


log = logging.getLogger("backbone.pipeline")


class ApplyStep:
    """Applies what is in RECEIVE in order per issue; holds, waits and releases."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    def apply(self, side: SideCtx) -> int:
        """Apply what is ready, in order per issue; returns how many messages moved."""
        received = select(Message).where(Message.side_id == side.id, Message.folder == Folder.RECEIVE)
        if not side.running:
            received = received.where(col(Message.type).not_in(ISSUE_TYPES))  # they wait in RECEIVE
        due_offline = select(Message).where(
            Message.side_id == side.id,
            Message.folder == Folder.OFFLINE,
            col(Message.next_attempt) <= time.time(),
        )
        with self.p.db.session() as s:
            rows = list(s.exec(received.order_by(col(Message.id)).limit(BATCH)).all())
            rows += s.exec(due_offline.order_by(col(Message.id)).limit(BATCH)).all()
            self.p.ledger.held_somewhere[side.id] = (
                s.exec(
                    select(Message.id)
                    .where(
                        Message.side_id == side.id, col(Message.folder).in_([Folder.WAITING, Folder.MISSING])
                    )
                    .limit(1)
                ).first()
                is not None
            )
        rows.sort(key=lambda row: row.id or 0)
        moved = 0
        offline = False
        for start in range(0, len(rows), APPLY_CHUNK):
            if offline or self.p.should_stop():
                break
            chunk = rows[start : start + APPLY_CHUNK]
            try:
                done, offline = self._apply_chunk(side, chunk)
            except SADatabaseError:
                raise  # the database itself failed: the engine stops and says why
            except Exception:  # noqa: BLE001 - a message hit a bug; the chunk was rolled back
                log.exception(
                    "applying a chunk of %s failed; applying its messages one by one", side.sync_key
                )
                done, offline = self._apply_isolated(side, [row.id or 0 for row in chunk])
            moved += done
        return moved

    def _apply_chunk(self, side: SideCtx, rows: list[Message]) -> tuple[int, bool]:
        """Process messages in one transaction; (messages moved, tracker went offline).

        File moves and other effects wait for the commit; if anything raises, nothing is done."""
        moved, offline = 0, False
        with self.p.ledger.unit(side) as work:  # one commit for the chunk
            for row in rows:
                if self.p.should_stop():
                    break
                try:
                    moved += self._process(side, row, work)
                except TrackerOffline:
                    offline = True
                    break
        return moved, offline

    def _apply_isolated(self, side: SideCtx, ids: list[int]) -> tuple[int, bool]:
        """One transaction per message, so a message that fails unexpectedly (a bug its content
        triggers) is set aside in ERROR, with the exception as its reason, and the others apply."""
        moved = 0
        for message_id in ids:
            with self.p.db.session() as s:
                row = s.get(Message, message_id)  # afresh: the rolled-back pass changed the objects
            if row is None or row.folder not in (Folder.RECEIVE, Folder.OFFLINE):
                continue  # an earlier message of this chunk released or moved it already
            try:
                done, offline = self._apply_chunk(side, [row])
            except SADatabaseError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.exception("message %s of %s failed; set aside in ERROR", row.uuid, side.sync_key)
                with self.p.db.session() as s:
                    row = s.get(Message, message_id)
                assert row is not None
                text = f"internal error, please report: {type(exc).__name__}: {exc}"
                if row.pair_id:
                    self._hold(side, row, _InPair(row.pair_id), Reason.INTERNAL_ERROR, text)
                else:
                    self.p.ledger.record(side, [(row, Folder.REJECTED, None, Reason.INTERNAL_ERROR, text)])
                done, offline = 1, False
            moved += done
            if offline:
                return moved, True
        return moved, False

    def _process(self, side: SideCtx, row: Message, work: Work) -> int:
        """Decide one message's fate; after a success, release what waited for it."""
        assert row.payload is not None
        envelope = Envelope.from_json(row.payload)
        if envelope.type in DELIVERY_TYPES:
            return self.p.delivery.process(side, row, envelope, work)
        self.p.delivery.note_applied(side.id)  # acknowledged once it committed (or its retry is)
        if envelope.type in CONTROL_TYPES:
            return self._process_control(side, row, envelope, work)
        if envelope.type not in ISSUE_TYPES:
            self.p.ledger.record(
                side,
                [
                    (
                        row,
                        Folder.PROCESSED,
                        None,
                        Reason.IGNORED,
                        f"{envelope.type} is not handled by this version",
                    )
                ],
                work,
            )
            return 1
        moved = 0
        queue = [(row, envelope)]
        while queue:
            current, env = queue.pop(0)
            released = self._process_issue(side, current, env, work)
            moved += 1
            queue.extend((message, Envelope.from_json(message.payload or "")) for message in released)
        return moved

    def _process_control(self, side: SideCtx, row: Message, envelope: Envelope, work: Work) -> int:
        if self.p.control_handler is None:
            raise RuntimeError("no control handler installed")
        queued: list[Queued] = []
        with self.p.ledger.tx(side, work) as (s, moves):
            duplicate = s.exec(
                select(Message.id).where(
                    Message.side_id == side.id,
                    Message.direction == Direction.IN,
                    Message.uuid == envelope.id,
                    Message.folder == Folder.PROCESSED,
                )
            ).first()
            if duplicate is not None:
                self.p.ledger.move_in_tx(
                    s, moves, side, row, Folder.OUTDATED, None, Reason.DUPLICATE, "seen before"
                )
            else:
                version = side.config_version
                try:
                    with s.begin_nested():  # a refusal undoes what the handler changed before it
                        outgoing = self.p.control_handler(s, side, envelope)
                except ReasonError as exc:
                    outgoing = []
                    self.p.ledger.move_in_tx(s, moves, side, row, Folder.REJECTED, None, exc.code, exc.text)
                else:
                    self._fresh(s, side)
                    queued = [self.p.ledger.queue(s, side, out) for out in outgoing]
                    self.p.ledger.move_in_tx(s, moves, side, row, Folder.PROCESSED, None, "", "")
                    if side.config_version != version:  # what waited for this version may go now
                        work.later(lambda: self.p.operator.release_config_pending(side))
                        work.later(lambda: self.p.resyncer.fill_new_mappings(side))
        if queued:
            work.later(lambda: self.p.ledger.write_send_files(side, queued))
        work.later(lambda: self.p.ledger.publish_status(side.sync_key))
        return 1

    def _fresh(self, s: Session, side: SideCtx) -> SideCtx:
        row = s.get(SyncSide, side.id)
        assert row is not None
        side.partner_endpoint = row.partner_endpoint
        side.partner_fingerprint = row.partner_fingerprint
        side.pairing_secret = row.pairing_secret
        side.mail_settings = row.mail_settings
        side.config_version, side.config_text = row.config_version, row.config_text
        return side

    def _process_issue(self, side: SideCtx, row: Message, env: Envelope, work: Work) -> list[Message]:
        assert env.issue is not None
        key = {"b_side": side.id, "b_pair": env.issue}
        config = self.p.side_store.config(side)
        fields = env.body.get("fields")
        mapping_ids: list[str] = []  # the agreed values it may change (ids bound here; others fail later)
        if isinstance(fields, dict):
            mapping_ids = [mapping.id for mapping in config.fields if mapping.id in fields]
            if "status" in fields or "status" in env.body:
                mapping_ids.append("status")
        with self.p.db.session() as s:
            conn = s.connection()
            found = conn.execute(S.SELECT_PAIR, key).first()
            states: dict[str, Row[Any]] = {}
            if len(mapping_ids) <= 3:  # the usual edit: a statement each beats an IN list's rendering
                for mapping_id in mapping_ids:
                    state = conn.execute(S.STATE_OF_PAIR, {**key, "b_mapping": mapping_id}).first()
                    if state is not None:
                        states[mapping_id] = state
            else:
                wanted = set(mapping_ids)
                for state in conn.execute(S.SELECT_STATES, key):
                    if state.mapping_id in wanted:
                        states[state.mapping_id] = state
        pair = (
            _InPair(env.issue, found.issue_id, found.in_epoch, found.in_seq, found.held)
            if found is not None
            else _InPair(env.issue)
        )
        if env.epoch < pair.in_epoch:
            self.p.ledger.record(
                side,
                [
                    (
                        row,
                        Folder.OUTDATED,
                        None,
                        Reason.OLD_EPOCH,
                        f"epoch {env.epoch} is older than {pair.in_epoch}",
                    )
                ],
                work,
            )
            return []
        if env.epoch == pair.in_epoch and env.seq <= pair.in_seq:
            if self._seen_before(side, env):
                self.p.ledger.record(
                    side,
                    [(row, Folder.OUTDATED, None, Reason.DUPLICATE, f"seq {env.seq} was applied already")],
                    work,
                )
            else:  # the sender reused the number (restored from a backup?): both sides must see it
                text = (
                    f"seq {env.seq} of epoch {env.epoch} was applied already with other content: the "
                    "partner reused a sequence number; skip this message or resync the issue"
                )
                self._hold(side, row, pair, Reason.SEQ_REUSED, text, work)
            return []
        if found is not None and found.ignored:
            text = "ignored by an administrator: the issue was deleted here and its changes are ignored"
            self.p.ledger.record(side, [(row, Folder.PROCESSED, None, Reason.IGNORED, text)], work)
            return []
        if pair.held:
            self.p.ledger.record(
                side,
                [
                    (
                        row,
                        Folder.ERROR,
                        env.issue,
                        Reason.HELD_BEHIND_ERROR,
                        "an earlier message of this issue is in ERROR",
                    )
                ],
                work,
            )
            return []
        is_next = (env.epoch == pair.in_epoch and env.seq == pair.in_seq + 1) or (
            env.epoch > pair.in_epoch
            and env.seq == 1
            and (env.type == MessageType.RESYNC or pair.in_epoch == 0)
        )
        if not is_next:
            self.p.ledger.record(
                side,
                [
                    (
                        row,
                        Folder.WAITING,
                        None,
                        Reason.SEQ_GAP,
                        f"waits for seq {pair.in_seq + 1} of epoch {max(pair.in_epoch, 1)}",
                    )
                ],
                work,
            )
            return []
        if env.config > side.config_version:  # built under a version this side has not put in force
            text = (
                f"built under configuration version {env.config}; version {side.config_version} is in "
                "force here: it applies once this side has that version"
            )
            self.p.ledger.record(side, [(row, Folder.WAITING, None, Reason.CONFIG_PENDING, text)], work)
            return []
        if env.config < 1:
            text = f"built under configuration version {env.config}, which was never published"
            self._hold(side, row, pair, Reason.CONFIG_UNKNOWN, text, work)
            return []
        try:
            applier = _Applier(self.p, side, config, pair, env, states)  # asks for the side's tracker
            applier.apply()
        except TrackerOffline as exc:
            row.attempts += 1
            row.next_attempt = time.time() + backoff(row.attempts)
            auth = isinstance(exc, TrackerAuthFailed)
            code = Reason.TRACKER_AUTH_FAILED if auth else Reason.TRACKER_OFFLINE
            self.p.ledger.record(side, [(row, Folder.OFFLINE, None, code, str(exc))], work)
            raise
        except MissingIssueError as exc:
            self.p.ledger.record(side, [(row, Folder.MISSING, exc.pair_id, exc.code, exc.text)], work)
            return []
        except ApplyError as exc:
            self._hold(side, row, pair, exc.code, exc.text, work)
            return []
        except TrackerRefused as exc:
            code = Reason.ISSUE_DELETED if applier.issue_deleted() else Reason.TRACKER_REFUSED
            text = (
                "the issue was deleted here: choose 'recreate' or 'ignore future changes'"
                if code == Reason.ISSUE_DELETED
                else str(exc)
            )
            self._hold(side, row, pair, code, text, work)
            return []
        created = applier.created_issue
        with self.p.ledger.tx(side, work, savepoint=False) as (s, moves):
            values: dict[str, Any] = {"in_epoch": env.epoch, "in_seq": env.seq}
            if applier.issue_id is not None:
                values["issue_id"] = applier.issue_id
            _upsert_pair(s, side.id, env.issue, values)
            applier.write_state(s)
            self.p.ledger.move_in_tx(s, moves, side, row, Folder.PROCESSED, None, "", "")
            released = self._released(s, moves, side, env, created)
        return released

    def _released(
        self, s: Session, moves: list[_Move], side: SideCtx, env: Envelope, created: bool
    ) -> list[Message]:
        """Messages that can go now: the next seq of this issue, and what needed this issue."""
        released: list[Message] = []
        if not self.p.ledger.held_somewhere.get(side.id, True):
            return released
        waiting_here = select(Message).where(
            Message.side_id == side.id,
            Message.direction == Direction.IN,
            Message.folder == Folder.WAITING,
            Message.pair_id == env.issue,
        )
        next_ones = or_(
            and_(col(Message.epoch) == env.epoch, col(Message.seq) == env.seq + 1),
            and_(col(Message.epoch) > env.epoch, col(Message.seq) == 1),
        )
        waiting = s.exec(
            waiting_here.where(next_ones).order_by(col(Message.epoch).desc(), col(Message.id))
        ).all()
        released.extend(waiting)  # copies too: after the first applies, they end as duplicates
        if env.type == MessageType.RESYNC:
            for stale in s.exec(waiting_here.where(col(Message.epoch) < env.epoch)):
                self.p.ledger.move_in_tx(
                    s, moves, side, stale, Folder.OUTDATED, None, Reason.OLD_EPOCH, "superseded by a resync"
                )
        if created:
            released.extend(
                s.exec(
                    select(Message)
                    .where(
                        Message.side_id == side.id,
                        Message.direction == Direction.IN,
                        Message.folder == Folder.MISSING,
                        Message.hold == env.issue,
                    )
                    .order_by(col(Message.id))
                ).all()
            )
        return released

    def _seen_before(self, side: SideCtx, env: Envelope) -> bool:
        """Whether this very message (same content, RELIABILITY rule 3) was processed here, or
        nothing processed under its number is left to compare with (retention removed it)."""
        with self.p.db.session() as s:
            payloads = s.exec(
                select(Message.payload).where(
                    Message.side_id == side.id,
                    Message.direction == Direction.IN,
                    Message.pair_id == env.issue,
                    Message.epoch == env.epoch,
                    Message.seq == env.seq,
                    Message.folder == Folder.PROCESSED,
                )
            ).all()
        applied = [payload for payload in payloads if payload]
        canonical = env.to_json()
        return not applied or any(Envelope.from_json(payload).to_json() == canonical for payload in applied)

    def _hold(
        self, side: SideCtx, row: Message, pair: _InPair, code: str, text: str, work: Work | None = None
    ) -> None:
        with self.p.ledger.tx(side, work, savepoint=False) as (s, moves):
            _upsert_pair(s, side.id, pair.pair_id, {"held": True})
            self.p.ledger.move_in_tx(s, moves, side, row, Folder.ERROR, pair.pair_id, code, text)
            # later messages of this issue that already wait join it, in order
            for later in s.exec(
                select(Message).where(
                    Message.side_id == side.id,
                    Message.direction == Direction.IN,
                    Message.pair_id == pair.pair_id,
                    col(Message.folder).in_([Folder.WAITING]),
                )
            ):
                self.p.ledger.move_in_tx(
                    s,
                    moves,
                    side,
                    later,
                    Folder.ERROR,
                    pair.pair_id,
                    Reason.HELD_BEHIND_ERROR,
                    "an earlier message of this issue is in ERROR",
                )
