"""The receive step: arriving files classified and filed under generated names (rule 9)."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from engine.domain.envelope import Envelope, split_bundle
from engine.domain.side import SideCtx
from engine.errors import (
    BackboneError,
    RejectedError,
)
from engine.pipeline.records import (
    BATCH,
    MAX_MESSAGE_BYTES,
    SETTLE_SECONDS,
    _Classified,
    _generated_name,
)
from engine.store import fsutil
from engine.vocab import Folder, MessageType, Reason

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


log = logging.getLogger("backbone.pipeline")


class ReceiveStep:
    """Takes arriving files (the exchange folder, a mail attachment, local delivery) into RECEIVE,
    each classified with a row: RECEIVE, REJECTED or UNKNOWN."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.max_message_bytes = MAX_MESSAGE_BYTES

    def limit(self, side: SideCtx) -> int:
        """The largest message file this side takes: its setting, within the installation's bound."""
        return min(self.max_message_bytes, int(side.settings.get("max_message_bytes")))

    def ingest(self, side: SideCtx) -> int:
        """Take the partner's files from the channel's inbox (the exchange `RECEIVE`) into ours,
        each with a row; a channel without an inbox hands its arrivals to `ingest_bytes`."""
        channel = self.p.channel_for(side)
        receive_dir = channel.inbox
        if receive_dir is None:
            return 0
        problem = channel.problem()
        try:
            names = [] if problem else [e.name for e in os.scandir(receive_dir) if not e.name.startswith(".")]
        except OSError as exc:
            problem = f"cannot read {receive_dir}: {exc.strerror or exc}"
        if self.p.ledger.report_channel(side, problem) and not problem:
            # the share is back: send what waited at once
            self.p.operator.retry_folder(side, Folder.SEND_ERROR)
        if problem:
            return 0
        names.sort()
        work = 0
        deferred: list[tuple[str, _Classified, str, int]] = []
        try:
            for name in names[:BATCH]:
                if self.p.should_stop():
                    break
                work += self._ingest_path(side, receive_dir / name, name, deferred)
        finally:
            if deferred:  # renamed files get their rows in one commit (an orphan is refiled at start)
                self.p.ledger.insert_rows(side, deferred)
        if work:
            fsutil.fsync_dir(side.folders.folder(Folder.RECEIVE))
            fsutil.fsync_dir(receive_dir)
        return work

    def ingest_bytes(self, side: SideCtx, original: str, data: bytes) -> int:
        """Take one message file that arrived in memory (local delivery, a mail attachment)."""
        limit = self.limit(side)
        if len(data) > limit:
            text = f"{len(data)} bytes, more than {limit} (the max_message_bytes setting)"
            outcomes = [_Classified(Folder.REJECTED, None, Reason.TOO_LARGE, text, content=data)]
        elif not data:
            outcomes = [_Classified(Folder.REJECTED, None, Reason.EMPTY_FILE, "zero bytes", content=data)]
        else:
            outcomes = self.classify(side, data, settled=True) or []
            if not outcomes:
                raise OSError("the message could not be opened now (gpg unavailable); try again")
        return self.store(side, outcomes, original, data, source=None)

    def _ingest_path(
        self,
        side: SideCtx,
        source: Path,
        original: str,
        deferred: list[tuple[str, _Classified, str, int]] | None = None,
    ) -> int:
        """Classify one arriving file and file it under a generated name; 0 if it must wait."""
        try:
            info = source.lstat()
        except FileNotFoundError:
            return 0
        settled = time.time() - info.st_mtime >= SETTLE_SECONDS
        limit = self.limit(side)
        reason: tuple[str, str, str] | None = None
        if not stat.S_ISREG(info.st_mode):
            reason = (
                Folder.UNKNOWN,
                Reason.NOT_A_REGULAR_FILE,
                "not a regular file (a link, folder or device)",
            )
        elif not original.endswith(".bac"):
            reason = (Folder.UNKNOWN, Reason.NOT_A_MESSAGE_FILE, "file name does not end in .bac")
        elif info.st_size > limit:
            reason = (
                Folder.REJECTED,
                Reason.TOO_LARGE,
                f"{info.st_size} bytes, more than {limit} (the max_message_bytes setting)",
            )
        elif info.st_size == 0:
            if not settled:
                return 0
            reason = (Folder.REJECTED, Reason.EMPTY_FILE, "zero bytes")
        if reason is not None:
            folder, code, text = reason
            return self.store(
                side, [_Classified(folder, None, code, text)], original, b"", source=source, deferred=deferred
            )
        try:
            data = fsutil.read_limited(source, limit)
        except (OSError, ValueError) as exc:
            if not settled:
                return 0
            return self.store(
                side,
                [_Classified(Folder.REJECTED, None, Reason.UNREADABLE, str(exc))],
                original,
                b"",
                source=source,
                deferred=deferred,
            )
        outcomes = self.classify(side, data, settled)
        if outcomes is None:
            return 0  # incomplete and still recent, or gpg unavailable: look again later
        return self.store(side, outcomes, original, data, source=source, deferred=deferred)

    def classify(self, side: SideCtx, data: bytes, settled: bool) -> list[_Classified] | None:
        """Open (decrypt, verify) and check each envelope; None when it must be tried later."""
        try:
            texts = split_bundle(self.p.codec_for(side).open(data))
        except RejectedError as exc:
            if not settled:
                return None
            return [_Classified(Folder.REJECTED, None, exc.code, exc.text, content=data)]
        except BackboneError as exc:
            log.warning("cannot open a message for %s now: %s", side.sync_key, exc)
            return None
        outcomes = [self._check_envelope(side, text) for text in texts]
        if not settled and any(o.folder == Folder.REJECTED and o.envelope is None for o in outcomes):
            return None  # maybe still being written
        return outcomes

    def _check_envelope(self, side: SideCtx, text: str) -> _Classified:
        try:
            envelope = Envelope.from_json(text)
        except RejectedError as exc:
            return _Classified(Folder.REJECTED, None, exc.code, exc.text, content=text.encode())
        problem: tuple[str, str] | None = None
        if envelope.sync != side.sync_key:
            problem = (Reason.WRONG_SYNCHRONIZATION, f"message is for synchronization {envelope.sync!r}")
        elif envelope.recipient != side.endpoint:
            problem = (Reason.WRONG_RECIPIENT, "message is addressed to another installation")
        elif side.partner_endpoint and envelope.sender != side.partner_endpoint:
            problem = (Reason.WRONG_SENDER, "message does not come from the paired partner")
        elif not side.partner_endpoint and envelope.type not in (MessageType.HANDSHAKE, MessageType.DECLINE):
            problem = (Reason.NOT_PAIRED, f"a {envelope.type} before the handshake")
        if problem is not None:
            return _Classified(Folder.REJECTED, envelope, *problem, content=text.encode())
        return _Classified(Folder.RECEIVE, envelope, "", "", text, content=text.encode())

    def store(
        self,
        side: SideCtx,
        outcomes: list[_Classified],
        original: str,
        data: bytes,
        source: Path | None,
        deferred: list[tuple[str, _Classified, str, int]] | None = None,
    ) -> int:
        """File the outcomes: rename the arriving file when it is the message itself; else rows
        first (the payload is the truth), then their files, then drop the original."""
        if source is not None and len(outcomes) == 1 and outcomes[0].content in (None, data):
            outcome = outcomes[0]
            name = _generated_name(".bac" if original.endswith(".bac") else ".dat")
            size = source.lstat().st_size
            target = side.folders.path(outcome.folder, name)
            fsutil.move(source, target)  # the partner's file keeps its mode: the 0700 home guards it
            if deferred is not None:
                deferred.append((name, outcome, original, size))
            else:
                self.p.ledger.insert_rows(side, [(name, outcome, original, size)])
            return 1
        named = [(_generated_name(".bac"), outcome) for outcome in outcomes]
        if deferred:
            self.p.ledger.insert_rows(side, deferred)
            deferred.clear()
        self.p.ledger.insert_rows(side, [(name, outcome, original, len(data)) for name, outcome in named])
        folders: set[Path] = set()
        for name, outcome in named:
            target = side.folders.path(outcome.folder, name)
            evidence = outcome.payload is None  # else the row holds the message; the file is its copy
            fsutil.write_atomic(
                target,
                outcome.content if outcome.content is not None else data,
                durable=evidence,
                sync_dir=False,
            )
            if evidence:
                folders.add(target.parent)
        for folder in folders:
            fsutil.fsync_dir(folder)
        if source is not None:
            self.p.db.checkpoint_full()  # the rows survive a power loss before the partner's file goes
            source.unlink(missing_ok=True)
        return len(named)
