"""The channels' settings and checks: mail accounts, polling, the channel test."""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING

from engine.channels import open_channel
from engine.channels.base import Channel
from engine.channels.email import MailError, MailReceiver, MailSettings
from engine.domain.side import SideCtx
from engine.service.rules import _env_name

if TYPE_CHECKING:
    from engine.service.installation import Installation


class Mailboxes:
    """The channels' settings and checks: mail accounts, polling, the channel test."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation
        self._receivers: dict[int, MailReceiver] = {}  # side -> its IMAP connection, kept open
        self._guard = threading.Lock()

    def _receiver(self, side: SideCtx) -> MailReceiver:
        with self._guard:
            receiver = self._receivers.get(side.id)
            if receiver is None:
                settings = self.mail_settings(side)
                receiver = MailReceiver(settings.receive, timeout=settings.timeout, stop=self.i.stop_event)
                self._receivers[side.id] = receiver
            return receiver

    def fetch(self, side: SideCtx) -> int:
        """Fetch what arrived for a side whose channel fetches (`Channel.fetched`); mails seen."""
        return self.poll_mail(side, self._receiver(side))

    def wait_for_arrivals(self, side: SideCtx, seconds: float) -> None:
        """Wait until the server announces mail (IMAP IDLE), at most `seconds` or until stopped."""
        self._receiver(side).idle_wait(seconds)

    def close_receivers(self) -> None:
        """Log out of every mail server a fetch opened."""
        with self._guard:
            receivers, self._receivers = list(self._receivers.values()), {}
        for receiver in receivers:
            receiver.close()

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
            channel = self.channel_for(side)
            try:
                results.append(f"{side.folder}: {channel.check()}")
            finally:
                channel.close()
        return results
