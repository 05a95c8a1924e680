"""Delivery: acknowledgements (`ACK`), resend requests (`RESEND`) and retention (SPEC sections 4-5).

The receiver acknowledges the highest applied seq per issue pair, batched for the side's
`ack_interval`, and the control messages it processed; the sender marks those `SENT` messages
acknowledged. A gap waiting in `WAITING` longer than `resend_after` asks the sender for the missing
range, which it sends again from `SENT` or, when the range is no longer held, answers with a
`RESYNC`. Retention deletes acknowledged `SENT` and `PROCESSED` messages, file first, then row."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, update
from sqlmodel import Session, col, delete, select

from engine.domain.envelope import CONTROL_TYPES, PAIR_ID, UUID_TEXT, Envelope
from engine.domain.settings import DAY
from engine.domain.side import SideCtx
from engine.errors import RejectedError
from engine.pipeline.ledger import Work
from engine.pipeline.records import Outgoing, Queued, _Move
from engine.store.models import History, IssuePair, Message
from engine.trackers.base import utcnow
from engine.vocab import PAIRED_STATUSES, Direction, Folder, MessageType, Reason

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline

log = logging.getLogger("backbone.pipeline")

DELIVERY_TYPES = frozenset({MessageType.ACK, MessageType.RESEND})
ACK_MAX_PAIRS = 5_000  # pairs per ACK message; more wait for the next one
GAP_CHECK_SECONDS = 5.0  # how often WAITING is looked at for gaps that are due a resend
PRUNE_SECONDS = 3_600.0  # how often retention runs (and once at start)
PRUNE_BATCH = 500


class DeliveryStep:
    """Acknowledgements, resend requests and answers, and retention, for every side."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.unacked: dict[int, float] = {}  # side id -> since when it has progress to acknowledge
        self._guard = threading.Lock()  # the apply and housekeeping workers both touch `unacked`
        self._seeded = False
        self._gaps_checked = 0.0
        self._pruned = 0.0

    # -- the periodic work ----------------------------------------------------------------

    def tick(self, now: float | None = None) -> int:
        """Send the acknowledgements and resend requests that are due; prune once an hour."""
        now = time.monotonic() if now is None else now
        work = 0
        if not self._seeded:
            self._seed(now)
        with self._guard:
            due = sorted(self.unacked.items())
        for side_id, since in due:
            side = self._side(side_id)
            if side is None:
                with self._guard:
                    self.unacked.pop(side_id, None)
                continue
            if now - since >= side.settings.get("ack_interval"):
                work += self.acknowledge(side)
        if now - self._gaps_checked >= GAP_CHECK_SECONDS:
            self._gaps_checked = now
            work += self.request_gaps()
        if not self._pruned or now - self._pruned >= PRUNE_SECONDS:
            self._pruned = now
            self.prune()
        return work

    def note_applied(self, side_id: int) -> None:
        """A side processed a message it acknowledges (the apply step calls this)."""
        if side_id not in self.unacked:
            with self._guard:
                self.unacked.setdefault(side_id, time.monotonic())

    def _seed(self, now: float) -> None:
        """After a start: the sides with applied progress not yet acknowledged."""
        self._seeded = True
        with self.p.db.session() as s:
            pairs = s.exec(
                select(IssuePair.side_id)
                .where(
                    or_(
                        col(IssuePair.in_epoch) != col(IssuePair.acked_epoch),
                        col(IssuePair.in_seq) != col(IssuePair.acked_seq),
                    )
                )
                .distinct()
            ).all()
            controls = s.exec(
                select(Message.side_id)
                .where(
                    Message.folder == Folder.PROCESSED,
                    Message.direction == Direction.IN,
                    col(Message.acked).is_(False),
                    col(Message.type).in_(sorted(CONTROL_TYPES)),
                )
                .distinct()
            ).all()
        with self._guard:
            for side_id in {*pairs, *controls}:
                self.unacked.setdefault(side_id, now)

    def _side(self, side_id: int) -> SideCtx | None:
        try:
            side = self.p.side_store.side(side_id)
        except LookupError:
            return None
        return side if side.status in PAIRED_STATUSES and side.partner_endpoint else None

    # -- acknowledging --------------------------------------------------------------------

    def acknowledge(self, side: SideCtx) -> int:
        """Queue one ACK with every pair's applied progress and the processed control messages
        not acknowledged yet; 1 if one was queued. Committed durably first (RELIABILITY rule 10)."""
        self.p.db.checkpoint_full()  # what the ACK confirms survives a power loss
        queued: Queued | None = None
        with self.p.db.write() as s:
            pairs = s.exec(
                select(IssuePair)
                .where(
                    IssuePair.side_id == side.id,
                    or_(
                        col(IssuePair.in_epoch) != col(IssuePair.acked_epoch),
                        col(IssuePair.in_seq) != col(IssuePair.acked_seq),
                    ),
                )
                .order_by(col(IssuePair.id))
                .limit(ACK_MAX_PAIRS)
            ).all()
            controls = s.exec(
                select(Message)
                .where(
                    Message.side_id == side.id,
                    Message.folder == Folder.PROCESSED,
                    Message.direction == Direction.IN,
                    col(Message.acked).is_(False),
                    col(Message.type).in_(sorted(CONTROL_TYPES)),
                )
                .limit(ACK_MAX_PAIRS)
            ).all()
            if pairs or controls:
                body = {
                    "pairs": [[pair.pair_id, pair.in_epoch, pair.in_seq] for pair in pairs],
                    "messages": [row.uuid for row in controls if UUID_TEXT.match(row.uuid)],
                }
                queued = self._queue(s, side, Outgoing(MessageType.ACK, body))
                for pair in pairs:
                    pair.acked_epoch, pair.acked_seq = pair.in_epoch, pair.in_seq
                    s.add(pair)
                for row in controls:
                    row.acked = True
                    s.add(row)
            more = len(pairs) == ACK_MAX_PAIRS or len(controls) == ACK_MAX_PAIRS
        with self._guard:
            if more:
                self.unacked[side.id] = 0.0  # the rest goes with the next tick
            else:
                self.unacked.pop(side.id, None)
        if queued is None:
            return 0
        self.p.ledger.write_send_files(side, [queued])
        return 1

    def _queue(self, s: Session, side: SideCtx, out: Outgoing) -> Queued:
        """Queue an ACK or RESEND: never acknowledged itself, so retention may delete it once sent."""
        queued = self.p.ledger.queue(s, side, out)
        s.connection().execute(update(Message).where(col(Message.id) == queued.id).values(acked=True))
        return queued

    def _acknowledged(self, s: Session, side: SideCtx, body: dict[str, Any]) -> int:
        """Mark the SENT messages an ACK confirms; how many."""
        pairs, uuids = body.get("pairs"), body.get("messages")
        if not isinstance(pairs, list) or not isinstance(uuids, list) or len(pairs) + len(uuids) > 50_000:
            raise RejectedError(Reason.BODY_INVALID, "ACK: expected 'pairs' and 'messages' lists")
        marked = 0
        out_sent = and_(
            col(Message.side_id) == side.id,
            col(Message.direction) == Direction.OUT,
            col(Message.folder) == Folder.SENT,
            col(Message.acked).is_(False),
        )
        for item in pairs:
            if not (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], str)
                and PAIR_ID.match(item[0])
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in item[1:])
            ):
                raise RejectedError(Reason.BODY_INVALID, "ACK: expected pairs as [pair id, epoch, seq]")
            pair_id, epoch, seq = item
            result = s.connection().execute(
                update(Message)
                .where(
                    out_sent,
                    col(Message.pair_id) == pair_id,
                    or_(
                        col(Message.epoch) < epoch, and_(col(Message.epoch) == epoch, col(Message.seq) <= seq)
                    ),
                )
                .values(acked=True)
            )
            marked += result.rowcount or 0
        if not all(isinstance(uuid, str) and UUID_TEXT.match(uuid) for uuid in uuids):
            raise RejectedError(Reason.BODY_INVALID, "ACK: expected message ids as lower-case UUIDs")
        if uuids:
            result = s.connection().execute(
                update(Message).where(out_sent, col(Message.uuid).in_(uuids)).values(acked=True)
            )
            marked += result.rowcount or 0
        return marked

    # -- resend ---------------------------------------------------------------------------

    def request_gaps(self) -> int:
        """Ask for a resend of every gap that waited longer than its side's `resend_after`."""
        with self.p.db.session() as s:
            gaps = s.exec(
                select(Message.side_id, Message.pair_id, func.min(Message.updated))
                .where(
                    Message.folder == Folder.WAITING,
                    Message.reason_code == Reason.SEQ_GAP,
                    Message.direction == Direction.IN,
                )
                .group_by(col(Message.side_id), col(Message.pair_id))
            ).all()
        asked = 0
        now = time.time()
        for side_id, pair_id, oldest in gaps:
            side = self._side(side_id)
            if side is None or pair_id is None:
                continue
            after = side.settings.get("resend_after")
            if (utcnow() - oldest).total_seconds() < after:
                continue
            asked += self.request(side, pair_id, resync=False, gap=True, now=now, after=after)
        return asked

    def request(
        self,
        side: SideCtx,
        pair_id: str,
        *,
        resync: bool,
        gap: bool = False,
        now: float | None = None,
        after: float = 0.0,
        reason: str = "",
    ) -> int:
        """Queue a RESEND for one issue pair: its gap (`gap`), or everything after what was applied
        here; `resync` asks for a full snapshot instead. 0 when one was asked less than `after`
        seconds ago."""
        now = time.time() if now is None else now
        queued: Queued | None = None
        with self.p.db.write() as s:
            pair = s.exec(
                select(IssuePair).where(IssuePair.side_id == side.id, IssuePair.pair_id == pair_id)
            ).first()
            if pair is not None and now - pair.resend_at < after:
                return 0
            epoch, first, last = (pair.in_epoch, pair.in_seq + 1, None) if pair else (0, 1, None)
            if gap:
                waiting = s.exec(
                    select(Message.epoch, Message.seq)
                    .where(
                        Message.side_id == side.id,
                        Message.folder == Folder.WAITING,
                        Message.pair_id == pair_id,
                        Message.reason_code == Reason.SEQ_GAP,
                    )
                    .order_by(col(Message.epoch), col(Message.seq))
                ).first()
                if waiting is None:
                    return 0
                if waiting[0] != epoch:  # the start of a newer epoch is missing
                    epoch, first = waiting[0], 1
                last = waiting[1] - 1
            body = {"pair": pair_id, "epoch": max(epoch, 1), "from": first, "to": last, "resync": resync}
            queued = self._queue(s, side, Outgoing(MessageType.RESEND, body))
            if pair is not None:
                pair.resend_at = now
                s.add(pair)
            what = "a full snapshot (RESYNC)" if resync else _range_text(body)
            s.add(
                History(
                    side_id=side.id,
                    pair_id=pair_id,
                    at=utcnow(),
                    kind="resend",
                    text=f"asked the partner to send {what} again{f': {reason}' if reason else ''}",
                )
            )
        log.info("%s: RESEND asked for issue pair %s (%s)", side.sync_key, pair_id, body)
        self.p.ledger.write_send_files(side, [queued])
        return 1

    def _answer_resend(
        self, s: Session, side: SideCtx, body: dict[str, Any], work: Work, moves: list[_Move]
    ) -> str:
        """Send the asked range again from SENT, or queue a RESYNC when it is no longer held; what
        was done, for the history."""
        pair_id, epoch, first, last = body.get("pair"), body.get("epoch"), body.get("from"), body.get("to")
        numbers = [n for n in (epoch, first, last) if n is not None]
        if (
            not isinstance(pair_id, str)
            or not PAIR_ID.match(pair_id)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers)
            or epoch is None
            or first is None
            or not isinstance(body.get("resync", False), bool)
        ):
            raise RejectedError(Reason.BODY_INVALID, "RESEND: expected pair, epoch, from, to, resync")
        pair = s.exec(
            select(IssuePair).where(IssuePair.side_id == side.id, IssuePair.pair_id == pair_id)
        ).first()
        if pair is None:
            return f"asked to resend issue pair {pair_id}, which is not synced here: nothing sent"
        if body.get("resync") or epoch != pair.out_epoch:
            return self._resync(side, pair, work, "asked for a full snapshot" if body.get("resync") else "")
        last = pair.out_seq if last is None else min(last, pair.out_seq)
        if first > last:
            return f"asked to resend {_range_text(body)}: nothing newer was sent"
        rows = s.exec(
            select(Message)
            .where(
                Message.side_id == side.id,
                Message.direction == Direction.OUT,
                Message.pair_id == pair_id,
                Message.epoch == epoch,
                col(Message.seq) >= first,
                col(Message.seq) <= last,
            )
            .order_by(col(Message.seq), col(Message.id))
        ).all()
        if {row.seq for row in rows} != set(range(first, last + 1)):
            return self._resync(side, pair, work, "the range is no longer held")
        again = 0
        for row in rows:
            if row.folder != Folder.SENT:
                continue  # still on its way (SEND, SEND_ERROR)
            row.acked = False
            self.p.ledger.move_in_tx(
                s,
                moves,
                side,
                row,
                Folder.SEND,
                None,
                Reason.RESEND_REQUESTED,
                "the partner asked for it again",
            )
            again += 1
        return f"asked to resend {_range_text(body)}: {again} message(s) sent again"

    def _resync(self, side: SideCtx, pair: IssuePair, work: Work, why: str) -> str:
        pair_id = pair.pair_id
        work.later(lambda: self.p.resyncer.resync(side, pair_ids=[pair_id]))
        return f"answered a resend request with a RESYNC{f' ({why})' if why else ''}"

    # -- processing an arrived ACK or RESEND ---------------------------------------------

    def process(self, side: SideCtx, row: Message, envelope: Envelope, work: Work) -> int:
        """Take an arrived ACK or RESEND (outside any issue's sequence)."""
        with self.p.ledger.tx(side, work) as (s, moves):
            try:
                with s.begin_nested():
                    if envelope.type == MessageType.ACK:
                        marked = self._acknowledged(s, side, envelope.body)
                        text = f"{marked} sent message(s) acknowledged"
                    else:
                        text = self._answer_resend(s, side, envelope.body, work, moves)
                        s.add(
                            History(
                                side_id=side.id,
                                pair_id=envelope.body.get("pair"),
                                at=utcnow(),
                                kind="resend",
                                text=text,
                            )
                        )
            except RejectedError as exc:
                self.p.ledger.move_in_tx(s, moves, side, row, Folder.REJECTED, None, exc.code, exc.text)
            else:
                self.p.ledger.move_in_tx(s, moves, side, row, Folder.PROCESSED, None, "", text)
        if envelope.type == MessageType.RESEND:
            work.later(lambda: self.p.ledger.publish_status(side.sync_key))
        return 1

    # -- retention ------------------------------------------------------------------------

    def prune(self) -> int:
        """Delete acknowledged SENT and old PROCESSED messages past their side's retention (files
        first, then rows: a crash between leaves rows whose files the next start writes again)."""
        with self.p.db.session() as s:
            oldest = s.exec(
                select(Message.side_id, Message.folder, func.min(Message.updated))
                .where(col(Message.folder).in_([Folder.SENT, Folder.PROCESSED]))
                .group_by(col(Message.side_id), col(Message.folder))
            ).all()
        deleted = 0
        now = utcnow()
        for side_id, folder, first in oldest:
            try:
                side = self.p.side_store.side(side_id)
            except LookupError:
                continue
            days = side.settings.get("retention_sent" if folder == Folder.SENT else "retention_processed")
            if (now - first).total_seconds() < days * DAY:
                continue
            deleted += self._prune_side(side, folder, now, days)
        return deleted

    def _prune_side(self, side: SideCtx, folder: str, now: Any, days: float) -> int:
        from datetime import timedelta

        cutoff = now - timedelta(seconds=days * DAY)
        total = 0
        while not self.p.should_stop():
            query = select(Message).where(
                Message.side_id == side.id, Message.folder == folder, col(Message.updated) <= cutoff
            )
            if folder == Folder.SENT:
                query = query.where(col(Message.acked).is_(True))
            with self.p.db.session() as s:
                rows = s.exec(query.order_by(col(Message.id)).limit(PRUNE_BATCH)).all()
            if not rows:
                break
            for row in rows:
                side.folders.path(row.folder, row.file_name, row.hold).unlink(missing_ok=True)
            with self.p.db.write() as s:
                s.exec(delete(Message).where(col(Message.id).in_([row.id for row in rows])))
            total += len(rows)
            if len(rows) < PRUNE_BATCH:
                break
        if total:
            log.info(
                "%s: retention deleted %d %s message(s) older than %g day(s)",
                side.sync_key,
                total,
                folder,
                days,
            )
            with self.p.db.write() as s:
                s.add(
                    History(
                        side_id=side.id,
                        at=utcnow(),
                        kind="retention",
                        text=f"{total} {folder} message(s) older than {days:g} day(s) deleted",
                    )
                )
        return total


def _range_text(body: dict[str, Any]) -> str:
    last = body.get("to")
    seqs = f"seq {body.get('from')}-{last}" if last is not None else f"seq {body.get('from')} onwards"
    return f"{seqs} of epoch {body.get('epoch')}"
