"""The `Tracker` protocol the engine syncs through, and the plain data a tracker hands out.

A tracker is read from a cursor: `changes_since(project, cursor, limit)` returns the changes after
`cursor` in order, and each `Change.id` is the next cursor. Writes that create something take a
`marker` (the synchronization's pair or message id) and `find_by_marker` finds it again, so a write
repeated after a crash is recognised instead of made twice. `TrackerOffline` means "try again
later" (nothing is lost), `TrackerRefused` means the tracker said no to this write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol, runtime_checkable


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Change:
    """One entry of the tracker's change log; `data` is decoded from `raw` (JSON) when first
    used (the engine skips its own writes, most of a busy log, without decoding them)."""

    id: int
    issue_id: str
    at: datetime
    author: str
    op: str
    raw: str = "{}"

    @cached_property
    def data(self) -> dict[str, Any]:
        """The change's details (fields with old and new values, a comment or attachment id)."""
        decoded = json.loads(self.raw)
        return decoded if isinstance(decoded, dict) else {}


@dataclass(frozen=True)
class AttachmentInfo:
    id: str
    filename: str
    media_type: str
    size: int
    author: str
    created: datetime


@dataclass(frozen=True)
class CommentInfo:
    id: str
    author: str
    body: str
    created: datetime


@dataclass
class IssueData:
    """A plain snapshot of one issue, detached from the database."""

    id: str
    key: str
    project: str
    issue_type: str
    status: str
    fields: dict[str, Any]
    parent_id: str | None
    created: datetime
    updated: datetime
    marker: str | None = None
    comments: list[CommentInfo] = field(default_factory=list)
    attachments: list[AttachmentInfo] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (kind, target issue id)


class Tracker(Protocol):
    """What the engine needs from an issue tracker: the embedded one, Jira, Redmine.

    Errors: `TrackerOffline` (unreachable, 5xx, 429 after its retries: try again later),
    `TrackerAuthFailed` (401/403: nothing more is sent until the credentials are fixed),
    `TrackerRefused` (the tracker said no to this one write: the message goes to ERROR with its
    answer). Field names are the tracker's own: the standard `summary`, `description`,
    `priority`, `labels`, `assignee`, `reporter`, `due_date` and `status`, and custom fields by
    their names. A remote tracker reads its changes through a `mirror.ChangeMirror`."""

    def is_online(self) -> bool:
        """Whether the tracker can be reached now."""

    def changes_since(self, project: str, cursor: int, limit: int) -> list[Change]:
        """Up to `limit` changes of `project` after `cursor`, in order; raises TrackerOffline."""

    def read_issue(self, issue_id: str) -> IssueData | None:
        """A snapshot of one issue, or None when it does not exist (deleted)."""

    def read_attachment(self, attachment_id: str) -> tuple[AttachmentInfo, bytes]:
        """An attachment's metadata and content."""

    def find_by_marker(self, project: str, marker: str) -> str | None:
        """The issue created with `marker` (a pair id), so a repeated create finds it."""

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
        """Create an issue as `as_user`, carrying `marker`; returns its id; raises TrackerRefused."""

    def update_issue(self, issue_id: str, fields: dict[str, Any], *, as_user: str) -> list[str]:
        """Write fields (compare first: unchanged ones are not written); returns the changed names."""

    def add_comment(self, issue_id: str, body: str, *, as_user: str, marker: str | None = None) -> str:
        """Add a comment unless one with `marker` (a message id) exists; returns its id."""

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
        """Attach a file unless one with `marker` exists; returns its id."""

    def transition(self, issue_id: str, status: str, *, as_user: str) -> bool:
        """Move the issue to `status` along the workflow; False if it is there already."""

    def add_link(
        self, source_id: str, target_id: str, kind: str, *, as_user: str, marker: str | None = None
    ) -> str:
        """Link two issues unless a link with `marker` exists; returns its id."""

    def issue_types(self, project: str) -> list[str]:
        """The issue type names of `project`."""

    def statuses(self, project: str) -> list[str]:
        """The status names of `project`."""

    def field_names(self, project: str) -> dict[str, str]:
        """Field name -> kind (text, number, select, ...) of `project`."""

    def field_options(self, project: str, name: str) -> list[str]:
        """The values a select field of `project` allows ([] for a field of another kind)."""

    def issue_keys(self, issue_ids: list[str]) -> dict[str, str]:
        """Issue id -> its key (e.g. ACME-12) for those of `issue_ids` that exist."""

    def issue_key_to_id(self, key: str) -> str:
        """The id of the issue with this key; `BackboneError` naming it when there is none."""

    def projects(self) -> list[tuple[str, str]]:
        """(key, name) of every project the tracker shows us."""

    def user_emails(self) -> dict[str, str]:
        """User name -> e-mail address of the tracker's users (for user fields matched by e-mail;
        a user without an address is left out)."""


@runtime_checkable
class ChecksPermissions(Protocol):
    """A tracker whose users have permissions (Jira, Redmine): it can say which the sync user lacks.

    Optional: a tracker without permissions (the embedded one) does not implement it, and
    Analyze says so instead of guessing."""

    def signed_in_as(self) -> str:
        """The login the credentials belong to; raises TrackerAuthFailed when they are refused."""

    def missing_permissions(self, project: str, user: str) -> list[str]:
        """What `user` may not do in `project` that synchronizing needs (e.g. "edit issues"),
        each in words; [] when nothing is missing; raises TrackerOffline."""


@runtime_checkable
class WritesAsAccount(Protocol):
    """A tracker that writes as the account it signs in with, whatever `as_user` says (Jira,
    Redmine): changes by that account are the synchronization's own writes (echoes), whatever
    the synchronization user is called."""

    @property
    def account_author(self) -> str:
        """The author its changes name for that account (known without asking the tracker)."""
