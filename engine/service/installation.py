"""One installation (home): the small service API the CLI and the TUI use."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, delete, select

from engine.channels import open_channel
from engine.channels.base import Channel
from engine.channels.email import MailError, MailReceiver, MailSettings, check_settings, line_safe
from engine.config.mapping import check_against, identity_config, parse_config
from engine.domain import folders as F
from engine.domain.envelope import Codec, Envelope, PlainCodec, load_json
from engine.domain.side import SideCtx
from engine.errors import BackboneError, RejectedError
from engine.events import EventBus, SyncChanged
from engine.pipeline import control as C
from engine.pipeline.core import Pipeline
from engine.pipeline.records import Outgoing
from engine.store import fsutil
from engine.store.database import Database
from engine.store.home import EngineLock, HomePaths, resolve_home
from engine.store.models import (
    FieldState,
    History,
    IssuePair,
    Message,
    Setting,
    Synchronization,
    SyncSide,
)
from engine.store.models import (
    Installation as InstallationRow,
)
from engine.trackers.base import utcnow
from engine.trackers.embedded import EmbeddedTracker
from engine.trust.gpg import GpgCodec, HandshakeCodec, Keyring, normalize_fingerprint

SCHEMA_VERSION = 3
SCHEMA_SETTING = "schema.version"
HANDSHAKE_FORMAT = 1
HANDSHAKE_KIND = "backbone-handshake"
PROTOCOLS = ("file", "email", "local")
KEY_WARNING_DAYS = 30
KEY_LIFETIME_DAYS = 730
MAX_HANDSHAKE_BYTES = 1 << 20
SYNC_KEY = re.compile(r"^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$")  # it names a folder: nothing else gets in


@dataclass(frozen=True)
class SyncInfo:
    """A synchronization as a screen or a script sees it (plain data, no database row)."""

    key: str
    name: str
    description: str
    role: str
    protocol: str
    status: str
    status_detail: str
    draft_state: str
    local_project: str
    partner_project: str
    sync_user: str
    encryption: bool
    review: bool
    created: datetime
    last_activity: datetime | None
    folder_counts: dict[str, int] = field(default_factory=dict)
    own_fingerprint: str = ""
    partner_fingerprint: str = ""
    own_key_expires: datetime | None = None
    partner_key_expires: datetime | None = None
    channel_error: str = ""
    mail: dict[str, Any] = field(default_factory=dict)  # settings without passwords
    exchange: str = ""  # the file protocol's exchange folder

    def key_warning(self, now: datetime | None = None) -> str:
        """A warning when a key of this synchronization expires within 30 days (or has)."""
        now = now or utcnow()
        for who, expires in (
            ("this installation's", self.own_key_expires),
            ("the partner's", self.partner_key_expires),
        ):
            if expires is None:
                continue
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=now.tzinfo)
            if expires <= now:
                return f"{who} key expired on {expires:%Y-%m-%d}"
            if expires - now <= timedelta(days=KEY_WARNING_DAYS):
                return f"{who} key expires on {expires:%Y-%m-%d} (in {(expires - now).days} days)"
        return ""

    @property
    def errors(self) -> int:
        return sum(self.folder_counts.get(name, 0) for name in F.ERROR_FOLDERS)

    @property
    def pending(self) -> int:
        return sum(self.folder_counts.get(name, 0) for name in F.PENDING_FOLDERS)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "description": self.description,
            "role": self.role,
            "protocol": self.protocol,
            "status": self.status,
            "status_detail": self.status_detail,
            "draft_state": self.draft_state,
            "local_project": self.local_project,
            "partner_project": self.partner_project,
            "sync_user": self.sync_user,
            "encryption": self.encryption,
            "review": self.review,
            "created": self.created.isoformat(),
            "last_activity": self.last_activity.isoformat() if self.last_activity else None,
            "errors": self.errors,
            "pending": self.pending,
            "folders": self.folder_counts,
            "own_fingerprint": self.own_fingerprint,
            "partner_fingerprint": self.partner_fingerprint,
            "own_key_expires": _iso(self.own_key_expires),
            "partner_key_expires": _iso(self.partner_key_expires),
            "key_warning": self.key_warning(),
            "channel_error": self.channel_error,
            "mail": self.mail,
            "exchange": self.exchange,
        }


@dataclass(frozen=True)
class MessageInfo:
    id: int
    direction: str
    type: str
    issue: str | None
    epoch: int
    seq: int
    folder: str
    hold: str | None
    reason_code: str
    reason_text: str
    file: str
    original_name: str | None
    size: int
    updated: datetime

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["updated"] = self.updated.isoformat()
        return data


class Installation:
    """An opened home: database, embedded tracker, pipeline and the operations on them."""

    def __init__(self, home: str | Path | None = None, *, create: bool = True) -> None:
        """Open the home (created when missing, unless `create` is False: then it must exist)."""
        self.paths = HomePaths(resolve_home(home))
        self.paths.check()
        if not create and not self.paths.database.is_file():
            raise BackboneError(
                f"{self.paths.root}: no Backbone home here (check --home or $BACKBONE_HOME; "
                "'project create' or 'sync create' makes a new one)"
            )
        self.paths.create()
        existed = self.paths.database.is_file() and self.paths.database.stat().st_size > 0
        self.db = Database.for_file(self.paths.database)
        try:
            if existed and not self._has_identity():
                self.check_database()  # a home lost the rows every home has: look before writing them
            self.db.create_all()
            os.chmod(self.paths.database, 0o600)  # it holds mail passwords
            self._check_schema()
            self.id = self._installation_id()
        except SADatabaseError as exc:
            self.db.dispose()
            raise BackboneError(self.db.damage_text(exc.orig or exc)) from None
        self.tracker = EmbeddedTracker(self.db, self.paths.attachments)
        self.events = EventBus()
        self.pipeline = Pipeline(
            self.db, self.tracker, self.paths.data, self.events, self._codec_for, self._channel_for
        )
        self.pipeline.control_handler = self._handle_control
        self.lock = EngineLock(self.paths.lock_file)
        self._keyring: Keyring | None = None
        self._codecs: dict[tuple[Any, ...], Codec] = {}

    def check_database(self) -> None:
        """Before the engine writes: SQLite's quick check, bounded in time (G9)."""
        try:
            findings = self.db.quick_check()
        except SADatabaseError as exc:
            raise BackboneError(self.db.damage_text(exc.orig or exc)) from None
        except sqlite3.DatabaseError as exc:
            raise BackboneError(self.db.damage_text(exc)) from None
        if findings is None:
            logging.getLogger("backbone").warning("database quick check cut short; reads check the rest")
        elif findings:
            raise BackboneError(self.db.damage_text("; ".join(findings[:3]), damaged=True))

    def close(self) -> None:
        self.lock.release()
        if self._keyring is not None:
            self._keyring.close()
        self.db.dispose()

    # -- keys -----------------------------------------------------------------------------

    @property
    def keyring(self) -> Keyring:
        """This installation's OpenPGP key ring (`gnupg/`), opened on first use."""
        if self._keyring is None:
            self._keyring = Keyring(self.paths.gnupg)
        return self._keyring

    def own_key(self) -> tuple[str, datetime | None]:
        """This installation's key (created on first use, valid for two years) and its expiry."""
        fingerprint = self.keyring.ensure_key(
            f"Backbone TUI {self.paths.root.name}",
            f"backbone-{self.id[:8]}@installation.invalid",
            expire_days=KEY_LIFETIME_DAYS,
        )
        return fingerprint, self.keyring.key_expiry(fingerprint)

    def _codec_for(self, side: SideCtx) -> Codec:
        """Plain for unencrypted synchronizations; before pairing, only the handshake opens."""
        key = (side.id, side.encryption, side.own_fingerprint, side.partner_fingerprint, side.pairing_secret)
        codec = self._codecs.get(key)
        if codec is None:
            if not side.encryption:
                codec = PlainCodec()
            elif side.partner_fingerprint:
                codec = GpgCodec(self.keyring, side.own_fingerprint, side.partner_fingerprint)
            else:
                codec = HandshakeCodec(self.keyring, side.own_fingerprint, side.pairing_secret)
            self._codecs[key] = codec
        return codec

    def _handle_control(self, s: Session, side: SideCtx, envelope: Envelope) -> list[Outgoing]:
        address = envelope.body.get("address")
        if envelope.type == "HANDSHAKE" and isinstance(address, str) and not _plausible_address(address):
            raise RejectedError("BODY_INVALID", "field 'address': expected one email address on one line")
        answer = C.handle_control(s, side, envelope)
        row = s.get(SyncSide, side.id)
        if (
            envelope.type == "HANDSHAKE"
            and row is not None
            and row.mail_settings
            and isinstance(address, str)
        ):
            stored = json.loads(row.mail_settings)
            stored["send"]["to_addr"] = address[:320]
            row.mail_settings = json.dumps(stored)
            s.add(row)
        if row is not None and row.partner_fingerprint and row.partner_key_expires is None:
            row.partner_key_expires = self.keyring.key_expiry(row.partner_fingerprint)
            s.add(row)
        return answer

    def setup_logging(self, level: str = "INFO", *, stderr: bool = False) -> None:
        """Log the engine's starts, stops, error moves and channel failures to `logs/backbone.log`
        (rotated under a lock, so several processes of one home can share it), and to stderr
        too for a service. Nothing logged carries a password, a key or issue content."""
        from concurrent_log_handler import ConcurrentRotatingFileHandler

        root = logging.getLogger("backbone")
        root.setLevel(level)
        formatter = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        target = str(self.paths.logs / "backbone.log")
        if not any(getattr(h, "baseFilename", None) == os.path.abspath(target) for h in root.handlers):
            handler = ConcurrentRotatingFileHandler(target, maxBytes=5_000_000, backupCount=3, chmod=0o600)
            handler.setFormatter(formatter)
            root.addHandler(handler)
        if stderr and not any(getattr(h, "backbone_stderr", False) for h in root.handlers):
            console = logging.StreamHandler()
            console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            console.backbone_stderr = True  # type: ignore[attr-defined]
            root.addHandler(console)

    def _has_identity(self) -> bool:
        """Whether the schema version and the installation id, written at creation, can be read."""
        with self.db.session() as s:
            try:
                return (
                    s.get(Setting, SCHEMA_SETTING) is not None
                    and s.exec(select(InstallationRow)).first() is not None
                )
            except OperationalError as exc:
                if "no such table" in str(exc.orig):
                    return False
                raise

    def _check_schema(self) -> None:
        with self.db.write() as s:
            row = s.get(Setting, SCHEMA_SETTING)
            if row is None:
                s.add(Setting(name=SCHEMA_SETTING, value=str(SCHEMA_VERSION)))
            elif row.value != str(SCHEMA_VERSION):
                raise BackboneError(
                    f"{self.paths.database} has schema version {row.value}; this version of "
                    f"Backbone TUI needs {SCHEMA_VERSION}"
                )

    def _installation_id(self) -> str:
        with self.db.write() as s:
            row = s.exec(select(InstallationRow)).first()
            if row is None:
                row = InstallationRow(id=str(uuid.uuid4()), name=self.paths.root.name, created=utcnow())
                s.add(row)
            return row.id

    # -- email ----------------------------------------------------------------------------

    def mail_settings(self, side: SideCtx) -> MailSettings:
        """A side's mail settings; `BACKBONE_<KEY>_IMAP_PASSWORD` / `_SMTP_PASSWORD` override."""
        settings = MailSettings.from_dict(json.loads(side.mail_settings or "{}"))
        imap = os.environ.get(_env_name(side.sync_key, "IMAP"))
        smtp = os.environ.get(_env_name(side.sync_key, "SMTP"))
        if imap is not None:
            settings.receive.password = imap
        if smtp is not None:
            settings.send.password = smtp
        return settings

    def _channel_for(self, side: SideCtx) -> Channel:
        return open_channel(side, mail_settings=self.mail_settings, hand_over=self.pipeline.hand_over)

    def poll_mail(self, side: SideCtx, receiver: MailReceiver) -> int:
        """Fetch the partner's mails: their `.bac` files into RECEIVE, then the mail out of the inbox."""
        try:
            mails = receiver.fetch_new()
        except MailError as exc:
            self.pipeline.report_channel(side, str(exc))
            return 0
        self.pipeline.report_channel(side, "")
        done = []
        for mail in mails:
            messages = [(name, data) for name, data in mail.attachments if name.lower().endswith(".bac")]
            if not messages or side.sync_key not in mail.subject:
                receiver.set_aside(mail)  # not ours: kept, never deleted
                continue
            for name, data in messages:
                self.pipeline.ingest_bytes(side, name, data)
            done.append(mail)
        if done:
            self.db.checkpoint_full()  # durable before the mail leaves the inbox
            for mail in done:
                receiver.mark_processed(mail)
        return len(mails)

    def test_channel(self, key: str) -> list[str]:
        """Check each side's channel again (log in to the mail servers, or try the folders)."""
        results = []
        for side in self._sides(key):
            if side.protocol == "email":
                check_settings(self._checkable(self.mail_settings(side)))
                results.append(f"{side.folder}: IMAP and SMTP log-in work")
            elif side.protocol == "file" and side.exchange is not None:
                send_dir, receive_dir = F.exchange_paths(side.exchange)
                for folder in (send_dir, receive_dir):
                    if not folder.is_dir():
                        raise BackboneError(f"{folder}: not a folder")
                probe = send_dir / f".probe-{secrets.token_hex(4)}.part"
                try:
                    probe.write_bytes(b"")
                    probe.unlink()
                except OSError as exc:
                    raise BackboneError(f"{send_dir}: cannot write ({exc.strerror})") from None
                results.append(f"{side.folder}: exchange folder {side.exchange} is usable")
            else:
                results.append(f"{side.folder}: local, nothing to test")
        return results

    @staticmethod
    def _checkable(settings: MailSettings) -> MailSettings:
        """A copy that, before the partner's address is known, sends to our own address."""
        copy = MailSettings.from_dict(settings.to_dict())
        if not copy.send.to_addr:
            copy.send.to_addr = copy.send.from_addr
        return copy

    # -- queries --------------------------------------------------------------------------

    def list_syncs(self, status: str | None = None, project: str | None = None) -> list[SyncInfo]:
        with self.db.session() as s:
            query = select(Synchronization).order_by(col(Synchronization.key))
            if status:
                query = query.where(Synchronization.status == status.upper())
            syncs = s.exec(query).all()
            sides = s.exec(select(SyncSide)).all()
            counts = s.exec(
                select(Message.side_id, Message.folder, func.count()).group_by(
                    col(Message.side_id), col(Message.folder)
                )
            ).all()
        side_counts: dict[int, dict[str, int]] = {}
        for side_id, folder, count in counts:
            side_counts.setdefault(side_id, {})[folder] = count
        by_sync: dict[str, list[SyncSide]] = {}
        for side in sides:
            by_sync.setdefault(side.sync_key, []).append(side)
        result = []
        for sync in syncs:
            own = by_sync.get(sync.key, [])
            if project and not any(side.project == project for side in own):
                continue
            folder_counts: dict[str, int] = {}
            for side in own:
                for folder, count in side_counts.get(side.id or 0, {}).items():
                    folder_counts[folder] = folder_counts.get(folder, 0) + count
            result.append(_info(sync, own, folder_counts))
        return result

    def sync_info(self, key: str) -> SyncInfo:
        for info in self.list_syncs():
            if info.key == key:
                return info
        raise BackboneError(f"synchronization {key} does not exist")

    def _sides(self, key: str, project: str | None = None) -> list[SideCtx]:
        sides = [side for side in self.pipeline.sides() if side.sync_key == key]
        if not sides:
            raise BackboneError(f"synchronization {key} does not exist")
        if project:
            sides = [side for side in sides if side.project == project]
            if not sides:
                raise BackboneError(f"synchronization {key} has no side for project {project}")
        return sides

    def messages(self, key: str, folder: str | None = None) -> list[MessageInfo]:
        if folder and folder.upper() not in F.ALL_FOLDERS:
            raise BackboneError(f"folder {folder!r}: expected one of {', '.join(F.ALL_FOLDERS)}")
        side_ids = [side.id for side in self._sides(key)]
        with self.db.session() as s:
            query = select(Message).where(col(Message.side_id).in_(side_ids)).order_by(col(Message.id))
            if folder:
                query = query.where(Message.folder == folder.upper())
            rows = s.exec(query).all()
        return [
            MessageInfo(
                row.id or 0,
                row.direction,
                row.type,
                row.pair_id,
                row.epoch,
                row.seq,
                row.folder,
                row.hold,
                row.reason_code,
                row.reason_text,
                row.file_name,
                row.original_name,
                row.size,
                row.updated,
            )
            for row in rows
        ]

    def history(self, key: str) -> list[tuple[datetime, str, str | None, str]]:
        side_ids = [side.id for side in self._sides(key)]
        with self.db.session() as s:
            rows = s.exec(
                select(History).where(col(History.side_id).in_(side_ids)).order_by(col(History.id))
            ).all()
        return [(row.at, row.kind, row.pair_id, row.text) for row in rows]

    def issue_pairs(self, key: str) -> dict[str, dict[str, str | None]]:
        """Pair id -> {project: local issue id} for every side of this synchronization."""
        result: dict[str, dict[str, str | None]] = {}
        with self.db.session() as s:
            for side in self._sides(key):
                for pair in s.exec(select(IssuePair).where(IssuePair.side_id == side.id)):
                    result.setdefault(pair.pair_id, {})[side.project] = pair.issue_id
        return result

    # -- creation -------------------------------------------------------------------------

    def _new_key(self, project: str, partner: str | None) -> str:
        base = f"{project}-{partner}" if partner else f"{project}-SYNC"
        with self.db.session() as s:
            taken = {row for row in s.exec(select(Synchronization.key))}
        n = 1
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def _check_project(self, project: str) -> None:
        if project not in {key for key, _ in self.tracker.projects()}:
            raise BackboneError(f"project {project} does not exist here (create it first)")

    def _default_config_text(self, project: str) -> str:
        return identity_config(
            issue_types=self.tracker.issue_types(project),
            statuses=self.tracker.statuses(project),
            field_kinds=self.tracker.field_names(project),
        ).to_toml()

    def _prepare_channel(
        self, protocol: str, key: str, exchange: str | Path | None, mail: MailSettings | None, address: str
    ) -> dict[str, Any]:
        """The side's channel fields: an exchange folder, or checked and stored mail settings."""
        if protocol == "file":
            if mail is not None:
                raise BackboneError("mail settings are for --protocol email")
            return {"exchange": str(self._prepare_exchange(exchange, key))}
        if mail is None:
            raise BackboneError("--protocol email needs receive (IMAP) and send (SMTP) settings")
        if exchange is not None:
            raise BackboneError("--exchange is for --protocol file")
        problems = [p for p in self._checkable(mail).problems()]
        if problems:
            raise BackboneError("mail settings: " + "; ".join(problems))
        check_settings(self._checkable(mail))
        stored = mail.to_dict()
        stored["address"] = address or mail.send.from_addr
        return {"mail_settings": json.dumps(stored)}

    def _prepare_exchange(self, exchange: str | Path | None, key: str) -> Path:
        folder = Path(exchange).absolute() if exchange else self.paths.root / "exchange" / key
        for name in (F.SEND, F.RECEIVE):
            path = folder / name
            if not path.exists():
                path.mkdir(parents=True, exist_ok=True)
            elif not path.is_dir():
                raise BackboneError(f"exchange folder {path} exists but is not a folder")
        return folder

    def _add_side(
        self, sync: Synchronization, project: str, role: str, endpoint: str, **fields: Any
    ) -> SyncSide:
        with self.db.session() as s:
            used = {row.folder for row in s.exec(select(SyncSide).where(SyncSide.sync_key == sync.key))}
        n = 1
        while f"{project}-{n}" in used:
            n += 1
        side = SyncSide(
            sync_key=sync.key,
            project=project,
            folder=f"{project}-{n}",
            role=role,
            endpoint=endpoint,
            config_version=1,
            config_text=self._default_config_text(project),
            **fields,
        )
        return side

    def create_primary(
        self,
        *,
        project: str,
        user: str,
        protocol: str,
        name: str,
        handshake_out: str | Path,
        exchange: str | Path | None = None,
        description: str = "",
        review: bool = False,
        partner_project: str | None = None,
        encryption: bool = True,
        mail: MailSettings | None = None,
        address: str = "",
    ) -> tuple[SyncInfo, Path]:
        """This side of a new synchronization (REQUEST SENT) and the handshake file for the partner."""
        self._check_project(project)
        _check_protocol(protocol, allowed=("file", "email"))
        _check_user(user)
        out = _handshake_target(handshake_out)
        key = self._new_key(project, partner_project)
        channel = self._prepare_channel(protocol, key, exchange, mail, address)
        now = utcnow()
        sync = Synchronization(
            key=key,
            name=_check_name(name),
            description=description,
            role="primary",
            protocol=protocol,
            sync_user=user,
            review=review,
            status=C.REQUEST_SENT,
            encryption=encryption,
            created=now,
            status_detail="handshake file exported; waiting for the partner",
        )
        secret = secrets.token_urlsafe(32)
        fingerprint, expires = self.own_key() if encryption else ("", None)
        side = self._add_side(
            sync,
            project,
            "primary",
            self.id,
            **channel,
            pairing_secret=secret,
            partner_project=partner_project or "",
            own_fingerprint=fingerprint,
            own_key_expires=expires,
        )
        staging = self._stage_handshake(sync, side, out)
        try:
            with self.db.write() as s:
                s.add(sync)
                s.add(side)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
        staging.replace(out)
        self._ensure_folders(key)
        return self.sync_info(key), out

    def _stage_handshake(self, sync: Synchronization, side: SyncSide, out: Path) -> Path:
        """Write the handshake file for `sync` under a staging name next to `out` (renamed by the caller)."""
        handshake: dict[str, Any] = {
            "kind": HANDSHAKE_KIND,
            "format": HANDSHAKE_FORMAT,
            "sync": sync.key,
            "name": sync.name,
            "description": sync.description,
            "protocol": sync.protocol,
            "review": sync.review,
            "primary": {
                "installation": self.id,
                "project": side.project,
                "address": json.loads(side.mail_settings).get("address", "") if side.mail_settings else "",
            },
            "encryption": sync.encryption,
            "secret": side.pairing_secret,
            "created": sync.created.isoformat(),
        }
        if sync.encryption:
            fingerprint = side.own_fingerprint
            handshake["key"] = {"fingerprint": fingerprint, "public": self.keyring.export_public(fingerprint)}
            handshake["signature"] = self.keyring.sign_text(_canonical(handshake), fingerprint)
        else:
            handshake["checksum"] = hashlib.sha256(_canonical(handshake).encode()).hexdigest()
        staging = out.with_name(f".{out.name}.part")
        try:
            staging.write_text(json.dumps(handshake, indent=2) + "\n")
            staging.chmod(0o600)
        except OSError as exc:
            staging.unlink(missing_ok=True)
            raise BackboneError(f"handshake file {out}: cannot write ({exc.strerror})") from None
        return staging

    def export_handshake(self, key: str, handshake_out: str | Path) -> Path:
        """Write a primary's handshake file again while its request is pending (REQUEST SENT)."""
        out = _handshake_target(handshake_out)
        with self.db.session() as s:
            sync = s.get(Synchronization, key)
            sides = s.exec(select(SyncSide).where(SyncSide.sync_key == key)).all()
        if sync is None or not sides:
            raise BackboneError(f"synchronization {key} does not exist")
        if sync.role != "primary" or sync.status != C.REQUEST_SENT:
            raise BackboneError(
                f"{key} is {sync.role}, {sync.status}: only a primary's pending request (REQUEST SENT) "
                "has a handshake file"
            )
        self._stage_handshake(sync, sides[0], out).replace(out)
        return out

    def read_handshake(self, path: str | Path, expected_fingerprint: str | None = None) -> dict[str, Any]:
        """A handshake file's contents, if unaltered, of a known format and carrying the right key."""
        source = Path(path)
        try:
            data = load_json(fsutil.read_limited(source, MAX_HANDSHAKE_BYTES), "handshake file")
        except (OSError, ValueError) as exc:
            raise BackboneError(f"{source}: not a readable handshake file ({exc})") from None
        except RejectedError as exc:
            raise BackboneError(f"{source}: {exc.text}") from None
        if not isinstance(data, dict) or data.get("kind") != HANDSHAKE_KIND:
            raise BackboneError(f"{source}: not a Backbone handshake file")
        if data.get("format") != HANDSHAKE_FORMAT:
            raise BackboneError(
                f"{source}: handshake format {data.get('format')!r} is not supported "
                f"(expected {HANDSHAKE_FORMAT})"
            )
        for name, kind in (
            ("sync", str),
            ("name", str),
            ("protocol", str),
            ("secret", str),
            ("primary", dict),
            ("encryption", bool),
        ):
            if not isinstance(data.get(name), kind):
                raise BackboneError(f"{source}: field {name!r}: expected {kind.__name__}")
        if len(data["sync"]) > 100 or not SYNC_KEY.match(data["sync"]):
            raise BackboneError(f"{source}: field 'sync': expected a key like ACME-GLOBEX-1")
        primary = data["primary"]
        if not isinstance(primary.get("installation"), str) or not isinstance(primary.get("project"), str):
            raise BackboneError(f"{source}: field 'primary': expected installation and project")
        if not isinstance(primary.get("address", ""), str):
            raise BackboneError(f"{source}: field 'primary.address': expected text")
        if data["encryption"]:
            self._verify_signed_handshake(source, data, expected_fingerprint)
        else:
            unsigned = {k: v for k, v in data.items() if k != "checksum"}
            if data.get("checksum") != hashlib.sha256(_canonical(unsigned).encode()).hexdigest():
                raise BackboneError(f"{source}: the handshake file was altered (checksum does not match)")
            if expected_fingerprint:
                raise BackboneError(f"{source}: the handshake carries no key (encryption is off)")
        return data

    def _verify_signed_handshake(self, source: Path, data: dict[str, Any], expected: str | None) -> None:
        key = data.get("key")
        if not isinstance(key, dict) or not isinstance(key.get("public"), str):
            raise BackboneError(f"{source}: field 'key': expected the primary's public key")
        try:
            stated = normalize_fingerprint(str(key.get("fingerprint", "")))
            wanted = normalize_fingerprint(expected) if expected else stated
        except ValueError:
            raise BackboneError(
                f"{source}: a key fingerprint is malformed (expected 40 hex digits)"
            ) from None
        if wanted != stated:
            raise BackboneError(f"{source}: the key is {stated}, not the confirmed {wanted}; refused")
        signature = data.get("signature")
        if not isinstance(signature, str):
            raise BackboneError(f"{source}: the handshake file is not signed")
        unsigned = {k: v for k, v in data.items() if k != "signature"}
        scratch = Path(tempfile.mkdtemp(prefix="bbhs-", dir="/tmp"))
        try:
            with Keyring(scratch) as checker:
                checker.import_partner_key(key["public"], stated)
                signed = checker.verified_text(signature, stated)
        except RejectedError as exc:
            raise BackboneError(
                f"{source}: the handshake's key or signature is not valid ({exc.text})"
            ) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if signed != _canonical(unsigned):
            raise BackboneError(f"{source}: the handshake file was altered after it was signed")

    def create_secondary(
        self,
        *,
        handshake: str | Path,
        project: str,
        user: str,
        exchange: str | Path | None = None,
        expected_fingerprint: str | None = None,
        mail: MailSettings | None = None,
        address: str = "",
    ) -> SyncInfo:
        """This side of a partner's request (INCOMING REQUEST), from its handshake file."""
        data = self.read_handshake(handshake, expected_fingerprint)
        self._check_project(project)
        _check_user(user)
        key = data["sync"]
        with self.db.session() as s:
            if s.get(Synchronization, key) is not None:
                raise BackboneError(f"synchronization {key} exists here already")
        _check_protocol(data["protocol"], allowed=("file", "email"))
        if mail is not None and not mail.send.to_addr:
            mail.send.to_addr = str(data["primary"].get("address") or "")
        channel = self._prepare_channel(data["protocol"], key, exchange, mail, address)
        encryption = bool(data["encryption"])
        keys: dict[str, Any] = {}
        if encryption:
            fingerprint, expires = self.own_key()
            partner = self.keyring.import_partner_key(data["key"]["public"], data["key"]["fingerprint"])
            keys = {
                "own_fingerprint": fingerprint,
                "own_key_expires": expires,
                "partner_fingerprint": partner,
                "partner_key_expires": self.keyring.key_expiry(partner),
            }
        sync = Synchronization(
            key=key,
            name=data["name"],
            description=data.get("description", ""),
            role="secondary",
            protocol=data["protocol"],
            sync_user=user,
            review=bool(data.get("review")),
            status=C.INCOMING_REQUEST,
            encryption=encryption,
            created=utcnow(),
            status_detail="accept or decline the partner's request",
        )
        side = self._add_side(
            sync,
            project,
            "secondary",
            self.id,
            **channel,
            partner_endpoint=data["primary"]["installation"],
            partner_project=data["primary"]["project"],
            pairing_secret=data["secret"],
            **keys,
        )
        with self.db.write() as s:
            s.add(sync)
            s.add(side)
        self._ensure_folders(key)
        return self.sync_info(key)

    def create_local(
        self, *, project: str, partner_project: str, user: str, name: str, description: str = ""
    ) -> SyncInfo:
        self._check_project(project)
        self._check_project(partner_project)
        _check_user(user)
        key = self._new_key(project, partner_project)
        sync = Synchronization(
            key=key,
            name=_check_name(name),
            description=description,
            role="local",
            protocol="local",
            sync_user=user,
            status=C.STOPPED,
            created=utcnow(),
            status_detail="configure and start",
        )
        first = self._add_side(
            sync,
            project,
            "primary",
            f"{self.id}/1",
            partner_endpoint=f"{self.id}/2",
            partner_project=partner_project,
        )
        with self.db.write() as s:
            s.add(sync)
            s.add(first)
        second = self._add_side(
            sync,
            partner_project,
            "secondary",
            f"{self.id}/2",
            partner_endpoint=f"{self.id}/1",
            partner_project=project,
        )
        with self.db.write() as s:
            s.add(second)
        self._ensure_folders(key)
        return self.sync_info(key)

    def _ensure_folders(self, key: str) -> None:
        for side in self._sides(key):
            side.folders.ensure()

    # -- lifecycle ------------------------------------------------------------------------

    def accept(self, key: str) -> SyncInfo:
        """Answer an INCOMING REQUEST with a HANDSHAKE (our key, authenticated by the secret)."""
        return self._answer_request(
            key, "HANDSHAKE", C.HANDSHAKE, "sent HANDSHAKE, waiting for the partner's PING"
        )

    def decline(self, key: str) -> SyncInfo:
        return self._answer_request(key, "DECLINE", C.DECLINED, "you declined the request; delete it")

    def _answer_request(self, key: str, message_type: str, status: str, detail: str) -> SyncInfo:
        (side,) = self._sides(key)
        with self.db.write() as s:
            sync = s.get(Synchronization, key)
            row = s.get(SyncSide, side.id)
            assert sync is not None and row is not None
            if sync.role != "secondary" or sync.status != C.INCOMING_REQUEST:
                verb = "accepted" if message_type == "HANDSHAKE" else "declined"
                raise BackboneError(f"{key} is {sync.status}: only an INCOMING REQUEST can be {verb}")
            body: dict[str, Any] = {"secret": row.pairing_secret, "project": side.project}
            if row.mail_settings:
                body["address"] = json.loads(row.mail_settings).get("address", "")
            if sync.encryption:
                body["key"] = {
                    "fingerprint": row.own_fingerprint,
                    "public": self.keyring.export_public(row.own_fingerprint),
                }
            queued = self.pipeline.queue(s, side, Outgoing(message_type, body))
            row.pairing_secret = ""
            sync.status, sync.status_detail = status, detail
            s.add(row)
            s.add(sync)
        self.pipeline.write_send_files(side, [queued])
        self._changed(key)
        return self.sync_info(key)

    def start(self, keys: list[str]) -> list[SyncInfo]:
        return self._set_running(keys, start=True)

    def stop(self, keys: list[str]) -> list[SyncInfo]:
        return self._set_running(keys, start=False)

    def _set_running(self, keys: list[str], *, start: bool) -> list[SyncInfo]:
        wanted_from, new = (C.STOPPED, C.RUNNING) if start else (C.RUNNING, C.STOPPED)
        with self.db.write() as s:
            rows = []
            for key in keys:
                sync = s.get(Synchronization, key)
                if sync is None:
                    raise BackboneError(f"synchronization {key} does not exist")
                if sync.status != wanted_from:
                    action = "started" if start else "stopped"
                    raise BackboneError(f"{key} is {sync.status}: only a {wanted_from} one can be {action}")
                rows.append(sync)
            for sync in rows:
                sync.status = new
                sync.status_detail = "synchronizing issues" if start else "no issue updates are synchronized"
                s.add(sync)
        for key in keys:
            self._changed(key)
        return [self.sync_info(key) for key in keys]

    def edit(
        self,
        key: str,
        *,
        name: str | None = None,
        description: str | None = None,
        user: str | None = None,
        protocol: str | None = None,
    ) -> SyncInfo:
        """Change name and description; the user and the protocol are fixed at creation."""
        info = self.sync_info(key)
        if user is not None and user != info.sync_user:
            raise BackboneError(
                f"{key}: the synchronization user ({info.sync_user}) cannot be changed once set; "
                "create a new synchronization for another user"
            )
        if protocol is not None and protocol != info.protocol:
            raise BackboneError(
                f"{key}: the protocol ({info.protocol}) cannot be switched after creation; "
                "agree on a new synchronization with the partner"
            )
        with self.db.write() as s:
            sync = s.get(Synchronization, key)
            if sync is None:
                raise BackboneError(f"synchronization {key} does not exist")
            if name is not None:
                sync.name = _check_name(name)
            if description is not None:
                if len(description) > 2000:
                    raise BackboneError("description: at most 2000 characters")
                sync.description = description
            s.add(sync)
        self._changed(key)
        return self.sync_info(key)

    def delete(self, key: str) -> None:
        """Stop and delete a synchronization; its message files move to `data/deleted/`."""
        sides = self._sides(key)
        with self.db.write() as s:
            sync = s.get(Synchronization, key)
            assert sync is not None
            side_ids = [side.id for side in sides]
            s.exec(delete(Message).where(col(Message.side_id).in_(side_ids)))
            s.exec(delete(IssuePair).where(col(IssuePair.side_id).in_(side_ids)))
            s.exec(delete(FieldState).where(col(FieldState.side_id).in_(side_ids)))
            s.exec(delete(History).where(col(History.side_id).in_(side_ids)))
            s.exec(delete(SyncSide).where(col(SyncSide.sync_key) == key))
            s.delete(sync)
        folder = self.paths.data / key
        if folder.exists():
            archive = self.paths.data / "deleted" / f"{key}-{utcnow():%Y%m%dT%H%M%S}"
            archive.parent.mkdir(exist_ok=True)
            folder.rename(archive)
        self._changed(key)

    # -- configuration --------------------------------------------------------------------

    def config_export(self, key: str, project: str | None = None) -> str:
        side = self._one_side(key, project)
        return side.config_text

    def config_import(self, key: str, path: str | Path, project: str | None = None) -> None:
        side = self._one_side(key, project)
        source = Path(path)
        try:
            text = source.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BackboneError(f"{source}: cannot read ({exc})") from None
        self.config_import_text(key, text, str(source), project=side.project)

    def config_import_text(self, key: str, text: str, source: str, project: str | None = None) -> None:
        side = self._one_side(key, project)
        config = parse_config(text, source)
        check_against(
            config,
            source,
            issue_types=self.tracker.issue_types(side.project),
            statuses=self.tracker.statuses(side.project),
            field_kinds=self.tracker.field_names(side.project),
        )
        with self.db.write() as s:
            row = s.get(SyncSide, side.id)
            assert row is not None
            row.config_text = text
            row.config_version += 1
            s.add(row)
        self.pipeline.release_config_pending(self.pipeline.side(side.id))
        self._changed(key)

    def _one_side(self, key: str, project: str | None) -> SideCtx:
        sides = self._sides(key, project)
        if len(sides) > 1:
            names = ", ".join(side.project for side in sides)
            raise BackboneError(f"{key} is local with two sides ({names}): name one with --project")
        return sides[0]

    # -- troubleshooting ------------------------------------------------------------------

    def resolve_pair(self, key: str, issue: str) -> str:
        """A pair id from a pair id or a local issue key (e.g. GLOBEX-12)."""
        if len(issue) == 32 and all(c in "0123456789abcdef" for c in issue):
            return issue
        issue_id = self.tracker.issue_key_to_id(issue)
        side_ids = [side.id for side in self._sides(key)]
        with self.db.session() as s:
            pair = s.exec(
                select(IssuePair).where(col(IssuePair.side_id).in_(side_ids), IssuePair.issue_id == issue_id)
            ).first()
        if pair is None:
            raise BackboneError(f"{issue} is not synced by {key}")
        return pair.pair_id

    def retry(self, key: str, issue: str | None = None) -> int:
        count = 0
        for side in self._sides(key):
            if issue:
                issue = self.resolve_pair(key, issue)
                count += self.pipeline.release_issue(side, issue, skip_first=False)[1]
            else:
                count += self.pipeline.retry_folder(side, F.OFFLINE)
                count += self.pipeline.retry_folder(side, F.SEND_ERROR)
                count += sum(
                    self.pipeline.release_issue(side, pair, skip_first=False)[1]
                    for pair in self._held_pairs(side)
                )
        self._changed(key)
        return count

    def skip(self, key: str, issue: str) -> tuple[int, int]:
        """Skip the first held message of an issue; (messages skipped, messages queued again)."""
        issue = self.resolve_pair(key, issue)
        results = [self.pipeline.release_issue(side, issue, skip_first=True) for side in self._sides(key)]
        self._changed(key)
        return sum(skipped for skipped, _ in results), sum(queued for _, queued in results)

    def _held_pairs(self, side: SideCtx) -> list[str]:
        with self.db.session() as s:
            return [
                p.pair_id
                for p in s.exec(
                    select(IssuePair).where(IssuePair.side_id == side.id, col(IssuePair.held).is_(True))
                )
            ]

    def _changed(self, key: str) -> None:
        with self.db.session() as s:
            sync = s.get(Synchronization, key)
        self.events.publish(SyncChanged(key, sync.status if sync else "DELETED"))


def _info(sync: Synchronization, sides: list[SyncSide], counts: dict[str, int]) -> SyncInfo:
    first = sides[0] if sides else None
    partner = sides[1].project if len(sides) > 1 else (first.partner_project if first else "")
    return SyncInfo(
        key=sync.key,
        name=sync.name,
        description=sync.description,
        role=sync.role,
        protocol=sync.protocol,
        status=sync.status,
        status_detail=sync.status_detail,
        draft_state=sync.draft_state,
        local_project=first.project if first else "",
        partner_project=partner,
        sync_user=sync.sync_user,
        encryption=sync.encryption,
        review=sync.review,
        created=sync.created,
        last_activity=sync.last_activity,
        folder_counts=counts,
        own_fingerprint=first.own_fingerprint if first else "",
        partner_fingerprint=first.partner_fingerprint if first else "",
        own_key_expires=first.own_key_expires if first else None,
        partner_key_expires=first.partner_key_expires if first else None,
        channel_error=first.channel_error if first else "",
        mail=public_mail(first.mail_settings) if first else {},
        exchange=first.exchange if first and first.exchange else "",
    )


def public_mail(stored: str) -> dict[str, Any]:
    """Mail settings fit to show: everything but the passwords."""
    if not stored:
        return {}
    data = json.loads(stored)
    for part in ("receive", "send"):
        data.get(part, {}).pop("password", None)
    return dict(data)


def _env_name(key: str, part: str) -> str:
    return "BACKBONE_" + re.sub(r"[^A-Z0-9]", "_", key.upper()) + f"_{part}_PASSWORD"


def _handshake_target(path: str | Path) -> Path:
    """Where a handshake file may be written: a new file in an existing folder."""
    out = Path(path).absolute()
    if out.exists():
        raise BackboneError(f"handshake file {out} exists already; choose another name")
    if not out.parent.is_dir():
        raise BackboneError(f"handshake file {out}: the folder {out.parent} does not exist")
    return out


def _plausible_address(address: str) -> bool:
    return address == "" or (
        len(address) <= 320
        and "@" in address
        and line_safe(address)
        and not any(c in address for c in " <>,")
    )


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _check_protocol(protocol: str, allowed: tuple[str, ...]) -> None:
    if protocol not in PROTOCOLS:
        raise BackboneError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if protocol not in allowed:
        raise BackboneError(f"--protocol {protocol}: not available yet in this version (use file)")


def _check_user(user: str) -> None:
    if not user or len(user) > 64 or not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise BackboneError(f"--user {user!r}: expected a user name (letters, digits, - _ .)")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 120:
        raise BackboneError("name: expected 1-120 characters")
    return name
