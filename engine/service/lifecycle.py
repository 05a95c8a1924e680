"""Starting, stopping, editing, deleting and configuring synchronizations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import col, delete

from engine.domain.settings import SyncSettings
from engine.domain.side import SideCtx
from engine.errors import BackboneError, FieldError
from engine.service.notify import STATE_PREFIX
from engine.service.rules import _check_name
from engine.service.views import SyncInfo
from engine.store.models import (
    FieldState,
    History,
    IssuePair,
    Message,
    Notification,
    NotifyRecipient,
    Setting,
    Synchronization,
    SyncSide,
)
from engine.trackers.base import utcnow
from engine.vocab import SyncStatus

if TYPE_CHECKING:
    from engine.service.installation import Installation


class Lifecycle:
    """Starting, stopping, editing, deleting and configuring synchronizations."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def start(self, keys: list[str]) -> list[SyncInfo]:
        """Start synchronizing issues; every key must be STOPPED (else nothing changes)."""
        return self._set_running(keys, start=True)

    def stop(self, keys: list[str]) -> list[SyncInfo]:
        """Stop synchronizing issues; every key must be RUNNING (else nothing changes)."""
        return self._set_running(keys, start=False)

    def _set_running(self, keys: list[str], *, start: bool) -> list[SyncInfo]:
        wanted_from, new = (
            (SyncStatus.STOPPED, SyncStatus.RUNNING) if start else (SyncStatus.RUNNING, SyncStatus.STOPPED)
        )
        with self.i.db.write() as s:
            rows = []
            for key in keys:
                sync = s.get(Synchronization, key)
                if sync is None:
                    raise BackboneError(f"synchronization {key} does not exist")
                if sync.status != wanted_from:
                    action = "started" if start else "stopped"
                    raise BackboneError(f"{key} is {sync.status}: only a {wanted_from} one can be {action}")
                problems = self.i.configuration.problems_before_start(key) if start else []
                if problems:
                    raise BackboneError(f"{key} cannot start: {'; '.join(problems)}")
                rows.append(sync)
            for sync in rows:
                sync.status = new
                sync.status_detail = "synchronizing issues" if start else "no issue updates are synchronized"
                s.add(sync)
        for key in keys:
            self.i._changed(key)
        return [self.i.queries.sync_info(key) for key in keys]

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
        info = self.i.queries.sync_info(key)
        if user is not None and user != info.sync_user:
            raise FieldError(
                "user",
                f"{key}: the synchronization user ({info.sync_user}) cannot be changed once set; "
                "create a new synchronization for another user",
            )
        if protocol is not None and protocol != info.protocol:
            raise FieldError(
                "protocol",
                f"{key}: the protocol ({info.protocol}) cannot be switched after creation; "
                "agree on a new synchronization with the partner",
            )
        with self.i.db.write() as s:
            sync = s.get(Synchronization, key)
            if sync is None:
                raise BackboneError(f"synchronization {key} does not exist")
            if name is not None:
                sync.name = _check_name(name)
            if description is not None:
                if len(description) > 2000:
                    raise FieldError("description", "at most 2000 characters")
                sync.description = description
            s.add(sync)
        self.i._changed(key)
        return self.i.queries.sync_info(key)

    def settings(self, key: str) -> list[dict[str, Any]]:
        """The advanced settings of a synchronization: name, value, default, unit, changed, help."""
        with self.i.db.session() as s:
            sync = s.get(Synchronization, key)
        if sync is None:
            raise BackboneError(f"synchronization {key} does not exist")
        return SyncSettings.from_json(sync.settings).rows()

    def change_settings(self, key: str, assignments: dict[str, str]) -> list[dict[str, Any]]:
        """Change settings (`name -> value text`, all validated before any is stored); a running
        engine uses them within a second. `FieldError` names a wrong name or value."""
        with self.i.db.write() as s:
            sync = s.get(Synchronization, key)
            if sync is None:
                raise BackboneError(f"synchronization {key} does not exist")
            sync.settings = SyncSettings.from_json(sync.settings).with_changes(assignments).to_json()
            s.add(sync)
        self.i._changed(key)
        return self.settings(key)

    def delete(self, key: str) -> None:
        """Stop and delete a synchronization; its message files move to `data/deleted/`."""
        sides = self.i.queries.sides_of(key)
        with self.i.db.write() as s:
            sync = s.get(Synchronization, key)
            assert sync is not None
            side_ids = [side.id for side in sides]
            s.exec(delete(Message).where(col(Message.side_id).in_(side_ids)))
            s.exec(delete(IssuePair).where(col(IssuePair.side_id).in_(side_ids)))
            s.exec(delete(FieldState).where(col(FieldState.side_id).in_(side_ids)))
            s.exec(delete(History).where(col(History.side_id).in_(side_ids)))
            s.exec(delete(SyncSide).where(col(SyncSide.sync_key) == key))
            s.exec(delete(NotifyRecipient).where(col(NotifyRecipient.sync_key) == key))
            s.exec(delete(Notification).where(col(Notification.sync_key) == key))
            s.exec(delete(Setting).where(col(Setting.name) == STATE_PREFIX + key))
            s.delete(sync)
        folder = self.i.paths.data / key
        if folder.exists():
            archive = self.i.paths.data / "deleted" / f"{key}-{utcnow():%Y%m%dT%H%M%S}"
            archive.parent.mkdir(exist_ok=True)
            folder.rename(archive)
        self.i._changed(key)

    def _one_side(self, key: str, project: str | None) -> SideCtx:
        sides = self.i.queries.sides_of(key, project)
        if len(sides) > 1:
            names = ", ".join(side.project for side in sides)
            raise FieldError("project", f"{key} is local with two sides ({names}): name one")
        return sides[0]
