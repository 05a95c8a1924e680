"""The engine's vocabulary as typed values: synchronization statuses, draft states, folders, roles,
protocols, directions, message types and reason codes (SPEC sections 2-5). Each member equals its
text, as stored, sent and shown."""

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
    """A synchronization's role on this installation: requester, answerer, or both sides here."""

    PRIMARY = "primary"
    SECONDARY = "secondary"
    LOCAL = "local"


class Protocol(StrEnum):
    """How a synchronization's messages travel (its channel)."""

    FILE = "file"
    EMAIL = "email"
    LOCAL = "local"


class Direction(StrEnum):
    """Whether a stored message arrived (`in`) or is sent by this side (`out`)."""

    IN = "in"
    OUT = "out"


class MessageType(StrEnum):
    """An envelope's `type` (SPEC section 4)."""

    # control: pairing and configuration, outside any issue's sequence
    HANDSHAKE = "HANDSHAKE"
    DECLINE = "DECLINE"
    PING = "PING"
    CONFIG = "CONFIG"
    CONFIG_ACK = "CONFIG_ACK"
    CONFIG_DECLINE = "CONFIG_DECLINE"
    CONFIG_PROPOSAL = "CONFIG_PROPOSAL"  # review mode: the secondary proposes narrower directions
    CONFIG_ACCEPT = "CONFIG_ACCEPT"  # the primary accepts the proposal as a new version
    # issue changes: numbered per issue (epoch, seq)
    ISSUE = "ISSUE"
    RESYNC = "RESYNC"
    # delivery
    RESEND = "RESEND"
    ACK = "ACK"


class Reason(StrEnum):
    """The `UPPER_SNAKE` reason code of a message's move, as stored in its `reason_code`."""

    # the arrived file itself
    TOO_LARGE = "TOO_LARGE"
    EMPTY_FILE = "EMPTY_FILE"
    NOT_A_REGULAR_FILE = "NOT_A_REGULAR_FILE"
    NOT_A_MESSAGE_FILE = "NOT_A_MESSAGE_FILE"
    UNREADABLE = "UNREADABLE"
    ORPHAN_FILE = "ORPHAN_FILE"
    # the envelope and its body
    ENVELOPE_INVALID = "ENVELOPE_INVALID"
    FORMAT_UNSUPPORTED = "FORMAT_UNSUPPORTED"
    BODY_INVALID = "BODY_INVALID"
    # addressing, pairing and control messages
    WRONG_SYNCHRONIZATION = "WRONG_SYNCHRONIZATION"
    WRONG_RECIPIENT = "WRONG_RECIPIENT"
    WRONG_SENDER = "WRONG_SENDER"
    NOT_PAIRED = "NOT_PAIRED"
    UNEXPECTED_MESSAGE = "UNEXPECTED_MESSAGE"
    HANDSHAKE_REPLAYED = "HANDSHAKE_REPLAYED"
    BAD_PAIRING_SECRET = "BAD_PAIRING_SECRET"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    # keys, signatures and decryption
    KEY_INVALID = "KEY_INVALID"
    KEY_MULTIPLE = "KEY_MULTIPLE"
    KEY_MISMATCH = "KEY_MISMATCH"
    KEY_REVOKED = "KEY_REVOKED"
    KEY_EXPIRED = "KEY_EXPIRED"
    SIG_MISSING = "SIG_MISSING"
    SIG_MULTIPLE = "SIG_MULTIPLE"
    SIG_BAD = "SIG_BAD"
    SIG_WRONG_KEY = "SIG_WRONG_KEY"
    DECRYPT_FAILED = "DECRYPT_FAILED"
    # order within an issue's sequence, and what a message waits for
    DUPLICATE = "DUPLICATE"
    OLD_EPOCH = "OLD_EPOCH"
    SEQ_GAP = "SEQ_GAP"
    SEQ_REUSED = "SEQ_REUSED"
    HELD_BEHIND_ERROR = "HELD_BEHIND_ERROR"
    CONFIG_PENDING = "CONFIG_PENDING"
    CONFIG_UNKNOWN = "CONFIG_UNKNOWN"
    CONFIG_OUTDATED = "CONFIG_OUTDATED"  # a CONFIG not newer than the version known here
    CONFIG_VERSION_UNKNOWN = "CONFIG_VERSION_UNKNOWN"  # a CONFIG_ACK for a version never published
    PARENT_MISSING = "PARENT_MISSING"
    # applying a change to the tracker
    ISSUE_NOT_SYNCED = "ISSUE_NOT_SYNCED"
    UNKNOWN_OPERATION = "UNKNOWN_OPERATION"
    UNKNOWN_ISSUE_TYPE = "UNKNOWN_ISSUE_TYPE"
    UNKNOWN_STATUS = "UNKNOWN_STATUS"
    UNKNOWN_MAPPING = "UNKNOWN_MAPPING"
    VALUE_NOT_MAPPED = "VALUE_NOT_MAPPED"
    ATTACHMENT_NAME_UNSAFE = "ATTACHMENT_NAME_UNSAFE"
    ATTACHMENT_SIZE_MISMATCH = "ATTACHMENT_SIZE_MISMATCH"
    ATTACHMENT_TOO_LARGE = "ATTACHMENT_TOO_LARGE"
    TRACKER_OFFLINE = "TRACKER_OFFLINE"
    TRACKER_REFUSED = "TRACKER_REFUSED"
    TRACKER_AUTH_FAILED = "TRACKER_AUTH_FAILED"
    ISSUE_DELETED = "ISSUE_DELETED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # processed without applying, and an administrator's actions
    IGNORED = "IGNORED"
    SKIPPED = "SKIPPED"
    RETRY = "RETRY"
    # sending
    EXCHANGE_NOT_WRITABLE = "EXCHANGE_NOT_WRITABLE"
    ENCRYPTION_FAILED = "ENCRYPTION_FAILED"
    MAIL_FAILED = "MAIL_FAILED"
    MAIL_SEND_FAILED = "MAIL_SEND_FAILED"
    # what Analyze finds (engine.service.analyze)
    CHANNEL_FAILED = "CHANNEL_FAILED"
    CHANNEL_WORKS = "CHANNEL_WORKS"
    EXCHANGE_MISSING = "EXCHANGE_MISSING"
    LINK_BROKEN = "LINK_BROKEN"
    PERMISSION_MISSING = "PERMISSION_MISSING"
    PERMISSIONS_UNCHECKED = "PERMISSIONS_UNCHECKED"
    CONFIG_MISSING = "CONFIG_MISSING"
    CONFIG_UNBOUND = "CONFIG_UNBOUND"
    PROPOSAL_PENDING = "PROPOSAL_PENDING"
    KEY_EXPIRING = "KEY_EXPIRING"
    NOT_ACKNOWLEDGED = "NOT_ACKNOWLEDGED"
    STOPPED_BY_BUG = "STOPPED_BY_BUG"
    SYNC_STOPPED = "SYNC_STOPPED"
    SYNC_NOT_PAIRED = "SYNC_NOT_PAIRED"
    RESYNC_REQUESTED = "RESYNC_REQUESTED"
    RESEND_REQUESTED = "RESEND_REQUESTED"  # the partner asked for a SENT message again


# as plain text collections: screens and queries look values up by the text they read back
ALL_STATUSES: tuple[str, ...] = tuple(SyncStatus)
#: the pairing is complete: configuration messages are taken
PAIRED_STATUSES: tuple[str, ...] = (
    SyncStatus.STOPPED,
    SyncStatus.RUNNING,
    SyncStatus.WAITING_FOR_PARTNER,
    SyncStatus.UPDATE_REQUIRED,
)
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
