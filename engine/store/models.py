"""Database tables: the embedded tracker and the synchronization state (portable SQL)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from engine.vocab import DraftState

# --- embedded tracker -------------------------------------------------------------------------


class Project(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=32)
    name: str
    next_number: int = 1


class TrackerUser(SQLModel, table=True):
    name: str = Field(primary_key=True, max_length=64)
    email: str = Field(default="", index=True)


class CustomField(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("project", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(index=True)
    name: str
    kind: str  # text | number | select
    options: str = "[]"  # JSON list of allowed values for select fields


class Issue(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    project: str = Field(index=True)
    issue_type: str
    summary: str
    description: str = ""
    priority: str = "Medium"
    labels: str = "[]"  # JSON list
    assignee: str | None = None
    reporter: str
    due_date: str | None = None  # ISO date
    status: str = "To Do"
    parent_id: int | None = Field(default=None, index=True)
    custom: str = "{}"  # JSON object: custom field name -> value
    sync_marker: str | None = Field(default=None, index=True)
    created: datetime
    updated: datetime


class Comment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(index=True)
    author: str
    body: str
    created: datetime
    marker: str | None = Field(default=None, index=True)


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(index=True)
    filename: str
    media_type: str
    size: int
    stored_name: str
    author: str
    created: datetime
    marker: str | None = Field(default=None, index=True)


class IssueLink(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(index=True)
    target_id: int
    kind: str
    marker: str | None = Field(default=None, index=True)


class ChangeLog(SQLModel, table=True):
    """Append-only: every tracker write adds one row; the engine reads it from a cursor."""

    __table_args__ = (Index("ix_changelog_project_id", "project", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    project: str
    issue_id: int
    at: datetime
    author: str
    op: str  # create | update | comment | attach | transition | link
    data: str = "{}"  # JSON: fields {name: [old, new]}, or the created object's id


class Setting(SQLModel, table=True):
    name: str = Field(primary_key=True)
    value: str


# --- synchronization state --------------------------------------------------------------------


class Synchronization(SQLModel, table=True):
    key: str = Field(primary_key=True)
    name: str
    description: str = ""
    role: str  # primary | secondary | local
    protocol: str  # file | email | local
    sync_user: str
    review: bool = False
    status: str
    status_detail: str = ""
    draft_state: str = DraftState.NONE
    encryption: bool = False
    created: datetime
    last_activity: datetime | None = None
    settings: str = "{}"  # JSON: the advanced settings changed from their defaults (domain.settings)


class SyncSide(SQLModel, table=True):
    """This installation's end of a synchronization (a `local` one has two)."""

    id: int | None = Field(default=None, primary_key=True)
    sync_key: str = Field(index=True)
    project: str
    folder: str  # e.g. ACME-1: unique per synchronization and project
    role: str  # primary | secondary
    endpoint: str  # this side's id inside envelopes
    partner_endpoint: str = ""
    partner_project: str = ""
    exchange: str | None = None  # file protocol: folder with SEND and RECEIVE
    cursor: int = 0  # last change-log id handled
    config_version: int = 0  # the version in force (0: none yet)
    config_text: str = ""  # this side's mapping file of the version in force
    terms_json: str = ""  # the shared terms of the version in force (JSON)
    draft_text: str = ""  # the draft beside it ("" : none, export shows the version in force)
    pending_version: int = 0  # published (primary) or received (secondary), not yet in force
    last_published: int = 0  # primary: the newest version it sent (a declined one is not reused)
    pending_text: str = ""  # primary: the mapping file it published
    pending_terms: str = ""  # the terms of the pending version (JSON)
    pending_message: str = ""  # the primary's message with it
    start_when_in_force: bool = False  # run once the pending version is in force
    proposal: str = ""  # review mode: the secondary's proposed binding, sent or received (JSON)
    pairing_secret: str = ""
    own_fingerprint: str = ""
    partner_fingerprint: str = ""  # pinned at pairing; every later message must be signed by it
    own_key_expires: datetime | None = None
    partner_key_expires: datetime | None = None
    mail_settings: str = ""  # email protocol: JSON with the passwords (the database is 0600)
    channel_error: str = ""  # the last receive failure, cleared by the next success
    channel_error_since: datetime | None = None  # when the failures began (partner unreachable)
    tracker: str = "embedded"  # the tracker (TrackerAccount.name) its project lives in
    failure: str = ""  # JSON: the tracker change that stopped this side (a bug it trips), until skipped


class IssuePair(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("side_id", "pair_id"),
        Index("ix_pair_side_issue", "side_id", "issue_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    side_id: int
    pair_id: str
    issue_id: str | None = None  # the local tracker's id, once the issue exists here
    out_epoch: int = 1
    out_seq: int = 0
    in_epoch: int = 0
    in_seq: int = 0
    held: bool = False  # an ERROR holds this issue's later messages
    ignored: bool = False  # an administrator chose to ignore the partner's changes (deleted here)
    acked_epoch: int = 0  # receiver: the (epoch, seq) last acknowledged to the partner
    acked_seq: int = 0
    resend_at: float = 0.0  # receiver: when a resend of this issue's gap was last asked for


class FieldState(SQLModel, table=True):
    """The last value both sides agreed on per mapped field, with its change time."""

    __table_args__ = (UniqueConstraint("side_id", "pair_id", "mapping_id"),)
    id: int | None = Field(default=None, primary_key=True)
    side_id: int
    pair_id: str
    mapping_id: str
    value: str  # JSON
    at: str  # ISO-8601 change time
    origin: str  # local | partner
    source: str = ""  # provenance: "in E:S" or "out E:S", the message (epoch:seq) that set it


class Message(SQLModel, table=True):
    """One message file; the database is the truth about where it is and why."""

    __table_args__ = (
        Index("ix_message_side_folder", "side_id", "folder", "id"),
        Index("ix_message_folder_side", "folder", "side_id"),
        Index("ix_message_order", "side_id", "direction", "pair_id", "epoch", "seq"),
        Index("ix_message_uuid", "side_id", "uuid"),
    )
    id: int | None = Field(default=None, primary_key=True)
    side_id: int
    direction: str  # in | out
    uuid: str = ""
    type: str = ""
    pair_id: str | None = None
    epoch: int = 0
    seq: int = 0
    folder: str
    hold: str | None = None  # the issue folder under ERROR/ or MISSING/
    file_name: str
    original_name: str | None = None
    size: int = 0
    reason_code: str = ""
    reason_text: str = ""
    payload: str | None = None  # the envelope JSON (for incoming: once opened)
    attempts: int = 0
    next_attempt: float = 0.0
    acked: bool = False  # outgoing: the partner acknowledged it (retention may delete it)
    created: datetime
    updated: datetime


class History(SQLModel, table=True):
    """What happened to an issue pair that a person may want to look at: conflicts, skips."""

    id: int | None = Field(default=None, primary_key=True)
    side_id: int = Field(index=True)
    pair_id: str | None = None
    at: datetime
    kind: str
    text: str


class ConfigVersion(SQLModel, table=True):
    """A configuration version that was put in force on one side (the history)."""

    id: int | None = Field(default=None, primary_key=True)
    side_id: int = Field(index=True)
    version: int
    terms_json: str
    config_text: str
    message: str
    author: str  # primary | secondary: who published it
    narrowed: str  # JSON: mapping id -> the direction the secondary narrowed it to
    at: datetime


class TrackerAccount(SQLModel, table=True):
    """A Jira or Redmine the installation syncs with (the embedded tracker needs no row)."""

    name: str = Field(primary_key=True, max_length=64)
    kind: str  # jira | redmine
    url: str
    api_version: int = 0  # Jira: 2 (Server/Data Center) or 3 (Cloud); Redmine: 0
    auth: str  # basic | token | pat (Jira); apikey (Redmine)
    user: str = ""
    secret: str = ""  # the password, API token or key (the database is 0600; never printed)
    options: str = "{}"  # JSON: poll_interval and other connector settings
    created: datetime
    # the tracker refused the credentials (401/403): what it said; nothing is sent to it until
    # the account is updated or a `tracker test` passes ("" : no problem)
    problem: str = ""
    problem_since: datetime | None = None


class RemoteChange(SQLModel, table=True):
    """A change read from a remote tracker, kept in order under a local id (the engine's cursor)."""

    __table_args__ = (
        UniqueConstraint("tracker", "remote_key"),
        Index("ix_remotechange_tracker_project_id", "tracker", "project", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    tracker: str
    project: str
    remote_key: str  # what makes it unique there (e.g. "journal:123"): a change read twice is kept once
    issue_id: str
    at: datetime
    author: str
    op: str  # create | update | comment | attach | transition | link (as the embedded change log)
    data: str = "{}"


class RemoteCursor(SQLModel, table=True):
    """Where reading a remote tracker's project stopped (its own terms: a time, a page token)."""

    __table_args__ = (UniqueConstraint("tracker", "project"),)
    id: int | None = Field(default=None, primary_key=True)
    tracker: str
    project: str
    cursor: str = "{}"  # JSON, the connector's own
    polled: datetime | None = None


class ApiToken(SQLModel, table=True):
    """A bearer token of the REST API, stored as its SHA-256 digest only."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    digest: str = Field(unique=True)
    created: datetime
    last_used: datetime | None = None
    revoked: datetime | None = None


class NotifyRecipient(SQLModel, table=True):
    """An address told about a synchronization's failures, drafts and expiring keys."""

    __table_args__ = (UniqueConstraint("sync_key", "address"),)
    id: int | None = Field(default=None, primary_key=True)
    sync_key: str = Field(index=True)
    address: str


class Notification(SQLModel, table=True):
    """A notification mail that went out (at most one per synchronization and kind per hour)."""

    __table_args__ = (Index("ix_notification_sync_kind", "sync_key", "kind", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    sync_key: str
    kind: str
    at: datetime
    recipients: str  # JSON list
    text: str


class Installation(SQLModel, table=True):
    id: str = Field(primary_key=True)
    name: str
    created: datetime
