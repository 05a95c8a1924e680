"""Pairing and other control messages: the synchronization's lifecycle (SPEC sections 3-4)."""

from __future__ import annotations

import hmac
from typing import Any

from sqlmodel import Session

from engine.domain.envelope import Envelope
from engine.domain.side import SideCtx
from engine.errors import RejectedError
from engine.pipeline.config_control import CONFIG_TYPES, handle_config
from engine.pipeline.records import Outgoing
from engine.store.models import Synchronization, SyncSide
from engine.vocab import MessageType, Reason, Role, SyncStatus


def handle_control(s: Session, side: SideCtx, envelope: Envelope) -> list[Outgoing]:
    """Advance the lifecycle for one control message; returns the messages to answer with."""
    sync = s.get(Synchronization, side.sync_key)
    row = s.get(SyncSide, side.id)
    assert sync is not None and row is not None
    body: dict[str, Any] = envelope.body
    if envelope.type in (MessageType.HANDSHAKE, MessageType.DECLINE):
        if side.role != Role.PRIMARY:
            raise RejectedError(Reason.UNEXPECTED_MESSAGE, f"only a primary accepts a {envelope.type}")
        if sync.status != SyncStatus.REQUEST_SENT or not row.pairing_secret:
            raise RejectedError(
                Reason.HANDSHAKE_REPLAYED, f"the pairing is over; a {envelope.type} is accepted once"
            )
        secret = body.get("secret")
        if not isinstance(secret, str) or not hmac.compare_digest(secret, row.pairing_secret):
            raise RejectedError(
                Reason.BAD_PAIRING_SECRET, f"the {envelope.type} does not carry this request's secret"
            )
        row.pairing_secret = ""
        s.add(row)
        if envelope.type == MessageType.DECLINE:
            sync.status = SyncStatus.DECLINED
            sync.status_detail = "the partner declined the request. Please delete it"
            s.add(sync)
            return []
        if sync.encryption:
            key = body.get("key")
            if not isinstance(key, dict) or not isinstance(key.get("fingerprint"), str):
                raise RejectedError(Reason.KEY_INVALID, "the HANDSHAKE carries no key fingerprint")
            row.partner_fingerprint = key["fingerprint"].replace(" ", "").upper()
        row.partner_endpoint = envelope.sender
        row.partner_project = str(body.get("project", ""))[:64]
        sync.status, sync.status_detail = SyncStatus.HANDSHAKE, "sent PING, waiting for the partner's answer"
        s.add(sync)
        return [Outgoing(MessageType.PING, {"step": 1})]
    if envelope.type == MessageType.PING:
        if sync.status != SyncStatus.HANDSHAKE:
            return []  # a liveness check after pairing
        sync.status, sync.status_detail = SyncStatus.STOPPED, "paired; configure and start"
        s.add(sync)
        return [Outgoing(MessageType.PING, {"step": 2})] if side.role == Role.SECONDARY else []
    if envelope.type in CONFIG_TYPES:
        return handle_config(s, side, envelope)
    raise RejectedError(Reason.NOT_SUPPORTED, f"{envelope.type} messages are not supported by this version")
