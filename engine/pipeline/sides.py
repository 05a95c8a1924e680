"""The sides of this installation's synchronizations, read for the pipeline steps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import col, select

from engine.config.mapping import MappingConfig, parse_config
from engine.domain.folders import SideFolders
from engine.domain.settings import SyncSettings
from engine.domain.side import SideCtx
from engine.store.models import Message, Synchronization, SyncSide
from engine.vocab import Folder

USERS_TTL = 5.0  # seconds a read of the tracker's users is used for e-mail matching

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


class Sides:
    """The synchronization sides as the pipeline sees them, and their parsed configurations."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        # side id -> ((version, text), parsed, users stamp, parsed with the users' e-mail tables)
        self._configs: dict[int, tuple[tuple[int, str], MappingConfig, float, MappingConfig]] = {}
        self._users: dict[str, tuple[float, dict[str, str]]] = {}  # tracker -> (when read, name -> e-mail)

    def sides(self) -> list[SideCtx]:
        with self.p.db.session() as s:
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
        with self.p.db.session() as s:
            rows = s.exec(
                select(Message.side_id, Message.folder)
                .where(
                    col(Message.folder).in_([Folder.SEND, Folder.SEND_ERROR, Folder.RECEIVE, Folder.OFFLINE])
                )
                .distinct()
            ).all()
        result: dict[int, set[str]] = {}
        for side_id, folder in rows:
            result.setdefault(side_id, set()).add(folder)
        return result

    def side(self, side_id: int) -> SideCtx:
        """The side as stored now; LookupError once its synchronization is deleted."""
        with self.p.db.session() as s:
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
            folders=SideFolders(self.p.data_root / row.sync_key / row.folder),
            pairing_secret=row.pairing_secret,
            partner_side_id=partner_side_id,
            encryption=sync.encryption,
            own_fingerprint=row.own_fingerprint,
            partner_fingerprint=row.partner_fingerprint,
            mail_settings=row.mail_settings,
            channel_error=row.channel_error,
            settings=SyncSettings.from_json(sync.settings),
            tracker=row.tracker,
        )

    def config(self, side: SideCtx) -> MappingConfig:
        """The side's configuration in force; user fields matched by e-mail get their table from
        the tracker's users, read again after `USERS_TTL` seconds (a user added meanwhile)."""
        stored = self._configs.get(side.id)
        if stored is None or stored[0] != (side.config_version, side.config_text):
            parsed = parse_config(side.config_text, f"configuration of {side.sync_key}/{side.folder}")
            stored = ((side.config_version, side.config_text), parsed, -1.0, parsed)
            self._configs[side.id] = stored
        source, parsed, stamp, expanded = stored
        if not parsed.matches_by_email:
            return parsed
        now = time.monotonic()
        users = self._users.get(side.tracker)
        if users is None or now - users[0] > USERS_TTL:
            users = self._users[side.tracker] = (now, self.p.tracker_for(side).user_emails())
        if stamp != users[0]:
            expanded = parsed.with_user_emails(users[1])
            self._configs[side.id] = (source, parsed, users[0], expanded)
        return expanded
