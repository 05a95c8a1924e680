"""The ledger: write transactions whose file moves happen after the commit, and the records of
every message's folder and reason (RELIABILITY rules 2 and 6)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import Session, col

from engine.domain.envelope import Envelope
from engine.domain.side import SideCtx
from engine.events import MessageMoved, SyncChanged
from engine.pipeline.records import (
    LOGGED_FOLDERS,
    Outgoing,
    Queued,
    _Classified,
    _escape,
    _generated_name,
    _Move,
    _Outcome,
    iso,
)
from engine.store import fsutil
from engine.store import statements as S
from engine.store.models import Message, Synchronization, SyncSide
from engine.trackers.base import utcnow
from engine.vocab import Direction, Folder

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


log = logging.getLogger("backbone.pipeline")


class Work:
    """The deferred effects of one commit that spans several steps: the file moves its rows
    describe and actions (writing SEND files, events) that must not run if it rolls back."""

    def __init__(self) -> None:
        self.moves: list[_Move] = []
        self.after: list[Callable[[], object]] = []

    def later(self, action: Callable[[], object]) -> None:
        """Run `action` once the unit has committed."""
        self.after.append(action)


class Ledger:
    """Transactions whose file moves follow the commit, message rows and their moves, the outbox
    insert (sequence allocated with the message row) and activity and status events."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.active: set[str] = set()  # synchronizations with activity to record
        self.held_somewhere: dict[int, bool] = {}  # side -> may have WAITING or MISSING messages

    @contextmanager
    def unit(self, side: SideCtx) -> Iterator[Work]:
        """One commit for many steps (an apply chunk): pass the `Work` to each step's `tx` and
        `record`; its file moves and actions run once it has committed, never after a rollback."""
        work = Work()
        with self.p.db.write():
            yield work
        self.apply_moves(side, work.moves)
        for action in work.after:
            action()

    @contextmanager
    def tx(
        self, side: SideCtx, work: Work | None = None, *, savepoint: bool = True
    ) -> Iterator[tuple[Session, list[_Move]]]:
        """A write transaction whose file moves happen only once it has committed: at its own
        end, or, inside a `unit`, at the unit's commit."""
        moves: list[_Move] = []
        with self.p.db.write(savepoint=savepoint) as s:
            yield s, moves
        if work is not None:
            work.moves.extend(moves)  # the unit's commit is still to come
        else:
            self.apply_moves(side, moves)

    def queue(self, s: Session, side: SideCtx, out: Outgoing) -> Queued:
        """Insert one outgoing message (sequence allocated here, in the caller's transaction)."""
        pair_id, epoch, seq = None, 0, 0
        if out.pair is not None:
            out.pair.out_seq += 1
            out.pair.dirty = True  # written by the detector's save()
            pair_id, epoch, seq = out.pair.pair_id, out.pair.out_epoch, out.pair.out_seq
        message_id = str(uuid.uuid4())
        now = utcnow()
        envelope = Envelope(
            sync=side.sync_key,
            sender=side.endpoint,
            recipient=side.partner_endpoint,
            id=message_id,
            type=out.type,
            created=iso(now),
            config=side.config_version,
            issue=pair_id,
            epoch=epoch,
            seq=seq,
            body=out.body,
        )
        file_name, payload = _generated_name(".bac"), envelope.to_json()
        data = payload.encode()
        inserted = s.connection().execute(
            S.INSERT_MESSAGE,
            {
                "side_id": side.id,
                "direction": Direction.OUT,
                "uuid": message_id,
                "type": out.type,
                "pair_id": pair_id,
                "epoch": epoch,
                "seq": seq,
                "folder": Folder.SEND,
                "file_name": file_name,
                "payload": payload,
                "size": len(data),
                "created": now,
                "updated": now,
            },
        )
        return Queued(int(inserted.inserted_primary_key[0]), file_name, data, out.type)  # type: ignore[index]

    def write_send_files(self, side: SideCtx, rows: list[Queued]) -> None:
        """Project freshly queued messages into `SEND` (the database already holds them)."""
        for row in rows:
            fsutil.write_atomic(side.folders.path(Folder.SEND, row.file_name), row.data, durable=False)

    def insert_rows(self, side: SideCtx, items: list[tuple[str, _Classified, str, int]]) -> None:
        """One commit for the rows of arrived files: (file name, outcome, original name, size)."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for name, outcome, original, size in items:
            env = outcome.envelope
            rows.append(
                {
                    "side_id": side.id,
                    "direction": Direction.IN,
                    "uuid": env.id if env else "",
                    "type": env.type if env else "",
                    "pair_id": env.issue if env else None,
                    "epoch": env.epoch if env else 0,
                    "seq": env.seq if env else 0,
                    "folder": outcome.folder,
                    "file_name": name,
                    "original_name": _escape(original),
                    "size": size,
                    "reason_code": outcome.code,
                    "reason_text": outcome.text,
                    "payload": outcome.payload,
                    "created": now,
                    "updated": now,
                }
            )
        with self.p.db.write() as s:
            ids = [
                row_id
                for (row_id,) in s.connection().execute(S.INSERT_MESSAGES_RETURNING_ID, rows)  # one statement
            ]
            self.touch(side.sync_key)
        for row_id, row in zip(ids, rows, strict=True):
            if row["folder"] in LOGGED_FOLDERS:
                log.warning(
                    "%s: arrived file %s (message %s) to %s: %s %s",
                    side.sync_key,
                    row["original_name"],
                    row_id,
                    row["folder"],
                    row["reason_code"],
                    row["reason_text"][:200],
                )
            self.p.events.publish(
                MessageMoved(
                    side.sync_key, row_id, row["folder"], row["reason_code"], Direction.IN, row["type"]
                )
            )

    def record(self, side: SideCtx, moves: list[_Outcome], work: Work | None = None) -> None:
        """Move messages (row, folder, hold, code, text) in one statement."""
        with self.tx(side, work, savepoint=False) as (s, pending):  # updates only: nothing to undo alone
            params = [self.move_params(pending, side, move) for move in moves]
            if params:
                s.connection().execute(S.MOVE_MESSAGE, params)  # one statement for all

    def move_in_tx(
        self,
        s: Session,
        moves: list[_Move],
        side: SideCtx,
        row: Message,
        folder: str,
        hold: str | None,
        code: str,
        text: str,
    ) -> None:
        """Update the row (the truth); its file follows once the transaction commits."""
        s.connection().execute(S.MOVE_MESSAGE, self.move_params(moves, side, (row, folder, hold, code, text)))

    def move_params(self, moves: list[_Move], side: SideCtx, outcome: _Outcome) -> dict[str, Any]:
        """Note a move (the row object follows it) and return its update's parameters."""
        row, folder, hold, code, text = outcome
        moves.append(
            _Move(
                row.id or 0, row.file_name, row.folder, row.hold, folder, hold, code, row.direction, row.type
            )
        )
        if folder in (Folder.WAITING, Folder.MISSING):
            self.held_somewhere[side.id] = True
        elif folder in LOGGED_FOLDERS and (folder, code) != (row.folder, row.reason_code):
            log.warning(
                "%s: message %s (%s) to %s: %s %s",
                side.sync_key,
                row.id,
                row.type or "file",
                folder if not hold else f"{folder}/{hold}",
                code,
                text[:200],
            )
        if folder in (Folder.SENT, Folder.PROCESSED):
            self.touch(side.sync_key)
        row.folder, row.hold = folder, hold
        row.reason_code, row.reason_text = code, text[:500]
        return {
            "b_id": row.id,
            "folder": folder,
            "hold": hold,
            "reason_code": code,
            "reason_text": row.reason_text,
            "attempts": row.attempts,
            "next_attempt": row.next_attempt,
            "updated": utcnow(),
        }

    def apply_moves(self, side: SideCtx, moves: list[_Move]) -> None:
        """Rename files to where the committed rows say they are."""
        for move in moves:
            source = side.folders.path(move.old_folder, move.file_name, move.old_hold)
            target = side.folders.path(move.folder, move.file_name, move.hold)
            if source != target:
                try:
                    fsutil.move(source, target)
                except FileNotFoundError:
                    self.p.disturbed()
                    log.warning(
                        "message file %s missing from %s; reconciled at next start",
                        move.file_name,
                        move.old_folder,
                    )
            self.p.events.publish(
                MessageMoved(
                    side.sync_key, move.message_id, move.folder, move.code, move.direction, move.type
                )
            )

    def touch(self, sync_key: str) -> None:
        """Note activity; written once per pass by `flush_activity`, not once per message."""
        self.active.add(sync_key)

    def flush_activity(self) -> None:
        """Record the last-activity time of every synchronization that moved messages."""
        if not self.active:
            return
        keys, self.active = self.active, set()
        with self.p.db.write() as s:
            s.execute(
                update(Synchronization)
                .where(col(Synchronization.key).in_(sorted(keys)))
                .values(last_activity=utcnow())
            )
        for key in keys:
            self.p.events.publish(SyncChanged(key, ""))

    def publish_status(self, sync_key: str) -> None:
        self.p.events.publish(SyncChanged(sync_key, self.status(sync_key)))

    def status(self, sync_key: str) -> str:
        with self.p.db.session() as s:
            sync = s.get(Synchronization, sync_key)
            return sync.status if sync else ""

    def report_channel(self, side: SideCtx, text: str) -> bool:
        """Show (or, with "", clear) what is wrong with a side's channel; True if that changed."""
        text = text[:500]
        if text == side.channel_error:
            return False
        with self.p.db.write() as s:
            row = s.get(SyncSide, side.id)
            if row is None or row.channel_error == text:
                side.channel_error = text
                return False
            if not text:
                row.channel_error_since = None
            elif not row.channel_error:
                row.channel_error_since = utcnow()
            row.channel_error = text
            s.add(row)
        side.channel_error = text
        if text:
            log.warning("%s: channel error: %s", side.sync_key, text)
        else:
            log.info("%s: channel works again", side.sync_key)
        self.p.events.publish(SyncChanged(side.sync_key, ""))
        return True
