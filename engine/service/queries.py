"""What a screen or a script reads: synchronizations, messages, history."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, col, select

from engine.domain.side import SideCtx
from engine.errors import BackboneError, FieldError
from engine.service.views import MessageInfo, SyncInfo, _info
from engine.store.models import (
    History,
    IssuePair,
    Message,
    SyncSide,
    TrackerAccount,
)
from engine.trackers.settings import EMBEDDED
from engine.vocab import ALL_FOLDERS

if TYPE_CHECKING:
    from engine.service.installation import Installation


SYNC_TABLE = SQLModel.metadata.tables["synchronization"]
SIDE_TABLE = SQLModel.metadata.tables["syncside"]
#: what a listing shows of a side: not its mapping texts, drafts or terms (kilobytes each)
LISTED_SIDE_COLUMNS = tuple(
    column
    for column in SIDE_TABLE.c
    if column.name
    not in ("config_text", "terms_json", "draft_text", "pending_text", "pending_terms", "proposal")
)


class Queries:
    """What a screen or a script reads: synchronizations, messages, history."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def list_syncs(self, status: str | None = None, project: str | None = None) -> list[SyncInfo]:
        """Every synchronization (optionally of one status or project) with its folder counts."""
        with self.i.db.session() as s:  # plain rows, not ORM objects: a tenth of the cost at 10,000
            query = sa_select(*SYNC_TABLE.c).order_by(SYNC_TABLE.c.key)
            if status:
                query = query.where(SYNC_TABLE.c.status == status.upper())
            syncs = s.execute(query).all()
            sides = s.execute(sa_select(*LISTED_SIDE_COLUMNS).order_by(SIDE_TABLE.c.id)).all()
            drafted = set(s.exec(select(SyncSide.sync_key).where(SyncSide.draft_text != "")).all())
            problems = dict(
                s.exec(
                    select(TrackerAccount.name, TrackerAccount.problem).where(TrackerAccount.problem != "")
                ).all()
            )
            counts = s.exec(
                select(Message.side_id, Message.folder, func.count()).group_by(
                    col(Message.side_id), col(Message.folder)
                )
            ).all()
        side_counts: dict[int, dict[str, int]] = {}
        for side_id, folder, count in counts:
            side_counts.setdefault(side_id, {})[folder] = count
        by_sync: dict[str, list[Any]] = {}
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
            result.append(
                _info(sync, own, folder_counts, draft_edited=sync.key in drafted, tracker_problems=problems)
            )
        return result

    def projects(self, tracker: str = EMBEDDED) -> list[tuple[str, str]]:
        """(key, name) of every project of a tracker (the embedded one by default)."""
        return self.i.trackers.get(tracker).projects()

    def sync_info(self, key: str) -> SyncInfo:
        """One synchronization; `BackboneError` if it does not exist."""
        for info in self.list_syncs():
            if info.key == key:
                return info
        raise BackboneError(f"synchronization {key} does not exist")

    def sides_of(self, key: str, project: str | None = None) -> list[SideCtx]:
        """The sides of a synchronization (one, or two for a local one; or the one of `project`)."""
        sides = [side for side in self.i.pipeline.sides() if side.sync_key == key]
        if not sides:
            raise BackboneError(f"synchronization {key} does not exist")
        if project:
            sides = [side for side in sides if side.project == project]
            if not sides:
                raise BackboneError(f"synchronization {key} has no side for project {project}")
        return sides

    def messages(self, key: str, folder: str | None = None) -> list[MessageInfo]:
        """A synchronization's messages, oldest first, optionally of one folder."""
        if folder and folder.upper() not in ALL_FOLDERS:
            raise FieldError("folder", f"{folder!r}: expected one of {', '.join(ALL_FOLDERS)}")
        side_ids = [side.id for side in self.sides_of(key)]
        with self.i.db.session() as s:
            query = select(Message).where(col(Message.side_id).in_(side_ids)).order_by(col(Message.id))
            if folder:
                query = query.where(Message.folder == folder.upper())
            rows = s.exec(query).all()
            pair_ids = {row.pair_id for row in rows if row.pair_id}
            issue_of = {
                (pair.side_id, pair.pair_id): pair.issue_id
                for pair in s.exec(select(IssuePair).where(col(IssuePair.side_id).in_(side_ids))).all()
                if pair.pair_id in pair_ids and pair.issue_id
            }
        keys = self.i.trackers.pair_keys(issue_of)
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
                keys.get((row.side_id, row.pair_id or ""), ""),
            )
            for row in rows
        ]

    def history(self, key: str) -> list[tuple[datetime, str, str | None, str]]:
        """A synchronization's history: (when, kind, issue pair, text), oldest first."""
        side_ids = [side.id for side in self.sides_of(key)]
        with self.i.db.session() as s:
            rows = s.exec(
                select(History).where(col(History.side_id).in_(side_ids)).order_by(col(History.id))
            ).all()
        return [(row.at, row.kind, row.pair_id, row.text) for row in rows]

    def issue_pairs(self, key: str) -> dict[str, dict[str, str | None]]:
        """Pair id -> {project: local issue id} for every side of this synchronization."""
        result: dict[str, dict[str, str | None]] = {}
        with self.i.db.session() as s:
            for side in self.sides_of(key):
                for pair in s.exec(select(IssuePair).where(IssuePair.side_id == side.id)):
                    result.setdefault(pair.pair_id, {})[side.project] = pair.issue_id
        return result
