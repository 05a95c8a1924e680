"""The embedded tracker: projects, issues, comments, attachments and a change log in the home's database."""

from __future__ import annotations

import json
import logging
import mimetypes
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, bindparam, event, func, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from engine.errors import BackboneError, TrackerOffline, TrackerRefused
from engine.store import fsutil, notify
from engine.store.database import Database
from engine.store.models import (
    Attachment,
    ChangeLog,
    Comment,
    Issue,
    IssueLink,
    Setting,
)
from engine.trackers.base import AttachmentInfo, Change, CommentInfo, IssueData, utcnow
from engine.trackers.embedded_schema import (
    ISSUE_TYPES,
    STATUSES,
    SUBTASK_TYPES,
    TRANSITIONS,
    EmbeddedSchema,
)

MAINTENANCE_SETTING = "tracker.maintenance"
KINDS_CACHE_SECONDS = 5.0
ONLINE_CACHE_SECONDS = 1.0
_ANNOUNCED = "embedded_tracker_announced"  # Session.info flag: the commit will announce changes

# Issues and the change log are read and written with statements built once here: the ORM would
# build, compile and track each one again (about ten times the cost per call), and an issue is
# never an ORM object in a session, so no session holds a stale copy of one.
_ISSUES = SQLModel.metadata.tables["issue"]
_SELECT_ISSUE = sa_select(_ISSUES).where(_ISSUES.c.id == bindparam("b_id"))
_UPDATE_ISSUE = update(_ISSUES).where(_ISSUES.c.id == bindparam("b_id"))  # SET: the other params
_INSERT_ISSUE = insert(_ISSUES)
_CHANGES = SQLModel.metadata.tables["changelog"]
_INSERT_CHANGE = insert(_CHANGES)
_CHANGES_SINCE = (
    sa_select(_CHANGES)
    .where(_CHANGES.c.project == bindparam("b_project"), _CHANGES.c.id > bindparam("b_cursor"))
    .order_by(_CHANGES.c.id)
    .limit(bindparam("b_limit"))
)


def workflow_path(current: str, target: str) -> list[str]:
    """The shortest chain of allowed transitions from `current` to `target` (empty if equal)."""
    previous: dict[str, str | None] = {current: None}
    queue = deque([current])
    while queue and target not in previous:
        status = queue.popleft()
        for nxt in TRANSITIONS.get(status, ()):
            if nxt not in previous:
                previous[nxt] = status
                queue.append(nxt)
    if target not in previous:
        raise TrackerRefused(f"no workflow path from {current!r} to {target!r}")
    path: list[str] = []
    node: str | None = target
    while node is not None and node != current:
        path.append(node)
        node = previous[node]
    return list(reversed(path))


class EmbeddedTracker(EmbeddedSchema):
    """The small tracker stored in the home's database; attachments live in `attachments/`.

    Issue writes check everything first and raise a refusal before their first statement, so
    inside a caller's transaction (the engine's apply batch) they join it without a savepoint:
    a refused write has written nothing."""

    def __init__(self, db: Database, attachment_dir: Path, notice_file: Path | None = None) -> None:
        """`notice_file`: touched after every commit that adds to the change log, so an engine
        in another process wakes (see `engine.store.notify`); None: no other process is told."""
        super().__init__(db)
        self.attachment_dir = attachment_dir
        self.notice_file = notice_file
        self._online_checked = -ONLINE_CACHE_SECONDS
        self._maintenance = False
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every commit that adds to the change log (in the committing
        thread; it must be quick); returns the function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # -- administration -------------------------------------------------------------------

    def set_maintenance(self, on: bool) -> None:
        """While on, every call raises `TrackerOffline` (an admin's maintenance window)."""
        with self.db.write() as s:
            s.merge(Setting(name=MAINTENANCE_SETTING, value="1" if on else "0"))
        self._online_checked = -ONLINE_CACHE_SECONDS

    def issue_key_to_id(self, key: str) -> str:
        with self.db.session() as s:
            issue_id = s.exec(select(Issue.id).where(Issue.key == key)).first()
            if issue_id is None:
                raise BackboneError(f"issue {key} does not exist")
            return str(issue_id)

    def issue_keys(self, issue_ids: list[str]) -> dict[str, str]:
        wanted = [int(i) for i in issue_ids if i.isdigit()]
        keys: dict[str, str] = {}
        with self.db.session() as s:
            for start in range(0, len(wanted), 500):  # within SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                for issue_id, key in s.exec(select(Issue.id, Issue.key).where(col(Issue.id).in_(chunk))):
                    keys[str(issue_id)] = key
        return keys

    def list_issues(self, project: str | None = None) -> list[IssueData]:
        with self.db.session() as s:
            query = sa_select(_ISSUES).order_by(_ISSUES.c.id)
            if project:
                query = query.where(_ISSUES.c.project == project)
            customs = self._custom_kinds(s, project) if project else {}
            return [self._snapshot(s, issue, customs, deep=False) for issue in s.connection().execute(query)]

    # -- Tracker protocol -----------------------------------------------------------------

    def is_online(self) -> bool:
        with self.db.session() as s:
            setting = s.get(Setting, MAINTENANCE_SETTING)
            return setting is None or setting.value != "1"

    def _check_online(self, s: Session) -> None:
        now = time.monotonic()
        if now - self._online_checked > ONLINE_CACHE_SECONDS:
            setting = s.get(Setting, MAINTENANCE_SETTING)
            self._maintenance = setting is not None and setting.value == "1"
            self._online_checked = now
        if self._maintenance:
            raise TrackerOffline("the embedded tracker is in maintenance mode")

    def changes_since(self, project: str, cursor: int, limit: int) -> list[Change]:
        with self.db.session() as s:
            self._check_online(s)
            rows = s.connection().execute(
                _CHANGES_SINCE, {"b_project": project, "b_cursor": cursor, "b_limit": limit}
            )
            return [
                Change(
                    id=row.id or 0,
                    issue_id=str(row.issue_id),
                    at=row.at,
                    author=row.author,
                    op=row.op,
                    raw=row.data,
                )
                for row in rows
            ]

    def newest_changes(self, after_id: int = 0) -> tuple[dict[str, int], int]:
        """Per project, its newest change-log id after `after_id`; and the newest id overall."""
        with self.db.session() as s:
            newest = int(s.exec(select(func.max(ChangeLog.id))).one() or 0)
            if newest <= after_id:
                return {}, newest
            rows = s.exec(
                select(ChangeLog.project, func.max(ChangeLog.id))
                .where(col(ChangeLog.id) > after_id)
                .group_by(col(ChangeLog.project))
            ).all()
            return {project: int(mark or 0) for project, mark in rows}, newest

    def projects_changed_since(self, after_id: int) -> tuple[set[str], int]:
        """Projects with change-log entries after `after_id`, and the newest entry's id."""
        with self.db.session() as s:
            newest = int(s.exec(select(func.max(ChangeLog.id))).one() or 0)
            if newest <= after_id:
                return set(), newest
            projects = s.exec(select(ChangeLog.project).where(col(ChangeLog.id) > after_id).distinct()).all()
            return set(projects), newest

    def read_issue(self, issue_id: str) -> IssueData | None:
        with self.db.session() as s:
            self._check_online(s)
            issue = self._row(s, issue_id)
            if issue is None:
                return None
            return self._snapshot(s, issue, self._custom_kinds(s, issue.project), deep=True)

    def read_attachment(self, attachment_id: str) -> tuple[AttachmentInfo, bytes]:
        with self.db.session() as s:
            self._check_online(s)
            row = s.get(Attachment, int(attachment_id))
            if row is None:
                raise TrackerRefused(f"attachment {attachment_id} does not exist")
            content = (self.attachment_dir / row.stored_name).read_bytes()
            return _attachment_info(row), content

    def find_by_marker(self, project: str, marker: str) -> str | None:
        with self.db.session() as s:
            self._check_online(s)
            found = s.exec(
                select(Issue.id).where(Issue.project == project, Issue.sync_marker == marker)
            ).first()
            return None if found is None else str(found)

    def create_issue(
        self,
        project: str,
        issue_type: str,
        fields: dict[str, Any],
        *,
        as_user: str,
        parent_id: str | None = None,
        status: str | None = None,
        marker: str | None = None,
    ) -> str:
        if issue_type not in ISSUE_TYPES:
            raise TrackerRefused(f"unknown issue type {issue_type!r}")
        if (issue_type in SUBTASK_TYPES) != (parent_id is not None):
            raise TrackerRefused(
                "a sub-task needs a parent" if parent_id is None else "only a sub-task has a parent"
            )
        with self.db.write(savepoint=False) as s:
            self._check_online(s)
            proj = self._project(s, project)
            customs = self._custom_kinds(s, project)
            values: dict[str, Any] = {
                "summary": "",
                "description": "",
                "priority": "Medium",
                "labels": [],
                "assignee": None,
                "reporter": as_user,
                "due_date": None,
            }
            custom: dict[str, Any] = {}
            for name, value in fields.items():
                if name in customs:
                    custom[name] = self._check_custom(s, project, name, customs[name], value)
                else:
                    values[name] = self._check_standard(name, value)
            if not str(values["summary"]).strip():
                raise TrackerRefused("summary must not be empty")
            if parent_id is not None:
                parent = self._row(s, parent_id)
                if parent is None or parent.project != project:
                    raise TrackerRefused(f"parent issue {parent_id} does not exist in {project}")
            if status is not None and status not in STATUSES:
                raise TrackerRefused(f"unknown status {status!r}")
            now = utcnow()
            key = f"{project}-{proj.next_number}"
            inserted = s.connection().execute(
                _INSERT_ISSUE,
                {
                    "key": key,
                    "project": project,
                    "issue_type": issue_type,
                    "summary": values["summary"],
                    "description": values["description"] or "",
                    "priority": values["priority"],
                    "labels": json.dumps(values["labels"]),
                    "assignee": values["assignee"],
                    "reporter": values["reporter"],
                    "due_date": values["due_date"],
                    "status": status or STATUSES[0],
                    "parent_id": int(parent_id) if parent_id is not None else None,
                    "custom": json.dumps(custom),
                    "sync_marker": marker,
                    "created": now,
                    "updated": now,
                },
            )
            new_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
            proj.next_number += 1
            s.add(proj)
            self._log(s, project, new_id, as_user, "create", {"key": key}, now)
            return str(new_id)

    def update_issue(self, issue_id: str, fields: dict[str, Any], *, as_user: str) -> list[str]:
        with self.db.write(savepoint=False) as s:
            self._check_online(s)
            issue = self._issue(s, issue_id)
            customs = self._custom_kinds(s, issue.project)
            custom = json.loads(issue.custom)
            changed: dict[str, list[Any]] = {}
            columns: dict[str, Any] = {}
            for name, value in fields.items():
                if name in customs:
                    value = self._check_custom(s, issue.project, name, customs[name], value)
                    old = custom.get(name)
                    if old != value:
                        custom[name] = value
                        changed[name] = [old, value]
                        columns["custom"] = json.dumps(custom)
                    continue
                value = self._check_standard(name, value)
                old = json.loads(issue.labels) if name == "labels" else getattr(issue, name)
                if name == "summary" and not str(value).strip():
                    raise TrackerRefused("summary must not be empty")
                if old != value:
                    changed[name] = [old, value]
                    columns[name] = json.dumps(value) if name == "labels" else value
            if not changed:
                return []
            now = utcnow()
            s.connection().execute(_UPDATE_ISSUE, {"b_id": issue.id, "updated": now, **columns})
            self._log(s, issue.project, issue.id, as_user, "update", {"fields": changed}, now)
            return list(changed)

    def add_comment(self, issue_id: str, body: str, *, as_user: str, marker: str | None = None) -> str:
        with self.db.write(savepoint=False) as s:
            self._check_online(s)
            issue = self._issue(s, issue_id)
            if marker:
                found = s.exec(
                    select(Comment).where(Comment.issue_id == issue.id, Comment.marker == marker)
                ).first()
                if found is not None:
                    return str(found.id)
            if not body.strip():
                raise TrackerRefused("a comment must not be empty")
            now = utcnow()
            comment = Comment(issue_id=issue.id, author=as_user, body=body, created=now, marker=marker)
            s.add(comment)
            s.flush()
            self._log(s, issue.project, issue.id, as_user, "comment", {"comment": comment.id}, now)
            return str(comment.id)

    def add_attachment(
        self,
        issue_id: str,
        filename: str,
        content: bytes,
        *,
        as_user: str,
        media_type: str | None = None,
        marker: str | None = None,
    ) -> str:
        if (
            not filename
            or "/" in filename
            or "\\" in filename
            or "\x00" in filename
            or filename in (".", "..")
        ):
            raise TrackerRefused(f"attachment name {filename!r} is not a plain file name")
        with self.db.write(savepoint=False) as s:
            self._check_online(s)
            issue = self._issue(s, issue_id)
            if marker:
                found = s.exec(
                    select(Attachment).where(Attachment.issue_id == issue.id, Attachment.marker == marker)
                ).first()
                if found is not None:
                    return str(found.id)
            stored_name = uuid.uuid4().hex
            fsutil.write_atomic(self.attachment_dir / stored_name, content)
            now = utcnow()
            row = Attachment(
                issue_id=issue.id,
                filename=filename,
                media_type=media_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
                size=len(content),
                stored_name=stored_name,
                author=as_user,
                created=now,
                marker=marker,
            )
            s.add(row)
            s.flush()
            self._log(s, issue.project, issue.id, as_user, "attach", {"attachment": row.id}, now)
            return str(row.id)

    def transition(self, issue_id: str, status: str, *, as_user: str) -> bool:
        """Move the issue to `status` along allowed transitions; False when already there."""
        if status not in STATUSES:
            raise TrackerRefused(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        with self.db.write(savepoint=False) as s:
            self._check_online(s)
            issue = self._issue(s, issue_id)
            path = workflow_path(issue.status, status)
            if not path:
                return False
            now = utcnow()
            s.connection().execute(_UPDATE_ISSUE, {"b_id": issue.id, "status": status, "updated": now})
            data = {"fields": {"status": [issue.status, status]}, "path": path}
            self._log(s, issue.project, issue.id, as_user, "transition", data, now)
            return True

    def add_link(
        self, source_id: str, target_id: str, kind: str, *, as_user: str, marker: str | None = None
    ) -> str:
        with self.db.write(savepoint=False) as s:
            self._check_online(s)
            source = self._issue(s, source_id)
            target = self._issue(s, target_id)
            existing = s.exec(
                select(IssueLink).where(
                    IssueLink.source_id == source.id,
                    IssueLink.target_id == target.id,
                    IssueLink.kind == kind,
                )
            ).first()
            if existing is not None:
                return str(existing.id)
            link = IssueLink(source_id=source.id, target_id=target.id, kind=kind, marker=marker)
            s.add(link)
            s.flush()
            data = {"link": link.id, "target": target.id, "kind": kind}
            self._log(s, source.project, source.id, as_user, "link", data, utcnow())
            return str(link.id)

    # -- helpers --------------------------------------------------------------------------

    def _row(self, s: Session, issue_id: str) -> Row[Any] | None:
        """The issue's row (columns as attributes), read through the session's connection."""
        try:
            key = int(issue_id)
        except ValueError:
            return None
        return s.connection().execute(_SELECT_ISSUE, {"b_id": key}).first()

    def _issue(self, s: Session, issue_id: str) -> Row[Any]:
        issue = self._row(s, issue_id)
        if issue is None:
            raise TrackerRefused(f"issue {issue_id} does not exist")
        return issue

    def _log(
        self,
        s: Session,
        project: str,
        issue_id: int,
        author: str,
        op: str,
        data: dict[str, Any],
        at: datetime,
    ) -> None:
        if not s.info.get(_ANNOUNCED):  # once per transaction, after its outermost commit
            s.info[_ANNOUNCED] = True
            event.listen(s, "after_commit", self._announce, once=True)
        s.connection().execute(
            _INSERT_CHANGE,
            {
                "project": project,
                "issue_id": issue_id,
                "at": at,
                "author": author,
                "op": op,
                "data": json.dumps(data),
            },
        )

    def _announce(self, s: Session) -> None:
        """After a commit that added to the change log: wake whoever listens, here and elsewhere."""
        s.info.pop(_ANNOUNCED, None)
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - a wake-up must never fail a tracker write
                logging.getLogger("backbone.tracker").exception("a change listener failed")
        if self.notice_file is not None:
            notify.touch(self.notice_file)

    def _snapshot(self, s: Session, issue: Row[Any], customs: dict[str, str], *, deep: bool) -> IssueData:
        fields: dict[str, Any] = {
            "summary": issue.summary,
            "description": issue.description,
            "priority": issue.priority,
            "labels": json.loads(issue.labels),
            "assignee": issue.assignee,
            "reporter": issue.reporter,
            "due_date": issue.due_date,
        }
        custom = json.loads(issue.custom)
        for name in customs:
            fields[name] = custom.get(name)
        data = IssueData(
            id=str(issue.id),
            key=issue.key,
            project=issue.project,
            issue_type=issue.issue_type,
            status=issue.status,
            fields=fields,
            parent_id=str(issue.parent_id) if issue.parent_id is not None else None,
            created=issue.created,
            updated=issue.updated,
            marker=issue.sync_marker,
        )
        if deep:
            data.comments = [
                CommentInfo(str(c.id), c.author, c.body, c.created)
                for c in s.exec(select(Comment).where(Comment.issue_id == issue.id).order_by(col(Comment.id)))
            ]
            data.attachments = [
                _attachment_info(a)
                for a in s.exec(
                    select(Attachment).where(Attachment.issue_id == issue.id).order_by(col(Attachment.id))
                )
            ]
            data.links = [
                (link.kind, str(link.target_id))
                for link in s.exec(select(IssueLink).where(IssueLink.source_id == issue.id))
            ]
        return data


def _attachment_info(row: Attachment) -> AttachmentInfo:
    return AttachmentInfo(str(row.id), row.filename, row.media_type, row.size, row.author, row.created)
