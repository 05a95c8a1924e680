"""How sealed messages travel: file exchange, email (SMTP out, IMAP in) and local delivery.

`open_channel` is the one place that chooses a channel by the side's protocol; everything else
asks the channel (`bundles`, `inbox`, `problem()` ...)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from engine.channels.base import Channel
from engine.channels.email import EmailChannel, MailSettings, check_settings
from engine.channels.file import FileChannel
from engine.channels.local import LocalChannel
from engine.domain.side import SideCtx
from engine.errors import FieldError
from engine.vocab import Protocol

#: each protocol's channel; its class attributes (`bundles`, `fetched`) are its capabilities
CHANNELS: dict[str, type[Channel]] = {
    Protocol.FILE: FileChannel,
    Protocol.EMAIL: EmailChannel,
    Protocol.LOCAL: LocalChannel,
}


def channel_class(side: SideCtx) -> type[Channel]:
    """The class of `side`'s channel, to ask its capabilities without opening it."""
    return CHANNELS[side.protocol]


def open_channel(
    side: SideCtx,
    *,
    mail_settings: Callable[[SideCtx], MailSettings],
    hand_over: Callable[[SideCtx, str, bytes], object],
) -> Channel:
    """The channel of `side`: its exchange folder, its mail accounts, or the other local side."""
    if side.protocol == Protocol.EMAIL:
        return EmailChannel(mail_settings(side), f"[Backbone] {side.sync_key}")
    if side.protocol == Protocol.LOCAL:
        return LocalChannel(lambda name, data: hand_over(side, name, data))
    if side.exchange is None:
        raise ValueError(f"{side.sync_key}: a file synchronization without an exchange folder")
    return FileChannel(side.exchange)


def channel_fields(
    protocol: str,
    *,
    exchange: Path | None,
    default_exchange: Path,
    mail: MailSettings | None,
    address: str,
) -> dict[str, str]:
    """Check a new side's channel arguments and make what it needs; returns the side's stored
    fields: `exchange` (the folder, made with SEND and RECEIVE) or `mail_settings` (JSON, both
    log-ins tried). Errors are `FieldError`s naming `exchange` or `mail`."""
    if protocol == Protocol.FILE:
        if mail is not None:
            raise FieldError("mail", "mail settings are for the email protocol")
        return {"exchange": str(FileChannel.prepare((exchange or default_exchange).absolute()))}
    if mail is None:
        raise FieldError("mail", "the email protocol needs receive (IMAP) and send (SMTP) settings")
    if exchange is not None:
        raise FieldError("exchange", "an exchange folder is for the file protocol")
    problems = mail.checkable().problems()
    if problems:
        raise FieldError("mail", "; ".join(problems))
    check_settings(mail.checkable())
    stored = mail.to_dict()
    stored["address"] = address or mail.send.from_addr
    return {"mail_settings": json.dumps(stored)}
