"""The engine's vocabulary as typed values: synchronization statuses, draft states, folders, roles,
protocols and directions (SPEC sections 2-5). Each member equals its text, as stored and shown."""

from __future__ import annotations

from enum import StrEnum


class SyncStatus(StrEnum):
    """Where a synchronization stands (SPEC section 3)."""

    REQUEST_SENT = "REQUEST SENT"
    INCOMING_REQUEST = "INCOMING REQUEST"
    HANDSHAKE = "HANDSHAKE"
    DECLINED = "DECLINED"
    STOPPED = "STOPPED"
    RUNNING = "RUNNING"
    WAITING_FOR_PARTNER = "WAITING FOR PARTNER"
    UPDATE_REQUIRED = "UPDATE REQUIRED"


class DraftState(StrEnum):
    """A configuration draft's state in review mode (SPEC section 3)."""

    NONE = "N/A"
    SENT = "DRAFT SENT"
    RECEIVED = "DRAFT RECEIVED"
    PUBLISHED = "DRAFT PUBLISHED"
    DECLINED = "DECLINED"


class Folder(StrEnum):
    """The message folders of one synchronization side (SPEC section 5)."""

    RECEIVE = "RECEIVE"
    PROCESSED = "PROCESSED"
    ERROR = "ERROR"
    MISSING = "MISSING"
    WAITING = "WAITING"
    OFFLINE = "OFFLINE"
    UNKNOWN = "UNKNOWN"
    REJECTED = "REJECTED"
    OUTDATED = "OUTDATED"
    SEND = "SEND"
    SENT = "SENT"
    SEND_ERROR = "SEND_ERROR"


class Role(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    LOCAL = "local"


class Protocol(StrEnum):
    FILE = "file"
    EMAIL = "email"
    LOCAL = "local"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


# as plain text collections: screens and queries look values up by the text they read back
ALL_STATUSES: tuple[str, ...] = tuple(SyncStatus)
DRAFT_STATES: tuple[str, ...] = tuple(DraftState)
ALL_FOLDERS: tuple[str, ...] = tuple(Folder)
HOLD_FOLDERS: frozenset[str] = frozenset({Folder.ERROR, Folder.MISSING})  # kept per issue, in sub-folders
ERROR_FOLDERS: tuple[str, ...] = (Folder.ERROR, Folder.REJECTED, Folder.SEND_ERROR)  # counted as errors
PENDING_FOLDERS: tuple[str, ...] = (
    Folder.RECEIVE,
    Folder.WAITING,
    Folder.MISSING,
    Folder.OFFLINE,
    Folder.SEND,
)
