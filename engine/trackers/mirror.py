"""The changes read from a remote tracker, kept in order in the home's database.

A remote tracker (Jira, Redmine) is polled for what changed since its own cursor (a time, a page
token); each change found is recorded once under a local id (its `remote_key` makes a change read
twice, as overlapping time windows do, a duplicate that is dropped). The engine then reads changes
by that local id exactly as it reads the embedded change log: `Tracker.changes_since(project,
cursor, limit)` is `ChangeMirror.since`, and the cursor survives restarts on both levels."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, select

from engine.store.database import Database
from engine.store.models import RemoteCursor
from engine.trackers.base import Change, utcnow

_CHANGES = SQLModel.metadata.tables["remotechange"]
_SINCE = (
    sa_select(_CHANGES)
    .where(
        _CHANGES.c.tracker == bindparam("b_tracker"),
        _CHANGES.c.project == bindparam("b_project"),
        _CHANGES.c.id > bindparam("b_cursor"),
    )
    .order_by(_CHANGES.c.id)
    .limit(bindparam("b_limit"))
)


@dataclass(frozen=True)
class RemoteChangeIn:
    """A change as a connector found it: the same fields the embedded change log has."""

    remote_key: str  # unique within the tracker, e.g. "journal:123", "create:10042", "changelog:9001"
    issue_id: str
    at: datetime
    author: str  # the user who made it (the sync user's own writes are echoes)
    op: str  # create | update | comment | attach | transition | link
    data: dict[str, Any] = field(default_factory=dict)  # as the embedded log: {"fields": {name: [old, new]}}


class ChangeMirror:
    """One remote tracker's changes in local order, and where reading each project stopped."""

    def __init__(self, db: Database, tracker: str) -> None:
        self.db = db
        self.tracker = tracker

    def record(
        self, project: str, changes: list[RemoteChangeIn], cursor: dict[str, Any] | None = None
    ) -> int:
        """Keep the new ones of `changes` (in the order given) and, in the same commit, the
        project's new cursor; how many were new."""
        added = 0
        with self.db.write() as s:
            known = (
                {
                    key
                    for (key,) in s.connection().execute(
                        sa_select(_CHANGES.c.remote_key).where(
                            _CHANGES.c.tracker == self.tracker,
                            _CHANGES.c.remote_key.in_([change.remote_key for change in changes]),
                        )
                    )
                }
                if changes
                else set()
            )
            rows = []
            for change in changes:
                if change.remote_key in known:
                    continue
                known.add(change.remote_key)
                rows.append(
                    {
                        "tracker": self.tracker,
                        "project": project,
                        "remote_key": change.remote_key,
                        "issue_id": change.issue_id,
                        "at": change.at,
                        "author": change.author,
                        "op": change.op,
                        "data": json.dumps(change.data),
                    }
                )
            if rows:
                s.connection().execute(insert(_CHANGES), rows)
                added = len(rows)
            if cursor is not None:
                row = s.exec(
                    select(RemoteCursor).where(
                        RemoteCursor.tracker == self.tracker, RemoteCursor.project == project
                    )
                ).first()
                if row is None:
                    row = RemoteCursor(tracker=self.tracker, project=project)
                row.cursor, row.polled = json.dumps(cursor), utcnow()
                s.add(row)
        return added

    def cursor(self, project: str) -> dict[str, Any]:
        """Where reading `project` stopped ({} : never read)."""
        with self.db.session() as s:
            row = s.exec(
                select(RemoteCursor).where(
                    RemoteCursor.tracker == self.tracker, RemoteCursor.project == project
                )
            ).first()
        if row is None:
            return {}
        try:
            data = json.loads(row.cursor)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def since(self, project: str, cursor: int, limit: int) -> list[Change]:
        """Up to `limit` recorded changes of `project` after local id `cursor`, in order."""
        with self.db.session() as s:
            rows = s.connection().execute(
                _SINCE,
                {"b_tracker": self.tracker, "b_project": project, "b_cursor": cursor, "b_limit": limit},
            )
            return [
                Change(
                    id=row.id, issue_id=row.issue_id, at=row.at, author=row.author, op=row.op, raw=row.data
                )
                for row in rows
            ]
