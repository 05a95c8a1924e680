"""Creating synchronizations: a primary's request and its handshake file, a secondary"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from engine.channels import channel_fields
from engine.channels.email import MailSettings
from engine.config.mapping import TrackerSchema, draft_with_label_slots, generated_config
from engine.config.terms import Terms
from engine.domain.envelope import load_json
from engine.errors import BackboneError, FieldError, RejectedError, TrackerOffline
from engine.pipeline.records import Outgoing
from engine.service.rules import (
    HANDSHAKE_FORMAT,
    HANDSHAKE_KIND,
    MAX_HANDSHAKE_BYTES,
    SYNC_KEY,
    _canonical,
    _check_name,
    _check_protocol,
    _check_user,
    _handshake_target,
)
from engine.service.views import SyncInfo
from engine.store import fsutil
from engine.store.models import (
    ConfigVersion,
    Synchronization,
    SyncSide,
)
from engine.trackers.base import utcnow
from engine.trackers.settings import EMBEDDED
from engine.trust.gpg import Keyring, normalize_fingerprint
from engine.vocab import MessageType, Protocol, Role, SyncStatus

if TYPE_CHECKING:
    from engine.service.installation import Installation


class Pairing:
    """Creating synchronizations: a primary's request and its handshake file, a secondary
    from one, a local pair; and answering a request."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def _new_key(self, project: str, partner: str | None) -> str:
        base = f"{project}-{partner}" if partner else f"{project}-SYNC"
        with self.i.db.session() as s:
            taken = {row for row in s.exec(select(Synchronization.key))}
        n = 1
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def _check_project(self, project: str, tracker: str = EMBEDDED) -> None:
        try:
            known = {key for key, _ in self.i.trackers.get(tracker).projects()}
        except TrackerOffline as exc:
            raise FieldError("tracker", f"tracker {tracker} cannot be reached: {exc}") from None
        if project not in known:
            where = (
                "here (create it first)" if tracker == EMBEDDED else f"in tracker {tracker} (or not visible)"
            )
            raise FieldError("project", f"project {project} does not exist {where}")

    def _schema(self, project: str, tracker_name: str = EMBEDDED) -> TrackerSchema:
        tracker = self.i.trackers.get(tracker_name)
        kinds = tracker.field_names(project)
        return TrackerSchema(
            tracker.issue_types(project),
            tracker.statuses(project),
            kinds,
            {name: tracker.field_options(project, name) for name, kind in kinds.items() if kind == "select"},
        )

    def _prepare_channel(
        self, protocol: str, key: str, exchange: str | Path | None, mail: MailSettings | None, address: str
    ) -> dict[str, str]:
        """The side's channel fields: an exchange folder, or checked and stored mail settings."""
        return channel_fields(
            protocol,
            exchange=Path(exchange) if exchange else None,
            default_exchange=self.i.paths.root / "exchange" / key,
            mail=mail,
            address=address,
        )

    def _add_side(
        self, sync: Synchronization, project: str, role: str, endpoint: str, **fields: Any
    ) -> SyncSide:
        with self.i.db.session() as s:
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
        tracker: str = EMBEDDED,
    ) -> tuple[SyncInfo, Path]:
        """This side of a new synchronization (REQUEST SENT) and the handshake file for the partner;
        its project lives in `tracker` (the embedded one by default)."""
        self._check_project(project, tracker)
        _check_protocol(protocol, allowed=(Protocol.FILE, Protocol.EMAIL))
        _check_user(user)
        out = _handshake_target(handshake_out)
        key = self._new_key(project, partner_project)
        channel = self._prepare_channel(protocol, key, exchange, mail, address)
        now = utcnow()
        sync = Synchronization(
            key=key,
            name=_check_name(name),
            description=description,
            role=Role.PRIMARY,
            protocol=protocol,
            sync_user=user,
            review=review,
            status=SyncStatus.REQUEST_SENT,
            encryption=encryption,
            created=now,
            status_detail="handshake file exported; waiting for the partner",
        )
        secret = secrets.token_urlsafe(32)
        fingerprint, expires = self.i.own_key() if encryption else ("", None)
        side = self._add_side(
            sync,
            project,
            Role.PRIMARY,
            self.i.id,
            **channel,
            pairing_secret=secret,
            partner_project=partner_project or "",
            own_fingerprint=fingerprint,
            own_key_expires=expires,
            tracker=tracker,
            draft_text=draft_with_label_slots(
                generated_config(self._schema(project, tracker))
            ),  # published once paired
        )
        staging = self._stage_handshake(sync, side, out)
        try:
            with self.i.db.write() as s:
                s.add(sync)
                s.add(side)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
        staging.replace(out)
        self._ensure_folders(key)
        return self.i.queries.sync_info(key), out

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
                "installation": self.i.id,
                "project": side.project,
                "address": json.loads(side.mail_settings).get("address", "") if side.mail_settings else "",
            },
            "encryption": sync.encryption,
            "secret": side.pairing_secret,
            "created": sync.created.isoformat(),
        }
        if sync.encryption:
            fingerprint = side.own_fingerprint
            handshake["key"] = {
                "fingerprint": fingerprint,
                "public": self.i.keyring.export_public(fingerprint),
            }
            handshake["signature"] = self.i.keyring.sign_text(_canonical(handshake), fingerprint)
        else:
            handshake["checksum"] = hashlib.sha256(_canonical(handshake).encode()).hexdigest()
        staging = out.with_name(f".{out.name}.part")
        try:
            staging.write_text(json.dumps(handshake, indent=2) + "\n")
            staging.chmod(0o600)
        except OSError as exc:
            staging.unlink(missing_ok=True)
            text = f"handshake file {out}: cannot write ({exc.strerror})"
            raise FieldError("handshake_out", text) from None
        return staging

    def export_handshake(self, key: str, handshake_out: str | Path) -> Path:
        """Write a primary's handshake file again while its request is pending (REQUEST SENT)."""
        out = _handshake_target(handshake_out)
        with self.i.db.session() as s:
            sync = s.get(Synchronization, key)
            sides = s.exec(select(SyncSide).where(SyncSide.sync_key == key)).all()
        if sync is None or not sides:
            raise BackboneError(f"synchronization {key} does not exist")
        if sync.role != Role.PRIMARY or sync.status != SyncStatus.REQUEST_SENT:
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
        tracker: str = EMBEDDED,
    ) -> SyncInfo:
        """This side of a partner's request (INCOMING REQUEST), from its handshake file."""
        data = self.read_handshake(handshake, expected_fingerprint)
        self._check_project(project, tracker)
        _check_user(user)
        key = data["sync"]
        with self.i.db.session() as s:
            if s.get(Synchronization, key) is not None:
                raise BackboneError(f"synchronization {key} exists here already")
        _check_protocol(data["protocol"], allowed=(Protocol.FILE, Protocol.EMAIL))
        if mail is not None and not mail.send.to_addr:
            mail.send.to_addr = str(data["primary"].get("address") or "")
        channel = self._prepare_channel(data["protocol"], key, exchange, mail, address)
        encryption = bool(data["encryption"])
        keys: dict[str, Any] = {}
        if encryption:
            fingerprint, expires = self.i.own_key()
            partner = self.i.keyring.import_partner_key(data["key"]["public"], data["key"]["fingerprint"])
            keys = {
                "own_fingerprint": fingerprint,
                "own_key_expires": expires,
                "partner_fingerprint": partner,
                "partner_key_expires": self.i.keyring.key_expiry(partner),
            }
        sync = Synchronization(
            key=key,
            name=data["name"],
            description=data.get("description", ""),
            role=Role.SECONDARY,
            protocol=data["protocol"],
            sync_user=user,
            review=bool(data.get("review")),
            status=SyncStatus.INCOMING_REQUEST,
            encryption=encryption,
            created=utcnow(),
            status_detail="accept or decline the partner's request",
        )
        side = self._add_side(
            sync,
            project,
            Role.SECONDARY,
            self.i.id,
            **channel,
            partner_endpoint=data["primary"]["installation"],
            partner_project=data["primary"]["project"],
            pairing_secret=data["secret"],
            tracker=tracker,
            **keys,
        )
        with self.i.db.write() as s:
            s.add(sync)
            s.add(side)
        self._ensure_folders(key)
        return self.i.queries.sync_info(key)

    def create_local(
        self,
        *,
        project: str,
        partner_project: str,
        user: str,
        name: str,
        description: str = "",
        tracker: str = EMBEDDED,
        partner_tracker: str | None = None,
    ) -> SyncInfo:
        """A synchronization between two projects of this installation (STOPPED, two sides), each
        in its tracker (`partner_tracker`: the same as `tracker` unless given)."""
        partner_tracker = partner_tracker or tracker
        self._check_project(project, tracker)
        self._check_project(partner_project, partner_tracker)
        _check_user(user)
        key = self._new_key(project, partner_project)
        sync = Synchronization(
            key=key,
            name=_check_name(name),
            description=description,
            role=Role.LOCAL,
            protocol=Protocol.LOCAL,
            sync_user=user,
            status=SyncStatus.STOPPED,
            created=utcnow(),
            status_detail="configure and start",
        )
        # one installation is the authority for both sides: version 1 is in force at once, on
        # what both projects have under the same names (the rest is configured by publishing)
        config = generated_config(
            self._schema(project, tracker).common(self._schema(partner_project, partner_tracker))
        )
        text, terms = config.to_toml(), json.dumps(Terms.of(config).to_body(), sort_keys=True)
        in_force: dict[str, Any] = {"config_version": 1, "config_text": text, "terms_json": terms}
        first = self._add_side(
            sync,
            project,
            Role.PRIMARY,
            f"{self.i.id}/1",
            partner_endpoint=f"{self.i.id}/2",
            partner_project=partner_project,
            tracker=tracker,
            **in_force,
        )
        with self.i.db.write() as s:
            s.add(sync)
            s.add(first)
        second = self._add_side(
            sync,
            partner_project,
            Role.SECONDARY,
            f"{self.i.id}/2",
            partner_endpoint=f"{self.i.id}/1",
            partner_project=project,
            tracker=partner_tracker,
            **in_force,
        )
        with self.i.db.write() as s:
            s.add(second)
            s.flush()
            for side in (first, second):
                s.add(
                    ConfigVersion(
                        side_id=side.id or 0,
                        version=1,
                        terms_json=terms,
                        config_text=text,
                        message="the default at creation: what both projects have under the same names",
                        author=Role.PRIMARY,
                        narrowed="{}",
                        at=utcnow(),
                    )
                )
        self._ensure_folders(key)
        return self.i.queries.sync_info(key)

    def _ensure_folders(self, key: str) -> None:
        for side in self.i.queries.sides_of(key):
            side.folders.ensure()

    def accept(self, key: str) -> SyncInfo:
        """Answer an INCOMING REQUEST with a HANDSHAKE (our key, authenticated by the secret)."""
        return self._answer_request(
            key, MessageType.HANDSHAKE, SyncStatus.HANDSHAKE, "sent HANDSHAKE, waiting for the partner's PING"
        )

    def decline(self, key: str) -> SyncInfo:
        """Answer an INCOMING REQUEST with a DECLINE; the request stays, DECLINED."""
        return self._answer_request(
            key, MessageType.DECLINE, SyncStatus.DECLINED, "you declined the request; delete it"
        )

    def _answer_request(self, key: str, message_type: str, status: str, detail: str) -> SyncInfo:
        (side,) = self.i.queries.sides_of(key)
        with self.i.db.write() as s:
            sync = s.get(Synchronization, key)
            row = s.get(SyncSide, side.id)
            assert sync is not None and row is not None
            if sync.role != Role.SECONDARY or sync.status != SyncStatus.INCOMING_REQUEST:
                verb = "accepted" if message_type == MessageType.HANDSHAKE else "declined"
                raise BackboneError(f"{key} is {sync.status}: only an INCOMING REQUEST can be {verb}")
            body: dict[str, Any] = {"secret": row.pairing_secret, "project": side.project}
            if row.mail_settings:
                body["address"] = json.loads(row.mail_settings).get("address", "")
            if sync.encryption:
                body["key"] = {
                    "fingerprint": row.own_fingerprint,
                    "public": self.i.keyring.export_public(row.own_fingerprint),
                }
            queued = self.i.pipeline.queue(s, side, Outgoing(message_type, body))
            row.pairing_secret = ""
            sync.status, sync.status_detail = status, detail
            s.add(row)
            s.add(sync)
        self.i.pipeline.write_send_files(side, [queued])
        self.i._changed(key)
        return self.i.queries.sync_info(key)
