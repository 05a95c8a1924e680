"""Operator actions on held and failed messages."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlmodel import col, select

from engine.domain.envelope import ISSUE_TYPES
from engine.domain.side import SideCtx
from engine.store.models import History, IssuePair, Message
from engine.trackers.base import utcnow
from engine.vocab import Direction, Folder, Reason

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


log = logging.getLogger("backbone.pipeline")


class OperatorActions:
    """What an administrator asks for: retry or skip held messages, make retries due now."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    def release_issue(self, side: SideCtx, pair_id: str, *, skip_first: bool) -> tuple[int, int]:
        """Retry (or skip the first of) an issue's held messages: back to RECEIVE in order.

        Returns (messages skipped, messages queued again)."""
        skipped = 0
        with self.p.ledger.tx(side) as (s, moves):
            pair = s.exec(
                select(IssuePair).where(IssuePair.side_id == side.id, IssuePair.pair_id == pair_id)
            ).first()
            held = list(
                s.exec(
                    select(Message)
                    .where(
                        Message.side_id == side.id,
                        Message.direction == Direction.IN,
                        col(Message.folder).in_([Folder.ERROR, Folder.MISSING]),
                        Message.hold == pair_id,
                    )
                    .order_by(col(Message.epoch), col(Message.seq), col(Message.id))
                ).all()
            )
            if not held and pair is None:
                return 0, 0
            if skip_first and held:
                first, skipped = held.pop(0), 1
                if pair is not None and first.type in ISSUE_TYPES:  # never back: it may be a reused seq
                    pair.in_epoch, pair.in_seq = max((pair.in_epoch, pair.in_seq), (first.epoch, first.seq))
                self.p.ledger.move_in_tx(
                    s,
                    moves,
                    side,
                    first,
                    Folder.PROCESSED,
                    None,
                    Reason.SKIPPED,
                    "skipped by an administrator",
                )
                s.add(
                    History(
                        side_id=side.id,
                        pair_id=pair_id,
                        at=utcnow(),
                        kind="skip",
                        text=f"message {first.uuid} (seq {first.seq}) skipped",
                    )
                )
            if pair is not None:
                pair.held = False
                s.add(pair)
            for message in held:
                message.attempts = 0
                self.p.ledger.move_in_tx(
                    s, moves, side, message, Folder.RECEIVE, None, Reason.RETRY, "queued again"
                )
        log.info("%s: issue %s: %d skipped, %d queued again", side.sync_key, pair_id, skipped, len(held))
        return skipped, len(held)

    def release_config_pending(self, side: SideCtx) -> int:
        """Queue again what waited for a configuration version (this side's version changed)."""
        with self.p.ledger.tx(side) as (s, moves):
            waiting = s.exec(
                select(Message)
                .where(
                    Message.side_id == side.id,
                    Message.folder == Folder.WAITING,
                    Message.reason_code == Reason.CONFIG_PENDING,
                )
                .order_by(col(Message.id))
            ).all()
            for row in waiting:
                self.p.ledger.move_in_tx(
                    s, moves, side, row, Folder.RECEIVE, None, Reason.RETRY, "configuration changed"
                )
        return len(waiting)

    def retry_folder(self, side: SideCtx, folder: str) -> int:
        """Make everything in OFFLINE or SEND_ERROR due now."""
        with self.p.db.write() as s:
            rows = s.exec(select(Message).where(Message.side_id == side.id, Message.folder == folder)).all()
            for row in rows:
                row.next_attempt = 0.0
                s.add(row)
        if rows:
            log.info("%s: %d message(s) in %s are due again", side.sync_key, len(rows), folder)
        return len(rows)
