"""Configuration messages (SPEC section 4): the primary's `CONFIG`, the secondary's `CONFIG_ACK`
and, in review mode, its `CONFIG_DECLINE`.

`CONFIG` (primary -> secondary) carries version N+1 of the terms and the primary's message; the
secondary keeps it pending (`UPDATE REQUIRED`) until its admin has bound it and published.
`CONFIG_ACK` (secondary -> primary) says the secondary has version N+1 in force, and what it
narrowed; the primary then puts the version it published in force too.

In review mode the secondary's later narrowing of what it shares is a draft too: its
`CONFIG_PROPOSAL` (version N in force, the directions it wants) waits on the primary as
`DRAFT RECEIVED`; the primary's `CONFIG_ACCEPT` makes it version N+1 on both sides (the same
terms, the new directions), its `CONFIG_DECLINE` leaves version N and the secondary's draft.
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from engine.config.terms import WITHIN, Terms
from engine.domain.envelope import Envelope
from engine.domain.side import SideCtx
from engine.errors import RejectedError
from engine.pipeline.records import Outgoing
from engine.store.models import ConfigVersion, Synchronization, SyncSide
from engine.trackers.base import utcnow
from engine.vocab import PAIRED_STATUSES, DraftState, MessageType, Reason, Role, SyncStatus

MAX_MESSAGE_CHARS = 4000
CONFIG_TYPES = frozenset(
    {
        MessageType.CONFIG,
        MessageType.CONFIG_ACK,
        MessageType.CONFIG_DECLINE,
        MessageType.CONFIG_PROPOSAL,
        MessageType.CONFIG_ACCEPT,
    }
)


def config_body(version: int, message: str, terms: Terms) -> dict[str, Any]:
    """The body of a `CONFIG` message."""
    return {"version": version, "message": message, "terms": terms.to_body()}


def decline_body(version: int, message: str) -> dict[str, Any]:
    """The body of a `CONFIG_DECLINE` message (review mode)."""
    return {"version": version, "message": message}


def ack_body(version: int, narrowed: dict[str, str]) -> dict[str, Any]:
    """The body of a `CONFIG_ACK` message."""
    return {"version": version, "narrowed": dict(narrowed)}


def proposal_body(version: int, message: str, narrowed: dict[str, str]) -> dict[str, Any]:
    """The body of a `CONFIG_PROPOSAL`: the version in force it narrows, why, and how."""
    return {"version": version, "message": message, "narrowed": dict(narrowed)}


def accept_body(version: int, base: int) -> dict[str, Any]:
    """The body of a `CONFIG_ACCEPT`: the new version, and the proposal's version it accepts."""
    return {"version": version, "base": base}


def keep_version(
    s: Session, row: SyncSide, version: int, *, author: str, message: str, narrowed: dict[str, str]
) -> None:
    """Record `version` (the terms and mapping file now in `row`) in the history."""
    s.add(
        ConfigVersion(
            side_id=row.id or 0,
            version=version,
            terms_json=row.terms_json,
            config_text=row.config_text,
            message=message,
            author=author,
            narrowed=json.dumps(narrowed, sort_keys=True),
            at=utcnow(),
        )
    )


def put_in_force(s: Session, row: SyncSide, *, author: str, narrowed: dict[str, str]) -> None:
    """Make the pending version the one in force, and keep it in the history."""
    row.config_text = row.pending_text
    row.config_version = row.pending_version
    row.terms_json = row.pending_terms
    keep_version(s, row, row.pending_version, author=author, message=row.pending_message, narrowed=narrowed)
    row.pending_version, row.pending_text, row.pending_terms = 0, "", ""
    row.pending_message, row.draft_text = "", ""
    s.add(row)


def handle_config(s: Session, side: SideCtx, envelope: Envelope) -> list[Outgoing]:
    """Take a configuration message from the partner; anything out of turn is `REJECTED`."""
    sync = s.get(Synchronization, side.sync_key)
    row = s.get(SyncSide, side.id)
    assert sync is not None and row is not None
    if sync.status not in PAIRED_STATUSES:
        raise RejectedError(Reason.NOT_PAIRED, f"a {envelope.type} before the pairing is complete")
    version = _version(envelope.body)
    if envelope.type == MessageType.CONFIG_PROPOSAL:
        _take_proposal(s, side, sync, row, envelope, version)
        return []
    if envelope.type == MessageType.CONFIG_ACCEPT:
        _take_acceptance(s, side, sync, row, envelope, version)
        return []
    if envelope.type == MessageType.CONFIG_DECLINE and side.role == Role.SECONDARY:
        _take_proposal_declined(s, sync, row, envelope, version)
        return []
    if envelope.type == MessageType.CONFIG:
        if side.role != Role.SECONDARY:
            raise RejectedError(
                Reason.UNEXPECTED_MESSAGE, "a CONFIG from the secondary: only the primary defines mappings"
            )
        if version <= max(row.config_version, row.pending_version):
            raise RejectedError(
                Reason.CONFIG_OUTDATED,
                f"CONFIG version {version} is not newer than version "
                f"{max(row.config_version, row.pending_version)} known here",
            )
        message = _message(envelope)
        terms = Terms.from_body(envelope.body.get("terms"))
        row.pending_version, row.pending_terms = version, json.dumps(terms.to_body(), sort_keys=True)
        row.pending_message, row.pending_text, row.draft_text = message, "", ""
        row.proposal = ""  # a proposal against the older version is superseded: bind this one
        s.add(row)
        sync.status = SyncStatus.UPDATE_REQUIRED
        sync.status_detail = f"version {version} from the partner: {message.splitlines()[0][:200]}"
        if sync.review:
            sync.draft_state = DraftState.RECEIVED
        s.add(sync)
        return []
    if envelope.type == MessageType.CONFIG_DECLINE:
        if side.role != Role.PRIMARY:
            raise RejectedError(
                Reason.UNEXPECTED_MESSAGE, "a CONFIG_DECLINE for the secondary: only a primary publishes"
            )
        if version != row.pending_version or not row.pending_version:
            raise RejectedError(
                Reason.CONFIG_VERSION_UNKNOWN,
                f"a CONFIG_DECLINE for version {version}, which is not pending here",
            )
        message = _message(envelope)
        row.pending_version, row.pending_text, row.pending_terms, row.pending_message = 0, "", "", ""
        row.start_when_in_force = False
        s.add(row)  # the draft stays: edit it and publish again
        sync.status = SyncStatus.STOPPED
        sync.draft_state = DraftState.DECLINED
        sync.status_detail = f"the partner declined version {version}: {message.splitlines()[0][:200]}"
        s.add(sync)
        return []
    if side.role != Role.PRIMARY:
        raise RejectedError(
            Reason.UNEXPECTED_MESSAGE, "a CONFIG_ACK for the secondary: only a primary publishes"
        )
    if row.config_version < version < row.pending_version:
        return []  # an acknowledgement of a version this side has superseded: the newer one follows
    if version != row.pending_version or not row.pending_version:
        raise RejectedError(
            Reason.CONFIG_VERSION_UNKNOWN,
            f"a CONFIG_ACK for version {version}, which was never published here"
            + (f" (version {row.pending_version} waits for one)" if row.pending_version else ""),
        )
    narrowed = _narrowed(envelope)
    start = row.start_when_in_force
    row.start_when_in_force = False
    put_in_force(s, row, author=Role.PRIMARY, narrowed=narrowed)
    sync.status = SyncStatus.RUNNING if start else SyncStatus.STOPPED
    if sync.review:
        sync.draft_state = DraftState.PUBLISHED
    told = ", ".join(f"{k} {v}" for k, v in sorted(narrowed.items()))
    sync.status_detail = f"version {version} in force on both sides" + (
        f"; the partner narrowed: {told}" if told else ""
    )
    s.add(sync)
    return []


def _take_proposal(
    s: Session, side: SideCtx, sync: Synchronization, row: SyncSide, envelope: Envelope, version: int
) -> None:
    """Primary, review mode: the secondary proposes narrower directions within version `version`."""
    if side.role != Role.PRIMARY:
        raise RejectedError(
            Reason.UNEXPECTED_MESSAGE, "a CONFIG_PROPOSAL for the secondary: only a secondary proposes"
        )
    if not sync.review:
        raise RejectedError(Reason.UNEXPECTED_MESSAGE, "a CONFIG_PROPOSAL outside review mode")
    message, narrowed = _message(envelope), _narrowed(envelope)
    if version > row.config_version:
        raise RejectedError(
            Reason.CONFIG_VERSION_UNKNOWN,
            f"a CONFIG_PROPOSAL against version {version}; version {row.config_version} is in force here",
        )
    if version < row.config_version or row.pending_version:
        return  # made against a version this side has superseded: the partner binds the newer one
    row.proposal = json.dumps({"version": version, "message": message, "narrowed": narrowed})
    s.add(row)
    sync.draft_state = DraftState.RECEIVED
    sync.status_detail = (
        f"the partner proposes a change of version {version}: {message.splitlines()[0][:200]}"
    )
    s.add(sync)


def _take_acceptance(
    s: Session, side: SideCtx, sync: Synchronization, row: SyncSide, envelope: Envelope, version: int
) -> None:
    """Secondary: the primary accepted the proposal as `version`; put the proposed binding in force."""
    proposal = json.loads(row.proposal) if row.proposal else None
    base = envelope.body.get("base")
    if side.role != Role.SECONDARY or proposal is None or base != proposal["version"]:
        raise RejectedError(
            Reason.CONFIG_VERSION_UNKNOWN,
            f"a CONFIG_ACCEPT of version {base!r}, which was never proposed here",
        )
    if base != row.config_version or version <= row.config_version:
        raise RejectedError(
            Reason.CONFIG_OUTDATED,
            f"a CONFIG_ACCEPT of version {base} as {version}; version {row.config_version} is in force here",
        )
    if row.draft_text == proposal["text"]:
        row.draft_text = ""
    row.config_text, row.config_version, row.proposal = proposal["text"], version, ""
    keep_version(
        s, row, version, author=Role.SECONDARY, message=proposal["message"], narrowed=proposal["narrowed"]
    )
    s.add(row)
    sync.draft_state = DraftState.PUBLISHED
    sync.status_detail = f"the partner accepted your proposal: version {version} in force"
    s.add(sync)


def _take_proposal_declined(
    s: Session, sync: Synchronization, row: SyncSide, envelope: Envelope, version: int
) -> None:
    """Secondary: the primary declined the proposal; the draft stays, to edit and propose again."""
    proposal = json.loads(row.proposal) if row.proposal else None
    if proposal is None or proposal["version"] != version:
        raise RejectedError(
            Reason.CONFIG_VERSION_UNKNOWN,
            f"a CONFIG_DECLINE of version {version}, which was never proposed here",
        )
    message = _message(envelope)
    row.proposal = ""
    s.add(row)
    sync.draft_state = DraftState.DECLINED
    sync.status_detail = f"the partner declined your proposal: {message.splitlines()[0][:200]}"
    s.add(sync)


def _narrowed(envelope: Envelope) -> dict[str, str]:
    narrowed = envelope.body.get("narrowed")
    if not isinstance(narrowed, dict) or not all(
        isinstance(k, str) and v in WITHIN["both"] for k, v in narrowed.items()
    ):
        raise RejectedError(
            Reason.BODY_INVALID, f"{envelope.type} narrowed: expected mapping id -> direction"
        )
    return narrowed


def _message(envelope: Envelope) -> str:
    message = envelope.body.get("message")
    if not isinstance(message, str) or not message.strip() or len(message) > MAX_MESSAGE_CHARS:
        raise RejectedError(
            Reason.BODY_INVALID, f"{envelope.type} message: expected 1-{MAX_MESSAGE_CHARS} characters"
        )
    return message


def _version(body: dict[str, Any]) -> int:
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 0 < version < 2**31:
        raise RejectedError(Reason.BODY_INVALID, "field 'version': expected a positive whole number")
    return version
