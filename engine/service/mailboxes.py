"""The channels' settings and checks: mail accounts, polling, the channel test."""

from __future__ import annotations

import json
import os
import secrets
from typing import TYPE_CHECKING

from engine.channels import open_channel
from engine.channels.base import Channel
from engine.channels.email import MailError, MailReceiver, MailSettings, check_settings
from engine.domain import folders as F
from engine.domain.side import SideCtx
from engine.errors import BackboneError
from engine.service.rules import _env_name

if TYPE_CHECKING:
    from engine.service.installation import Installation


class Mailboxes:
    """The channels' settings and checks: mail accounts, polling, the channel test."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def mail_settings(self, side: SideCtx) -> MailSettings:
        """A side's mail settings; `BACKBONE_<KEY>_IMAP_PASSWORD` / `_SMTP_PASSWORD` override."""
        settings = MailSettings.from_dict(json.loads(side.mail_settings or "{}"))
        imap = os.environ.get(_env_name(side.sync_key, "IMAP"))
        smtp = os.environ.get(_env_name(side.sync_key, "SMTP"))
        if imap is not None:
            settings.receive.password = imap
        if smtp is not None:
            settings.send.password = smtp
        return settings

    def channel_for(self, side: SideCtx) -> Channel:
        """The channel one side's messages travel by (file, email or local)."""
        return open_channel(side, mail_settings=self.mail_settings, hand_over=self.i.pipeline.hand_over)

    def poll_mail(self, side: SideCtx, receiver: MailReceiver) -> int:
        """Fetch the partner's mails: their `.bac` files into RECEIVE, then the mail out of the inbox."""
        try:
            mails = receiver.fetch_new()
        except MailError as exc:
            self.i.pipeline.report_channel(side, str(exc))
            return 0
        self.i.pipeline.report_channel(side, "")
        done = []
        for mail in mails:
            messages = [(name, data) for name, data in mail.attachments if name.lower().endswith(".bac")]
            if not messages or side.sync_key not in mail.subject:
                receiver.set_aside(mail)  # not ours: kept, never deleted
                continue
            for name, data in messages:
                self.i.pipeline.ingest_bytes(side, name, data)
            done.append(mail)
        if done:
            self.i.db.checkpoint_full()  # durable before the mail leaves the inbox
            for mail in done:
                receiver.mark_processed(mail)
        return len(mails)

    def test_channel(self, key: str) -> list[str]:
        """Check each side's channel again (log in to the mail servers, or try the folders)."""
        results = []
        for side in self.i.queries.sides_of(key):
            if side.protocol == "email":
                check_settings(self.checkable(self.mail_settings(side)))
                results.append(f"{side.folder}: IMAP and SMTP log-in work")
            elif side.protocol == "file" and side.exchange is not None:
                send_dir, receive_dir = F.exchange_paths(side.exchange)
                for folder in (send_dir, receive_dir):
                    if not folder.is_dir():
                        raise BackboneError(f"{folder}: not a folder")
                probe = send_dir / f".probe-{secrets.token_hex(4)}.part"
                try:
                    probe.write_bytes(b"")
                    probe.unlink()
                except OSError as exc:
                    raise BackboneError(f"{send_dir}: cannot write ({exc.strerror})") from None
                results.append(f"{side.folder}: exchange folder {side.exchange} is usable")
            else:
                results.append(f"{side.folder}: local, nothing to test")
        return results

    @staticmethod
    def checkable(settings: MailSettings) -> MailSettings:
        """A copy that, before the partner's address is known, sends to our own address."""
        copy = MailSettings.from_dict(settings.to_dict())
        if not copy.send.to_addr:
            copy.send.to_addr = copy.send.from_addr
        return copy
