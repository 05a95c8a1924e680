"""The sides of this installation's synchronizations, read for the pipeline steps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, col, select

from engine.config.mapping import MappingConfig, parse_config
from engine.domain.folders import SideFolders
from engine.domain.settings import SyncSettings
from engine.domain.side import SideCtx
from engine.store.models import Message, Synchronization, SyncSide
from engine.vocab import Folder

_SYNCS = SQLModel.metadata.tables["synchronization"]
_SIDE_ROWS = SQLModel.metadata.tables["syncside"]
# the columns `_ctx` reads, sides in id order with their synchronization (a side whose
# synchronization row is gone is left out, as a deleted one)
_SIDES = (
    sa_select(
        _SIDE_ROWS.c.id,
        _SIDE_ROWS.c.sync_key,
        _SIDE_ROWS.c.project,
        _SIDE_ROWS.c.folder,
        _SIDE_ROWS.c.role,
        _SIDE_ROWS.c.endpoint,
        _SIDE_ROWS.c.partner_endpoint,
        _SIDE_ROWS.c.partner_project,
        _SIDE_ROWS.c.exchange,
        _SIDE_ROWS.c.cursor,
        _SIDE_ROWS.c.config_version,
        _SIDE_ROWS.c.config_text,
        _SIDE_ROWS.c.pairing_secret,
        _SIDE_ROWS.c.own_fingerprint,
        _SIDE_ROWS.c.partner_fingerprint,
        _SIDE_ROWS.c.mail_settings,
        _SIDE_ROWS.c.channel_error,
        _SIDE_ROWS.c.tracker,
        _SYNCS.c.sync_user,
        _SYNCS.c.status,
        _SYNCS.c.protocol,
        _SYNCS.c.encryption,
        _SYNCS.c.settings,
    )
    .join(_SYNCS, _SYNCS.c.key == _SIDE_ROWS.c.sync_key)
    .order_by(_SIDE_ROWS.c.id)
)

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
        # immutable values built once: parsed settings by their text, paths by their text or side
        self._parsed_settings: dict[str, SyncSettings] = {}
        self._paths: dict[str, Path] = {}
        self._side_folders: dict[tuple[str, str], SideFolders] = {}

    def sides(self) -> list[SideCtx]:
        """Every side, read as plain rows in one query (no ORM objects: 10,000 sides in a few
        tens of milliseconds); settings parsed once per distinct text."""
        with self.p.db.session() as s:
            rows = s.connection().execute(_SIDES).all()
        partners: dict[str, list[int]] = {}
        for row in rows:
            partners.setdefault(row.sync_key, []).append(row.id)
        result = []
        for row in rows:
            partner = next((other for other in partners[row.sync_key] if other != row.id), None)
            result.append(self._ctx(row, row, partner))
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

    def _path(self, text: str) -> Path:
        path = self._paths.get(text)
        if path is None:
            if len(self._paths) > 50_000:
                self._paths.clear()
            path = self._paths[text] = Path(text)
        return path

    def _folders(self, sync_key: str, folder: str) -> SideFolders:
        folders = self._side_folders.get((sync_key, folder))
        if folders is None:
            if len(self._side_folders) > 50_000:
                self._side_folders.clear()
            folders = SideFolders(self.p.data_root / sync_key / folder)
            self._side_folders[(sync_key, folder)] = folders
        return folders

    def _settings(self, text: str) -> SyncSettings:
        parsed = self._parsed_settings.get(text)
        if parsed is None:
            if len(self._parsed_settings) > 1000:
                self._parsed_settings.clear()
            parsed = self._parsed_settings[text] = SyncSettings.from_json(text)
        return parsed

    def _ctx(self, sync: Any, row: Any, partner_side_id: int | None) -> SideCtx:
        """A side from its synchronization's and its own columns (ORM objects or plain rows)."""
        return SideCtx(
            id=row.id or 0,
            sync_key=row.sync_key,
            project=row.project,
            folder=row.folder,
            role=row.role,
            endpoint=row.endpoint,
            partner_endpoint=row.partner_endpoint,
            partner_project=row.partner_project,
            exchange=self._path(row.exchange) if row.exchange else None,
            cursor=row.cursor,
            config_version=row.config_version,
            config_text=row.config_text,
            sync_user=sync.sync_user,
            status=sync.status,
            protocol=sync.protocol,
            folders=self._folders(row.sync_key, row.folder),
            pairing_secret=row.pairing_secret,
            partner_side_id=partner_side_id,
            encryption=sync.encryption,
            own_fingerprint=row.own_fingerprint,
            partner_fingerprint=row.partner_fingerprint,
            mail_settings=row.mail_settings,
            channel_error=row.channel_error,
            settings=self._settings(sync.settings),
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
