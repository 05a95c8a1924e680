"""One installation (home): the composition root of the service layer the CLI and the TUI use."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from engine.domain.envelope import Codec, Envelope, PlainCodec
from engine.domain.side import SideCtx
from engine.errors import BackboneError, FieldError, RejectedError
from engine.events import EventBus, SyncChanged
from engine.pipeline.control import handle_control
from engine.pipeline.core import Pipeline
from engine.pipeline.records import Outgoing
from engine.service.analyze import Analyzer
from engine.service.configuration import Configuration
from engine.service.delivery import Delivery
from engine.service.history import IssueHistory
from engine.service.lifecycle import Lifecycle
from engine.service.mailboxes import Mailboxes
from engine.service.notify import Notifications
from engine.service.pairing import Pairing
from engine.service.queries import Queries
from engine.service.rules import KEY_LIFETIME_DAYS, SCHEMA_SETTING, SCHEMA_VERSION, _plausible_address
from engine.service.tokens import ApiTokens
from engine.service.trackers import TrackerAccounts
from engine.service.troubleshooting import Troubleshooting
from engine.service.views import MessageInfo, SyncInfo, public_mail
from engine.store import notify
from engine.store.database import Database
from engine.store.home import EngineLock, HomePaths, resolve_home
from engine.store.models import (
    Installation as InstallationRow,
)
from engine.store.models import (
    Setting,
    Synchronization,
    SyncSide,
)
from engine.store.projection import Projection
from engine.trackers.base import utcnow
from engine.trackers.embedded import EmbeddedTracker
from engine.trust.gpg import GpgCodec, HandshakeCodec, Keyring
from engine.vocab import MessageType, Reason

__all__ = ["Installation", "MessageInfo", "SyncInfo", "public_mail"]


class Installation:
    """An opened home: database, embedded tracker, pipeline, and the services over them
    (`queries`, `pairing`, `lifecycle`, `troubleshooting`, `mailboxes`)."""

    def __init__(self, home: str | Path | None = None, *, create: bool = True) -> None:
        """Open the home (created when missing, unless `create` is False: then it must exist)."""
        self.paths = HomePaths(resolve_home(home))
        self.paths.check()
        if not create and not self.paths.database.is_file():
            raise FieldError(
                "home",
                f"{self.paths.root}: no Backbone home here (check it, or $BACKBONE_HOME; "
                "'project create' or 'sync create' makes a new one)",
            )
        self.paths.create()
        existed = self.paths.database.is_file() and self.paths.database.stat().st_size > 0
        self.db = Database.for_file(self.paths.database)
        try:
            if existed and not self._has_identity():
                self.check_database()  # a home lost the rows every home has: look before writing them
            self.db.migrate()
            os.chmod(self.paths.database, 0o600)  # it holds mail passwords
            self._check_schema()
            self.id = self._installation_id()
        except SADatabaseError as exc:
            self.db.dispose()
            raise BackboneError(self.db.damage_text(exc.orig or exc)) from None
        #: whether the folders are known to match the database (a start skips the walk then)
        self.projection = Projection(self.paths.processes, self.db)
        self.projection.open()
        self.tracker = EmbeddedTracker(
            self.db,
            self.paths.attachments,
            notice_file=notify.notify_folder(self.paths.root) / notify.TRACKER_CHANGED,
        )
        self.events = EventBus()
        # the services, and what callers use by name
        self.queries = Queries(self)
        self.pairing = Pairing(self)
        self.lifecycle = Lifecycle(self)
        self.configuration = Configuration(self)
        self.troubleshooting = Troubleshooting(self)
        self.mailboxes = Mailboxes(self)
        self.trackers = TrackerAccounts(self)
        self.tracker_for = self.trackers.for_side
        self.analyzer = Analyzer(self)
        self.tokens = ApiTokens(self)
        self.list_syncs = self.queries.list_syncs
        self.sync_info = self.queries.sync_info
        self.messages = self.queries.messages
        self.history = self.queries.history
        self.issue_pairs = self.queries.issue_pairs
        self.create_primary = self.pairing.create_primary
        self.export_handshake = self.pairing.export_handshake
        self.read_handshake = self.pairing.read_handshake
        self.create_secondary = self.pairing.create_secondary
        self.create_local = self.pairing.create_local
        self.accept = self.pairing.accept
        self.decline = self.pairing.decline
        self.start = self.lifecycle.start
        self.stop = self.lifecycle.stop
        self.edit = self.lifecycle.edit
        self.delete = self.lifecycle.delete
        self.settings = self.lifecycle.settings
        self.change_settings = self.lifecycle.change_settings
        self.config_export = self.configuration.export
        self.config_import = self.configuration.import_file
        self.config_import_text = self.configuration.import_text
        self.config_diff = self.configuration.diff
        self.config_incoming = self.configuration.incoming
        self.config_history = self.configuration.history
        self.config_dry_run = self.configuration.dry_run
        self.publish_config = self.configuration.publish
        self.decline_config = self.configuration.decline
        self.accept_config = self.configuration.accept
        self.resolve_pair = self.troubleshooting.resolve_pair
        self.retry = self.troubleshooting.retry
        self.resync = self.troubleshooting.resync
        self.skip = self.troubleshooting.skip
        self.problems = self.troubleshooting.problems
        self.analyze = self.analyzer.analyze
        self.analyze_all = self.analyzer.analyze_all
        self.mail_settings = self.mailboxes.mail_settings
        self.fetch_arrivals = self.mailboxes.fetch
        self.wait_for_arrivals = self.mailboxes.wait_for_arrivals
        self.close_receivers = self.mailboxes.close_receivers
        self.test_channel = self.mailboxes.test_channel
        self.stop_event = threading.Event()  # the engine's cooperative stop, seen by every step
        self.pipeline = Pipeline(
            self.db,
            self.tracker,
            self.paths.data,
            self.events,
            self._codec_for,
            self.mailboxes.channel_for,
            control_handler=self._handle_control,
            should_stop=self.stop_event.is_set,
            trackers=self.trackers.working,
            disturbed=self.projection.spoil,
            moving=self.projection.moving,
        )
        self.lock = EngineLock(self.paths.lock_file)
        #: the engine's periodic tasks (acknowledgements, resends, retention, notifications): each
        #: returns how much it did (0: nothing due), called about once a second by the engine
        self.periodic: list[Callable[[], int]] = []
        self.delivery = Delivery(self)
        self.issue_history = IssueHistory(self)
        self.periodic.append(self.delivery.tick)
        self.notifications = Notifications(self)
        self.periodic.append(self.notifications.check)
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

    def housekeeping(self) -> int:
        """Run the periodic tasks once (the engine's housekeeping worker); how much they did."""
        return sum(task() for task in self.periodic)

    def close(self) -> None:
        """Release the engine lock, stop the key ring's gpg-agent and close the database."""
        self.projection.close()
        self.lock.release()
        if self._keyring is not None:
            self._keyring.close()
        self.db.dispose()

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
        if (
            envelope.type == MessageType.HANDSHAKE
            and isinstance(address, str)
            and not _plausible_address(address)
        ):
            raise RejectedError(
                Reason.BODY_INVALID, "field 'address': expected one email address on one line"
            )
        answer = handle_control(s, side, envelope)
        row = s.get(SyncSide, side.id)
        if (
            envelope.type == MessageType.HANDSHAKE
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

    def _changed(self, key: str) -> None:
        """Say that a synchronization changed: to this process's listeners, and to an engine
        running in another process (the CLI, the TUI) through the home's notice file."""
        with self.db.session() as s:
            sync = s.get(Synchronization, key)
        self.events.publish(SyncChanged(key, sync.status if sync else "DELETED"))
        notify.touch(notify.notify_folder(self.paths.root) / notify.SYNCS_CHANGED)
