"""The message pipeline: detect tracker changes, send, receive, and apply in order."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Row, and_, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlmodel import Session, col, select

from engine.channels.base import Channel
from engine.config.mapping import MappingConfig, parse_config
from engine.domain import folders as F
from engine.domain.envelope import CONTROL_TYPES, ISSUE_TYPES, Codec, Envelope, PlainCodec, split_bundle
from engine.domain.side import SideCtx
from engine.errors import (
    ApplyError,
    BackboneError,
    MissingIssueError,
    ReasonError,
    RejectedError,
    TrackerOffline,
    TrackerRefused,
)
from engine.events import EventBus, MessageMoved, SyncChanged
from engine.pipeline.apply import _Applier, _InPair, _upsert_pair
from engine.pipeline.detect import _Detector
from engine.pipeline.ledger import (
    Outgoing,
    Queued,
    _Classified,
    _escape,
    _generated_name,
    _Move,
    _Outcome,
    _send_failure,
    backoff,
    iso,
)
from engine.store import fsutil
from engine.store import statements as S
from engine.store.database import Database
from engine.store.models import History, IssuePair, Message, Synchronization, SyncSide
from engine.trackers.base import Change, Tracker, utcnow
from engine.vocab import SyncStatus

log = logging.getLogger("backbone.pipeline")

BATCH = 200
SETTLE_SECONDS = 2.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
BUNDLE_MAX = 100
APPLY_CHUNK = 50
RUNNING = SyncStatus.RUNNING
STOPPED = SyncStatus.STOPPED
LOGGED_FOLDERS = frozenset({F.ERROR, F.REJECTED, F.SEND_ERROR, F.OFFLINE, F.UNKNOWN})


class Pipeline:
    """All message steps for every side of this installation; one instance per engine."""

    def __init__(
        self,
        db: Database,
        tracker: Tracker,
        data_root: Path,
        events: EventBus,
        codec_for: Callable[[SideCtx], Codec] | None = None,
    ) -> None:
        self.db = db
        self.tracker = tracker
        self.data_root = data_root
        self.events = events
        self.codec_for = codec_for or (lambda side: PlainCodec())
        self._configs: dict[tuple[int, int], MappingConfig] = {}
        self.control_handler: Callable[[Session, SideCtx, Envelope], list[Outgoing]] | None = None
        self.should_stop: Callable[[], bool] = lambda: False
        self._active: set[str] = set()
        self.caught_up: set[int] = set()
        self.max_message_bytes = MAX_MESSAGE_BYTES
        self.bundle_max = max(1, int(os.environ.get("BACKBONE_BUNDLE_MAX", BUNDLE_MAX)))
        self._held_somewhere: dict[int, bool] = {}  # side -> may have WAITING or MISSING messages
        self._batch = threading.local()
        self.channel_for: Callable[[SideCtx], Channel] | None = None

    # -- sides --------------------------------------------------------------------------------

    def sides(self) -> list[SideCtx]:
        with self.db.session() as s:
            syncs = {row.key: row for row in s.exec(select(Synchronization))}
            rows = s.exec(select(SyncSide).order_by(col(SyncSide.id))).all()
        by_sync: dict[str, list[SyncSide]] = {}
        for row in rows:
            by_sync.setdefault(row.sync_key, []).append(row)
        result = []
        for row in rows:
            sync = syncs.get(row.sync_key)
            if sync is None:
                continue
            partner = next((o.id for o in by_sync[row.sync_key] if o.id != row.id), None)
            result.append(self._ctx(sync, row, partner))
        return result

    def pending(self) -> dict[int, set[str]]:
        """Side id -> the work folders (SEND, SEND_ERROR, RECEIVE, OFFLINE) that hold messages."""
        with self.db.session() as s:
            rows = s.exec(
                select(Message.side_id, Message.folder)
                .where(col(Message.folder).in_([F.SEND, F.SEND_ERROR, F.RECEIVE, F.OFFLINE]))
                .distinct()
            ).all()
        result: dict[int, set[str]] = {}
        for side_id, folder in rows:
            result.setdefault(side_id, set()).add(folder)
        return result

    def side(self, side_id: int) -> SideCtx:
        """The side as stored now; LookupError once its synchronization is deleted."""
        with self.db.session() as s:
            row = s.get(SyncSide, side_id)
            sync = s.get(Synchronization, row.sync_key) if row is not None else None
            if row is None or sync is None:
                raise LookupError(f"synchronization side {side_id} no longer exists")
            others = s.exec(select(SyncSide).where(SyncSide.sync_key == row.sync_key)).all()
        partner = next((o.id for o in others if o.id != row.id), None)
        return self._ctx(sync, row, partner)

    def _ctx(self, sync: Synchronization, row: SyncSide, partner_side_id: int | None) -> SideCtx:
        return SideCtx(
            id=row.id or 0,
            sync_key=row.sync_key,
            project=row.project,
            folder=row.folder,
            role=row.role,
            endpoint=row.endpoint,
            partner_endpoint=row.partner_endpoint,
            partner_project=row.partner_project,
            exchange=Path(row.exchange) if row.exchange else None,
            cursor=row.cursor,
            config_version=row.config_version,
            config_text=row.config_text,
            sync_user=sync.sync_user,
            status=sync.status,
            protocol=sync.protocol,
            folders=F.SideFolders(self.data_root / row.sync_key / row.folder),
            pairing_secret=row.pairing_secret,
            partner_side_id=partner_side_id,
            encryption=sync.encryption,
            own_fingerprint=row.own_fingerprint,
            partner_fingerprint=row.partner_fingerprint,
            mail_settings=row.mail_settings,
            channel_error=row.channel_error,
        )

    def config(self, side: SideCtx) -> MappingConfig:
        key = (side.id, side.config_version)
        cached = self._configs.get(key)
        if cached is None:
            cached = parse_config(side.config_text, f"configuration of {side.sync_key}/{side.folder}")
            self._configs[key] = cached
        return cached

    @contextmanager
    def _tx(self, side: SideCtx, *, savepoint: bool = True) -> Iterator[tuple[Session, list[_Move]]]:
        """A write transaction whose file moves happen only once it has committed."""
        moves: list[_Move] = []
        with self.db.write(savepoint=savepoint) as s:
            yield s, moves
        batch: list[_Move] | None = getattr(self._batch, "moves", None)
        if batch is not None:
            batch.extend(moves)  # the batch's commit is still to come
        else:
            self._apply_moves(side, moves)

    # -- queueing -----------------------------------------------------------------------------

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
                "direction": "out",
                "uuid": message_id,
                "type": out.type,
                "pair_id": pair_id,
                "epoch": epoch,
                "seq": seq,
                "folder": F.SEND,
                "file_name": file_name,
                "payload": payload,
                "size": len(data),
                "created": now,
                "updated": now,
            },
        )
        return Queued(int(inserted.inserted_primary_key[0]), file_name, data)  # type: ignore[index]

    def write_send_files(self, side: SideCtx, rows: list[Queued]) -> None:
        """Project freshly queued messages into `SEND` (the database already holds them)."""
        for row in rows:
            fsutil.write_atomic(side.folders.path(F.SEND, row.file_name), row.data, durable=False)

    # -- detect -------------------------------------------------------------------------------

    def detect(self, side: SideCtx) -> int:
        """Turn new tracker changes into queued messages; cursor, seq and rows in one commit.

        `caught_up` holds the sides whose last detect saw the end of the change log."""
        self.caught_up.discard(side.id)
        if not side.running:
            return 0
        with self.db.session() as s:
            stored = s.get(SyncSide, side.id)
            if stored is None:
                return 0
            side.cursor = stored.cursor  # another thread's detect may have moved it
        try:
            changes = self.tracker.changes_since(side.project, side.cursor, BATCH)
        except TrackerOffline:
            return 0  # nothing is lost: the cursor stays where it is
        if not changes:
            self.caught_up.add(side.id)
            return 0
        config = self.config(side)
        queued: list[Queued] = []
        ours = [change for change in changes if change.author != side.sync_user]  # else: echoes
        current: Change | None = None
        try:
            with self.db.write() as s:
                row = s.get(SyncSide, side.id)
                if row is None or row.cursor != side.cursor:
                    return 0
                detector = _Detector(self, s, side, config)
                if ours:
                    detector.preload({change.issue_id for change in ours})
                for change in ours:
                    current = change
                    for out in detector.messages_for(change):
                        queued.append(self.queue(s, side, out))
                detector.save()
                row.cursor = changes[-1].id
                s.add(row)
                if queued:
                    self._touch(side.sync_key)
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
        self.write_send_files(side, queued)
        for message in queued:
            self.events.publish(MessageMoved(side.sync_key, message.id, F.SEND, ""))
        return len(changes)

    def _stop_after_bug(self, side: SideCtx, change: Change | None, exc: Exception) -> None:
        """Stop one synchronization whose tracker change cannot be turned into a message (the
        batch was rolled back and its cursor kept: nothing is skipped); the others go on."""
        log.error("detect for %s failed on %s", side.sync_key, change, exc_info=exc)
        what = "a tracker change"
        if change is not None:
            try:
                issue = self.tracker.read_issue(change.issue_id)
            except Exception:  # noqa: BLE001 - only to name it
                issue = None
            what = f"change {change.id} ({change.op} of {issue.key if issue else 'issue ' + change.issue_id})"
        with self.db.write() as s:
            sync = s.get(Synchronization, side.sync_key)
            if sync is not None:
                sync.status = STOPPED
                sync.status_detail = (
                    f"stopped: {what} could not be sent, internal error, please report: "
                    f"{type(exc).__name__}: {exc}"
                )[:500]
                s.add(sync)
        side.status = STOPPED
        self._publish_status(side.sync_key)

    # -- send ---------------------------------------------------------------------------------

    def send(self, side: SideCtx) -> int:
        """Hand queued messages to the channel in order (bundled when they queue up and the
        codec can); a failure waits in `SEND_ERROR` and nothing overtakes it."""
        with self.db.session() as s:
            rows = s.exec(
                select(Message)
                .where(
                    Message.side_id == side.id,
                    Message.direction == "out",
                    col(Message.folder).in_([F.SEND, F.SEND_ERROR]),
                )
                .order_by(col(Message.id))
                .limit(BATCH)
            ).all()
        now = time.time()
        ready: list[Message] = []
        for row in rows:
            if row.folder == F.SEND_ERROR and row.next_attempt > now:
                break
            ready.append(row)
        if not ready:
            return 0
        codec = self.codec_for(side)
        # queued messages travel together: one file, gpg call or mail for up to `bundle_max`
        bundle = self.bundle_max if side.protocol != "local" else 1
        channel = self.channel_for(side) if side.protocol == "email" and self.channel_for else None
        delivered: list[Message] = []
        failed: Message | None = None
        failure = ("", "")
        for start in range(0, len(ready), bundle):
            if self.should_stop():
                break
            group = ready[start : start + bundle]
            try:
                payloads = [row.payload or "" for row in group]
                data = codec.seal(payloads[0]) if len(group) == 1 else codec.seal_many(payloads)
                if channel is not None:
                    channel.deliver(group[0].file_name, data)
                else:
                    self._deliver(side, group[0].file_name, data)
            except (OSError, BackboneError) as exc:
                failed, failure = group[0], _send_failure(side, exc)
                break
            delivered.extend(group)
        if channel is not None:
            getattr(channel, "close", lambda: None)()
        if delivered:
            try:
                self._flush_channel(side)
            except OSError as exc:  # not known to be out (rule 11): they are sent again
                failed, failure, delivered = delivered[0], _send_failure(side, exc), []
        if delivered:
            self._record(side, [(row, F.SENT, None, "", "") for row in delivered])
        if failed is not None:
            failed.attempts += 1
            failed.next_attempt = now + backoff(failed.attempts)
            code, text = failure
            self._record(
                side,
                [(failed, F.SEND_ERROR, None, code, f"attempt {failed.attempts}: {text}")],
            )
        return len(delivered) + (1 if failed else 0)

    def _deliver(self, side: SideCtx, name: str, data: bytes) -> None:
        if side.protocol == "local":
            assert side.partner_side_id is not None
            self.ingest_bytes(self.side(side.partner_side_id), name, data)
        elif side.protocol == "file":
            assert side.exchange is not None
            send_dir, _ = F.exchange_paths(side.exchange)
            fsutil.write_atomic(send_dir / name, data, sync_dir=False, mode=0o644)  # the partner reads it
        else:  # email goes through send()'s channel
            raise OSError(f"protocol {side.protocol!r} has no built-in channel")

    def _flush_channel(self, side: SideCtx) -> None:
        if side.protocol == "file" and side.exchange is not None:
            fsutil.fsync_dir(F.exchange_paths(side.exchange)[0])

    def report_channel(self, side: SideCtx, text: str) -> bool:
        """Show (or, with "", clear) what is wrong with a side's channel; True if that changed."""
        text = text[:500]
        if text == side.channel_error:
            return False
        with self.db.write() as s:
            row = s.get(SyncSide, side.id)
            if row is None or row.channel_error == text:
                side.channel_error = text
                return False
            row.channel_error = text
            s.add(row)
        side.channel_error = text
        if text:
            log.warning("%s: channel error: %s", side.sync_key, text)
        else:
            log.info("%s: channel works again", side.sync_key)
        self.events.publish(SyncChanged(side.sync_key, ""))
        return True

    # -- receive ------------------------------------------------------------------------------

    def ingest(self, side: SideCtx) -> int:
        """Take the partner's files from the exchange `RECEIVE` into ours, each with a row."""
        if side.protocol != "file" or side.exchange is None:
            return 0
        send_dir, receive_dir = F.exchange_paths(side.exchange)
        problem = fsutil.folder_problem(send_dir, os.W_OK) or fsutil.folder_problem(receive_dir, os.W_OK)
        try:
            names = [] if problem else [e.name for e in os.scandir(receive_dir) if not e.name.startswith(".")]
        except OSError as exc:
            problem = f"cannot read {receive_dir}: {exc.strerror or exc}"
        if self.report_channel(side, problem) and not problem:
            self.retry_folder(side, F.SEND_ERROR)  # the share is back: send what waited at once
        if problem:
            return 0
        names.sort()
        work = 0
        deferred: list[tuple[str, _Classified, str, int]] = []
        try:
            for name in names[:BATCH]:
                if self.should_stop():
                    break
                work += self._ingest_path(side, receive_dir / name, name, deferred)
        finally:
            if deferred:  # renamed files get their rows in one commit (an orphan is refiled at start)
                self._insert_rows(side, deferred)
        if work:
            fsutil.fsync_dir(side.folders.folder(F.RECEIVE))
            fsutil.fsync_dir(receive_dir)
        return work

    def ingest_bytes(self, side: SideCtx, original: str, data: bytes) -> int:
        """Take one message file that arrived in memory (local delivery, a mail attachment)."""
        if len(data) > self.max_message_bytes:
            text = f"{len(data)} bytes, more than {self.max_message_bytes}"
            outcomes = [_Classified(F.REJECTED, None, "TOO_LARGE", text, content=data)]
        elif not data:
            outcomes = [_Classified(F.REJECTED, None, "EMPTY_FILE", "zero bytes", content=data)]
        else:
            outcomes = self._open(side, data, settled=True) or []
            if not outcomes:
                raise OSError("the message could not be opened now (gpg unavailable); try again")
        return self._store(side, outcomes, original, data, source=None)

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
        reason: tuple[str, str, str] | None = None
        if not stat.S_ISREG(info.st_mode):
            reason = (F.UNKNOWN, "NOT_A_REGULAR_FILE", "not a regular file (a link, folder or device)")
        elif not original.endswith(".bac"):
            reason = (F.UNKNOWN, "NOT_A_MESSAGE_FILE", "file name does not end in .bac")
        elif info.st_size > self.max_message_bytes:
            reason = (F.REJECTED, "TOO_LARGE", f"{info.st_size} bytes, more than {self.max_message_bytes}")
        elif info.st_size == 0:
            if not settled:
                return 0
            reason = (F.REJECTED, "EMPTY_FILE", "zero bytes")
        if reason is not None:
            folder, code, text = reason
            return self._store(
                side, [_Classified(folder, None, code, text)], original, b"", source=source, deferred=deferred
            )
        try:
            data = fsutil.read_limited(source, self.max_message_bytes)
        except (OSError, ValueError) as exc:
            if not settled:
                return 0
            return self._store(
                side,
                [_Classified(F.REJECTED, None, "UNREADABLE", str(exc))],
                original,
                b"",
                source=source,
                deferred=deferred,
            )
        outcomes = self._open(side, data, settled)
        if outcomes is None:
            return 0  # incomplete and still recent, or gpg unavailable: look again later
        return self._store(side, outcomes, original, data, source=source, deferred=deferred)

    def _open(self, side: SideCtx, data: bytes, settled: bool) -> list[_Classified] | None:
        """Open (decrypt, verify) and check each envelope; None when it must be tried later."""
        try:
            texts = split_bundle(self.codec_for(side).open(data))
        except RejectedError as exc:
            if not settled:
                return None
            return [_Classified(F.REJECTED, None, exc.code, exc.text, content=data)]
        except BackboneError as exc:
            log.warning("cannot open a message for %s now: %s", side.sync_key, exc)
            return None
        outcomes = [self._check_envelope(side, text) for text in texts]
        if not settled and any(o.folder == F.REJECTED and o.envelope is None for o in outcomes):
            return None  # maybe still being written
        return outcomes

    def _check_envelope(self, side: SideCtx, text: str) -> _Classified:
        try:
            envelope = Envelope.from_json(text)
        except RejectedError as exc:
            return _Classified(F.REJECTED, None, exc.code, exc.text, content=text.encode())
        problem: tuple[str, str] | None = None
        if envelope.sync != side.sync_key:
            problem = ("WRONG_SYNCHRONIZATION", f"message is for synchronization {envelope.sync!r}")
        elif envelope.recipient != side.endpoint:
            problem = ("WRONG_RECIPIENT", "message is addressed to another installation")
        elif side.partner_endpoint and envelope.sender != side.partner_endpoint:
            problem = ("WRONG_SENDER", "message does not come from the paired partner")
        elif not side.partner_endpoint and envelope.type not in ("HANDSHAKE", "DECLINE"):
            problem = ("NOT_PAIRED", f"a {envelope.type} before the handshake")
        if problem is not None:
            return _Classified(F.REJECTED, envelope, *problem, content=text.encode())
        return _Classified(F.RECEIVE, envelope, "", "", text, content=text.encode())

    def _store(
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
            fsutil.move(source, target)
            with contextlib.suppress(PermissionError):  # a file another user wrote stays theirs
                os.chmod(target, 0o600)
            if deferred is not None:
                deferred.append((name, outcome, original, size))
            else:
                self._insert_rows(side, [(name, outcome, original, size)])
            return 1
        named = [(_generated_name(".bac"), outcome) for outcome in outcomes]
        if deferred:
            self._insert_rows(side, deferred)
            deferred.clear()
        self._insert_rows(side, [(name, outcome, original, len(data)) for name, outcome in named])
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
            self.db.checkpoint_full()  # the rows survive a power loss before the partner's file goes
            source.unlink(missing_ok=True)
        return len(named)

    def _insert_rows(self, side: SideCtx, items: list[tuple[str, _Classified, str, int]]) -> None:
        """One commit for the rows of arrived files: (file name, outcome, original name, size)."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for name, outcome, original, size in items:
            env = outcome.envelope
            rows.append(
                {
                    "side_id": side.id,
                    "direction": "in",
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
        with self.db.write() as s:
            ids = [
                row_id
                for (row_id,) in s.connection().execute(S.INSERT_MESSAGES_RETURNING_ID, rows)  # one statement
            ]
            self._touch(side.sync_key)
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
            self.events.publish(MessageMoved(side.sync_key, row_id, row["folder"], row["reason_code"]))

    # -- apply --------------------------------------------------------------------------------

    def apply(self, side: SideCtx) -> int:
        """Apply what is ready, in order per issue; returns how many messages moved."""
        received = select(Message).where(Message.side_id == side.id, Message.folder == F.RECEIVE)
        if not side.running:
            received = received.where(col(Message.type).not_in(ISSUE_TYPES))  # they wait in RECEIVE
        due_offline = select(Message).where(
            Message.side_id == side.id,
            Message.folder == F.OFFLINE,
            col(Message.next_attempt) <= time.time(),
        )
        with self.db.session() as s:
            rows = list(s.exec(received.order_by(col(Message.id)).limit(BATCH)).all())
            rows += s.exec(due_offline.order_by(col(Message.id)).limit(BATCH)).all()
            self._held_somewhere[side.id] = (
                s.exec(
                    select(Message.id)
                    .where(Message.side_id == side.id, col(Message.folder).in_([F.WAITING, F.MISSING]))
                    .limit(1)
                ).first()
                is not None
            )
        rows.sort(key=lambda row: row.id or 0)
        moved = 0
        offline = False
        for start in range(0, len(rows), APPLY_CHUNK):
            if offline or self.should_stop():
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
        moves: list[_Move] = []
        after: list[Callable[[], None]] = []
        self._batch.moves, self._batch.after = moves, after
        try:
            with self.db.write():  # one commit for the chunk
                for row in rows:
                    if self.should_stop():
                        break
                    try:
                        moved += self._process(side, row)
                    except TrackerOffline:
                        offline = True
                        break
        finally:
            self._batch.moves = self._batch.after = None
        self._apply_moves(side, moves)
        for action in after:
            action()
        return moved, offline

    def _apply_isolated(self, side: SideCtx, ids: list[int]) -> tuple[int, bool]:
        """One transaction per message, so a message that fails unexpectedly (a bug its content
        triggers) is set aside in ERROR, with the exception as its reason, and the others apply."""
        moved = 0
        for message_id in ids:
            with self.db.session() as s:
                row = s.get(Message, message_id)  # afresh: the rolled-back pass changed the objects
            if row is None or row.folder not in (F.RECEIVE, F.OFFLINE):
                continue  # an earlier message of this chunk released or moved it already
            try:
                done, offline = self._apply_chunk(side, [row])
            except SADatabaseError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.exception("message %s of %s failed; set aside in ERROR", row.uuid, side.sync_key)
                with self.db.session() as s:
                    row = s.get(Message, message_id)
                assert row is not None
                text = f"internal error, please report: {type(exc).__name__}: {exc}"
                if row.pair_id:
                    self._hold(side, row, _InPair(row.pair_id), "INTERNAL_ERROR", text)
                else:
                    self._record(side, [(row, F.REJECTED, None, "INTERNAL_ERROR", text)])
                done, offline = 1, False
            moved += done
            if offline:
                return moved, True
        return moved, False

    def _after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the current write is committed (at once outside an apply chunk;
        never if the chunk is rolled back)."""
        pending: list[Callable[[], None]] | None = getattr(self._batch, "after", None)
        if pending is None:
            action()
        else:
            pending.append(action)

    def _process(self, side: SideCtx, row: Message) -> int:
        """Decide one message's fate; after a success, release what waited for it."""
        assert row.payload is not None
        envelope = Envelope.from_json(row.payload)
        if envelope.type in CONTROL_TYPES:
            return self._process_control(side, row, envelope)
        if envelope.type not in ISSUE_TYPES:
            self._record(
                side, [(row, F.PROCESSED, None, "IGNORED", f"{envelope.type} is not handled by this version")]
            )
            return 1
        moved = 0
        queue = [(row, envelope)]
        while queue:
            current, env = queue.pop(0)
            released = self._process_issue(side, current, env)
            moved += 1
            queue.extend((message, Envelope.from_json(message.payload or "")) for message in released)
        return moved

    def _process_control(self, side: SideCtx, row: Message, envelope: Envelope) -> int:
        if self.control_handler is None:
            raise RuntimeError("no control handler installed")
        queued: list[Queued] = []
        with self._tx(side) as (s, moves):
            duplicate = s.exec(
                select(Message.id).where(
                    Message.side_id == side.id,
                    Message.direction == "in",
                    Message.uuid == envelope.id,
                    Message.folder == F.PROCESSED,
                )
            ).first()
            if duplicate is not None:
                self._move_in_tx(s, moves, side, row, F.OUTDATED, None, "DUPLICATE", "seen before")
            else:
                try:
                    outgoing = self.control_handler(s, side, envelope)
                except ReasonError as exc:
                    outgoing = []
                    self._move_in_tx(s, moves, side, row, F.REJECTED, None, exc.code, exc.text)
                else:
                    queued = [self.queue(s, self._fresh(s, side), out) for out in outgoing]
                    self._move_in_tx(s, moves, side, row, F.PROCESSED, None, "", "")
        if queued:
            self._after_commit(lambda: self.write_send_files(side, queued))
        self._after_commit(lambda: self._publish_status(side.sync_key))
        return 1

    def _fresh(self, s: Session, side: SideCtx) -> SideCtx:
        row = s.get(SyncSide, side.id)
        assert row is not None
        side.partner_endpoint = row.partner_endpoint
        side.partner_fingerprint = row.partner_fingerprint
        side.pairing_secret = row.pairing_secret
        side.mail_settings = row.mail_settings
        side.config_version = row.config_version
        return side

    def _process_issue(self, side: SideCtx, row: Message, env: Envelope) -> list[Message]:
        assert env.issue is not None
        key = {"b_side": side.id, "b_pair": env.issue}
        config = self.config(side)
        fields = env.body.get("fields")
        mapping_ids: list[str] = []  # the agreed values it may change (ids bound here; others fail later)
        if isinstance(fields, dict):
            mapping_ids = [mapping.id for mapping in config.fields if mapping.id in fields]
            if "status" in fields or "status" in env.body:
                mapping_ids.append("status")
        with self.db.session() as s:
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
            self._record(
                side,
                [(row, F.OUTDATED, None, "OLD_EPOCH", f"epoch {env.epoch} is older than {pair.in_epoch}")],
            )
            return []
        if env.epoch == pair.in_epoch and env.seq <= pair.in_seq:
            if self._seen_before(side, env):
                self._record(
                    side, [(row, F.OUTDATED, None, "DUPLICATE", f"seq {env.seq} was applied already")]
                )
            else:  # the sender reused the number (restored from a backup?): both sides must see it
                text = (
                    f"seq {env.seq} of epoch {env.epoch} was applied already with other content: the "
                    "partner reused a sequence number; skip this message or resync the issue"
                )
                self._hold(side, row, pair, "SEQ_REUSED", text)
            return []
        if pair.held:
            self._record(
                side,
                [
                    (
                        row,
                        F.ERROR,
                        env.issue,
                        "HELD_BEHIND_ERROR",
                        "an earlier message of this issue is in ERROR",
                    )
                ],
            )
            return []
        is_next = (env.epoch == pair.in_epoch and env.seq == pair.in_seq + 1) or (
            env.epoch > pair.in_epoch and env.seq == 1 and (env.type == "RESYNC" or pair.in_epoch == 0)
        )
        if not is_next:
            self._record(
                side,
                [
                    (
                        row,
                        F.WAITING,
                        None,
                        "SEQ_GAP",
                        f"waits for seq {pair.in_seq + 1} of epoch {max(pair.in_epoch, 1)}",
                    )
                ],
            )
            return []
        if env.config > side.config_version:  # built under a version this side has not put in force
            text = (
                f"built under configuration version {env.config}; version {side.config_version} is in "
                "force here: it applies once this side has that version"
            )
            self._record(side, [(row, F.WAITING, None, "CONFIG_PENDING", text)])
            return []
        if env.config < 1:
            text = f"built under configuration version {env.config}, which was never published"
            self._hold(side, row, pair, "CONFIG_UNKNOWN", text)
            return []
        applier = _Applier(self, side, config, pair, env, states)
        try:
            applier.apply()
        except TrackerOffline as exc:
            row.attempts += 1
            row.next_attempt = time.time() + backoff(row.attempts)
            self._record(side, [(row, F.OFFLINE, None, "TRACKER_OFFLINE", str(exc))])
            raise
        except MissingIssueError as exc:
            self._record(side, [(row, F.MISSING, exc.pair_id, exc.code, exc.text)])
            return []
        except ApplyError as exc:
            self._hold(side, row, pair, exc.code, exc.text)
            return []
        except TrackerRefused as exc:
            code = "ISSUE_DELETED" if applier.issue_deleted() else "TRACKER_REFUSED"
            text = (
                "the issue was deleted here: choose 'recreate' or 'ignore future changes'"
                if code == "ISSUE_DELETED"
                else str(exc)
            )
            self._hold(side, row, pair, code, text)
            return []
        created = applier.created_issue
        with self._tx(side, savepoint=False) as (s, moves):
            values: dict[str, Any] = {"in_epoch": env.epoch, "in_seq": env.seq}
            if applier.issue_id is not None:
                values["issue_id"] = applier.issue_id
            _upsert_pair(s, side.id, env.issue, values)
            applier.write_state(s)
            self._move_in_tx(s, moves, side, row, F.PROCESSED, None, "", "")
            released = self._released(s, moves, side, env, created)
        return released

    def _released(
        self, s: Session, moves: list[_Move], side: SideCtx, env: Envelope, created: bool
    ) -> list[Message]:
        """Messages that can go now: the next seq of this issue, and what needed this issue."""
        released: list[Message] = []
        if not self._held_somewhere.get(side.id, True):
            return released
        waiting_here = select(Message).where(
            Message.side_id == side.id,
            Message.direction == "in",
            Message.folder == F.WAITING,
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
        if env.type == "RESYNC":
            for stale in s.exec(waiting_here.where(col(Message.epoch) < env.epoch)):
                self._move_in_tx(
                    s, moves, side, stale, F.OUTDATED, None, "OLD_EPOCH", "superseded by a resync"
                )
        if created:
            released.extend(
                s.exec(
                    select(Message)
                    .where(
                        Message.side_id == side.id,
                        Message.direction == "in",
                        Message.folder == F.MISSING,
                        Message.hold == env.issue,
                    )
                    .order_by(col(Message.id))
                ).all()
            )
        return released

    def _seen_before(self, side: SideCtx, env: Envelope) -> bool:
        """Whether this very message (same content, RELIABILITY rule 3) was processed here, or
        nothing processed under its number is left to compare with (retention removed it)."""
        with self.db.session() as s:
            payloads = s.exec(
                select(Message.payload).where(
                    Message.side_id == side.id,
                    Message.direction == "in",
                    Message.pair_id == env.issue,
                    Message.epoch == env.epoch,
                    Message.seq == env.seq,
                    Message.folder == F.PROCESSED,
                )
            ).all()
        applied = [payload for payload in payloads if payload]
        canonical = env.to_json()
        return not applied or any(Envelope.from_json(payload).to_json() == canonical for payload in applied)

    def _hold(self, side: SideCtx, row: Message, pair: _InPair, code: str, text: str) -> None:
        with self._tx(side, savepoint=False) as (s, moves):
            _upsert_pair(s, side.id, pair.pair_id, {"held": True})
            self._move_in_tx(s, moves, side, row, F.ERROR, pair.pair_id, code, text)
            # later messages of this issue that already wait join it, in order
            for later in s.exec(
                select(Message).where(
                    Message.side_id == side.id,
                    Message.direction == "in",
                    Message.pair_id == pair.pair_id,
                    col(Message.folder).in_([F.WAITING]),
                )
            ):
                self._move_in_tx(
                    s,
                    moves,
                    side,
                    later,
                    F.ERROR,
                    pair.pair_id,
                    "HELD_BEHIND_ERROR",
                    "an earlier message of this issue is in ERROR",
                )

    # -- operator actions ---------------------------------------------------------------------

    def release_issue(self, side: SideCtx, pair_id: str, *, skip_first: bool) -> tuple[int, int]:
        """Retry (or skip the first of) an issue's held messages: back to RECEIVE in order.

        Returns (messages skipped, messages queued again)."""
        skipped = 0
        with self._tx(side) as (s, moves):
            pair = s.exec(
                select(IssuePair).where(IssuePair.side_id == side.id, IssuePair.pair_id == pair_id)
            ).first()
            held = list(
                s.exec(
                    select(Message)
                    .where(
                        Message.side_id == side.id,
                        Message.direction == "in",
                        col(Message.folder).in_([F.ERROR, F.MISSING]),
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
                self._move_in_tx(
                    s, moves, side, first, F.PROCESSED, None, "SKIPPED", "skipped by an administrator"
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
                self._move_in_tx(s, moves, side, message, F.RECEIVE, None, "RETRY", "queued again")
        log.info("%s: issue %s: %d skipped, %d queued again", side.sync_key, pair_id, skipped, len(held))
        return skipped, len(held)

    def release_config_pending(self, side: SideCtx) -> int:
        """Queue again what waited for a configuration version (this side's version changed)."""
        with self._tx(side) as (s, moves):
            waiting = s.exec(
                select(Message)
                .where(
                    Message.side_id == side.id,
                    Message.folder == F.WAITING,
                    Message.reason_code == "CONFIG_PENDING",
                )
                .order_by(col(Message.id))
            ).all()
            for row in waiting:
                self._move_in_tx(s, moves, side, row, F.RECEIVE, None, "RETRY", "configuration changed")
        return len(waiting)

    def retry_folder(self, side: SideCtx, folder: str) -> int:
        """Make everything in OFFLINE or SEND_ERROR due now."""
        with self.db.write() as s:
            rows = s.exec(select(Message).where(Message.side_id == side.id, Message.folder == folder)).all()
            for row in rows:
                row.next_attempt = 0.0
                s.add(row)
        if rows:
            log.info("%s: %d message(s) in %s are due again", side.sync_key, len(rows), folder)
        return len(rows)

    # -- moves --------------------------------------------------------------------------------

    def _record(self, side: SideCtx, moves: list[_Outcome]) -> None:
        with self._tx(side, savepoint=False) as (s, pending):  # updates only: nothing to undo alone
            params = [self._move_params(pending, side, move) for move in moves]
            if params:
                s.connection().execute(S.MOVE_MESSAGE, params)  # one statement for all

    def _move_in_tx(
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
        s.connection().execute(
            S.MOVE_MESSAGE, self._move_params(moves, side, (row, folder, hold, code, text))
        )

    def _move_params(self, moves: list[_Move], side: SideCtx, outcome: _Outcome) -> dict[str, Any]:
        """Note a move (the row object follows it) and return its update's parameters."""
        row, folder, hold, code, text = outcome
        moves.append(_Move(row.id or 0, row.file_name, row.folder, row.hold, folder, hold, code))
        if folder in (F.WAITING, F.MISSING):
            self._held_somewhere[side.id] = True
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
        if folder in (F.SENT, F.PROCESSED):
            self._touch(side.sync_key)
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

    def _apply_moves(self, side: SideCtx, moves: list[_Move]) -> None:
        """Rename files to where the committed rows say they are."""
        for move in moves:
            source = side.folders.path(move.old_folder, move.file_name, move.old_hold)
            target = side.folders.path(move.folder, move.file_name, move.hold)
            if source != target:
                try:
                    fsutil.move(source, target)
                except FileNotFoundError:
                    log.warning(
                        "message file %s missing from %s; reconciled at next start",
                        move.file_name,
                        move.old_folder,
                    )
            self.events.publish(MessageMoved(side.sync_key, move.message_id, move.folder, move.code))

    def _touch(self, sync_key: str) -> None:
        """Note activity; written once per pass by `flush_activity`, not once per message."""
        self._active.add(sync_key)

    def flush_activity(self) -> None:
        """Record the last-activity time of every synchronization that moved messages."""
        if not self._active:
            return
        keys, self._active = self._active, set()
        with self.db.write() as s:
            s.execute(
                update(Synchronization)
                .where(col(Synchronization.key).in_(sorted(keys)))
                .values(last_activity=utcnow())
            )
        for key in keys:
            self.events.publish(SyncChanged(key, ""))

    def _publish_status(self, sync_key: str) -> None:
        self.events.publish(SyncChanged(sync_key, self._status(sync_key)))

    def _status(self, sync_key: str) -> str:
        with self.db.session() as s:
            sync = s.get(Synchronization, sync_key)
            return sync.status if sync else ""

    # -- reconcile ----------------------------------------------------------------------------

    def placements(self) -> dict[int, list[tuple[int, str, str | None, str]]]:
        """Side id -> (message id, folder, hold, file name) of every message, in one query."""
        result: dict[int, list[tuple[int, str, str | None, str]]] = {}
        with self.db.session() as s:
            for message_id, side_id, folder, hold, file_name in s.execute(
                sa_select(
                    col(Message.id),
                    col(Message.side_id),
                    col(Message.folder),
                    col(Message.hold),
                    col(Message.file_name),
                )
            ):
                result.setdefault(side_id, []).append((message_id or 0, folder, hold, file_name))
        return result

    def reconcile(self, side: SideCtx, rows: list[tuple[int, str, str | None, str]] | None = None) -> int:
        """Make the folders match the database (run at every start); returns files fixed."""
        side.folders.ensure()
        on_disk: dict[str, Path] = {}
        stale_parts: list[Path] = []
        for folder, _dirs, names in os.walk(side.folders.root):
            for name in names:
                path = Path(folder, name)
                if name.startswith(".") and name.endswith(".part"):
                    stale_parts.append(path)
                else:
                    on_disk[name] = path
        if side.protocol == "file" and side.exchange is not None:
            send_dir = F.exchange_paths(side.exchange)[0]
            with contextlib.suppress(OSError):  # missing or not a folder: sending will say so
                stale_parts += [
                    p for p in send_dir.iterdir() if p.name.startswith(".") and p.name.endswith(".part")
                ]
        for path in stale_parts:
            log.info("removing our own unfinished write %s", path)
            path.unlink(missing_ok=True)
        fixed = 0
        if rows is None:
            rows = self.placements().get(side.id, [])
        for message_id, folder, hold, file_name in rows:
            expected = side.folders.path(folder, file_name, hold)
            found = on_disk.pop(file_name, None)
            if found is None:
                with self.db.session() as s:
                    payload = s.exec(select(Message.payload).where(Message.id == message_id)).first()
                if payload is not None:  # the row is the truth: write its file again
                    fsutil.write_atomic(expected, payload.encode(), durable=False)
                    fixed += 1
                continue
            if found != expected:
                fsutil.move(found, expected)
                fixed += 1
        for name, path in sorted(on_disk.items()):  # generated names sort in arrival order
            # a file moved in before a crash kept its row from committing: file it again
            fixed += 1
            if path.suffix == ".bac":
                data = path.read_bytes()
                outcomes = self._open(side, data, settled=True) or [
                    _Classified(F.REJECTED, None, "UNREADABLE", "could not be opened at start")
                ]
                self._store(side, outcomes, name, data, source=path)
            else:
                self._store(
                    side,
                    [_Classified(F.UNKNOWN, None, "ORPHAN_FILE", "found without a record at start")],
                    name,
                    b"",
                    source=path,
                )
        return fixed
