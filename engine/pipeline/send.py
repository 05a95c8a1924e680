"""The send step."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from sqlmodel import col, select

from engine.domain.side import SideCtx
from engine.errors import BackboneError
from engine.pipeline.records import (
    BATCH,
    BUNDLE_MAX,
    _send_failure,
    backoff,
)
from engine.store.models import Message
from engine.vocab import Direction, Folder

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


class SendStep:
    """Hands queued messages to the channel in order, bundled when they queue up."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.bundle_max = max(1, int(os.environ.get("BACKBONE_BUNDLE_MAX", BUNDLE_MAX)))

    def send(self, side: SideCtx) -> int:
        """Hand queued messages to the channel in order (bundled when they queue up and the
        codec can); a failure waits in `SEND_ERROR` and nothing overtakes it."""
        with self.p.db.session() as s:
            rows = s.exec(
                select(Message)
                .where(
                    Message.side_id == side.id,
                    Message.direction == Direction.OUT,
                    col(Message.folder).in_([Folder.SEND, Folder.SEND_ERROR]),
                )
                .order_by(col(Message.id))
                .limit(BATCH)
            ).all()
        now = time.time()
        ready: list[Message] = []
        for row in rows:
            if row.folder == Folder.SEND_ERROR and row.next_attempt > now:
                break
            ready.append(row)
        if not ready:
            return 0
        codec = self.p.codec_for(side)
        channel = self.p.channel_for(side)
        # queued messages travel together: one file, gpg call or mail for up to `bundle_max`
        bundle = self.bundle_max if channel.bundles else 1
        delivered: list[Message] = []
        failed: Message | None = None
        failure = ("", "")
        try:
            for start in range(0, len(ready), bundle):
                if self.p.should_stop():
                    break
                group = ready[start : start + bundle]
                try:
                    payloads = [row.payload or "" for row in group]
                    data = codec.seal(payloads[0]) if len(group) == 1 else codec.seal_many(payloads)
                    channel.deliver(group[0].file_name, data)
                except (OSError, BackboneError) as exc:
                    failed, failure = group[0], _send_failure(side, exc)
                    break
                delivered.extend(group)
            if delivered:
                try:
                    channel.flush()
                except OSError as exc:  # not known to be out (rule 11): they are sent again
                    failed, failure, delivered = delivered[0], _send_failure(side, exc), []
        finally:
            channel.close()
        if delivered:
            self.p.ledger.record(side, [(row, Folder.SENT, None, "", "") for row in delivered])
        if failed is not None:
            failed.attempts += 1
            failed.next_attempt = now + backoff(failed.attempts)
            code, text = failure
            self.p.ledger.record(
                side,
                [(failed, Folder.SEND_ERROR, None, code, f"attempt {failed.attempts}: {text}")],
            )
        return len(delivered) + (1 if failed else 0)
