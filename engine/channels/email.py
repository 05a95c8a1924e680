"""Email transport: mail settings, a settings check, sending a `.bac` by SMTP, receiving by IMAP.

Receiving is at-least-once: a mail leaves the inbox (to `Backbone/Processed`) only after the
caller says its attachments are stored, so a crash in between means the mail is fetched again.
The caller dedupes on the message's own identity. Mail is never deleted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.channels.mail.imap import IncomingMail as IncomingMail
from engine.channels.mail.imap import MailReceiver as MailReceiver
from engine.channels.mail.imap import check_imap as check_imap
from engine.channels.mail.imap import parse_mail as parse_mail
from engine.channels.mail.settings import BAC_SUFFIX as BAC_SUFFIX
from engine.channels.mail.settings import IDLE_RENEW_SECONDS as IDLE_RENEW_SECONDS
from engine.channels.mail.settings import IGNORED_MAILBOX as IGNORED_MAILBOX
from engine.channels.mail.settings import PROCESSED_MAILBOX as PROCESSED_MAILBOX
from engine.channels.mail.settings import SHORT_LIVED_SECONDS as SHORT_LIVED_SECONDS
from engine.channels.mail.settings import ImapSettings as ImapSettings
from engine.channels.mail.settings import MailError as MailError
from engine.channels.mail.settings import MailSendError as MailSendError
from engine.channels.mail.settings import MailSettings as MailSettings
from engine.channels.mail.settings import SmtpSettings as SmtpSettings
from engine.channels.mail.settings import TlsMode as TlsMode
from engine.channels.mail.settings import line_safe as line_safe
from engine.channels.mail.smtp import MailSender as MailSender
from engine.channels.mail.smtp import build_message as build_message
from engine.channels.mail.smtp import check_smtp as check_smtp
from engine.channels.mail.smtp import send_message as send_message
from engine.errors import BackboneError

log = logging.getLogger("backbone.mail")


def check_settings(settings: MailSettings) -> None:
    """Connect and log in to both servers; raise `MailError` naming server, step and answer."""
    problems = settings.problems()
    if problems:
        raise BackboneError("mail settings: " + "; ".join(problems))
    check_imap(settings.receive, settings.timeout)
    check_smtp(settings.send, settings.timeout)


class EmailChannel:
    """Sends each sealed message file as a mail attachment, over one SMTP connection per pass.

    Arrivals come through `MailReceiver` (IMAP IDLE, its own thread), so there is no inbox."""

    bundles = True
    inbox: Path | None = None
    fetched = True

    def __init__(self, settings: MailSettings, subject: str) -> None:
        self.settings = settings
        self.subject = subject
        self._sender = MailSender(settings)

    def deliver(self, name: str, data: bytes) -> None:
        """Send one mail with the file attached; `MailSendError` names the server and its answer."""
        if not self.settings.send.to_addr:
            raise MailError(self.settings.send.server, "address", "the partner's address is not known yet")
        self._sender.send(self.subject, name, data)

    def flush(self) -> None:
        """The server accepted each mail already."""

    def close(self) -> None:
        """Log out of the SMTP server."""
        self._sender.close()

    def problem(self) -> str:
        """Receive failures are reported by the mail receiver; nothing to check here."""
        return ""

    def check(self) -> str:
        """Log in to the IMAP and the SMTP server (before the partner is known, mail to ourselves)."""
        check_settings(self.settings.checkable())
        return "IMAP and SMTP log-in work"

    def unfinished(self) -> list[Path]:
        """Nothing is staged."""
        return []
