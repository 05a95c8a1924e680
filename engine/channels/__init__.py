"""How sealed messages travel: file exchange, email (SMTP out, IMAP in) and local delivery.

`open_channel` is the one place that chooses a channel by the side's protocol; everything else
asks the channel (`bundles`, `inbox`, `problem()` ...)."""

from __future__ import annotations

from collections.abc import Callable

from engine.channels.base import Channel
from engine.channels.email import EmailChannel, MailSettings
from engine.channels.file import FileChannel
from engine.channels.local import LocalChannel
from engine.domain.side import SideCtx
from engine.vocab import Protocol


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
