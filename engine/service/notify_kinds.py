"""The kinds of notification: what each one looks for in a synchronization's rows, what the
recipient should do, and the plain-text mail that tells it."""

from __future__ import annotations

import json
import logging
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from engine.channels.email import MailSendError, SmtpSettings, line_safe
from engine.channels.mail.settings import TLS_MODES, _mail_error
from engine.channels.mail.smtp import _smtp_open, _smtp_quit
from engine.domain.settings import SyncSettings
from engine.service.rules import KEY_WARNING_DAYS, _plausible_address
from engine.store.models import Synchronization
from engine.store.models import SyncSide as SideRow
from engine.vocab import DraftState, SyncStatus

log = logging.getLogger("backbone.notify")

ISSUE_ERROR = "issue_error"
STOPPED = "stopped"
UNREACHABLE = "unreachable"
DRAFT_RECEIVED = "draft_received"
DRAFT_DECLINED = "draft_declined"
KEY_EXPIRING = "key_expiring"
#: each kind: its subject line and what the recipient should do
KINDS: dict[str, tuple[str, str]] = {
    ISSUE_ERROR: (
        "an issue's message went to ERROR",
        "Open the synchronization's troubleshooting (or 'backbone messages KEY --folder ERROR'), "
        "fix the cause, then retry or skip the message.",
    ),
    STOPPED: (
        "the synchronization stopped because of a failure",
        "Run 'backbone sync analyze KEY', report the internal error, and start the "
        "synchronization again once it is fixed (or skip the change that trips it).",
    ),
    UNREACHABLE: (
        "the partner is unreachable",
        "Check the exchange folder or the mail accounts ('backbone sync analyze KEY'); messages "
        "wait and go out once the partner can be reached again.",
    ),
    DRAFT_RECEIVED: (
        "a configuration draft was received",
        "Review the partner's draft (the 'i' key in the overview, or 'backbone config incoming KEY') "
        "and accept or decline it.",
    ),
    DRAFT_DECLINED: (
        "the partner declined the configuration draft",
        "Read the partner's message ('backbone config incoming KEY'), change the draft and publish it again.",
    ),
    KEY_EXPIRING: (
        "an encryption key expires soon",
        "Renew the key before it expires; messages signed with an expired key are refused.",
    ),
}
MAIL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Finding:
    """Something to tell about one synchronization; one `token` per occurrence is told once."""

    sync_key: str
    kind: str
    token: str
    text: str


def findings_of(
    sync: Synchronization, sides: list[SideRow], failing_since: dict[int, datetime], now: datetime
) -> Iterator[Finding]:
    """The conditions worth a mail that hold for one synchronization now."""
    key = sync.key
    failure = next((side.failure for side in sides if side.failure), "")
    if sync.status == SyncStatus.STOPPED and (failure or "internal error" in sync.status_detail):
        yield Finding(key, STOPPED, failure or sync.status_detail, _stop_text(failure, sync.status_detail))
    threshold = timedelta(seconds=SyncSettings.from_json(sync.settings).get("unreachable_after"))
    for side in sides:
        since = side.channel_error_since
        if side.channel_error and since is not None and now - since >= threshold:
            text = f"{side.folder}: messages cannot be received since {since:%Y-%m-%d %H:%M} UTC"
            yield Finding(key, UNREACHABLE, f"receive {since.isoformat()}", text)
            break
        oldest = failing_since.get(side.id or 0)
        if oldest is not None and now - oldest >= threshold:
            text = f"{side.folder}: messages cannot be sent since {oldest:%Y-%m-%d %H:%M} UTC"
            yield Finding(key, UNREACHABLE, f"send {oldest.isoformat()}", text)
            break
    version = max((max(side.pending_version, side.last_published) for side in sides), default=0)
    if sync.draft_state == DraftState.RECEIVED:
        yield Finding(key, DRAFT_RECEIVED, f"v{version}", f"the partner's draft (version {version}) waits")
    elif sync.draft_state == DraftState.DECLINED:
        yield Finding(
            key, DRAFT_DECLINED, f"v{version}", f"the partner declined the draft (version {version})"
        )
    soon = now + timedelta(days=KEY_WARNING_DAYS)
    for side in sides:
        for whose, expires in (
            ("this installation's", side.own_key_expires),
            ("the partner's", side.partner_key_expires),
        ):
            if expires is not None and expires <= soon:
                verb = "expired" if expires <= now else "expires"
                text = f"{whose} key {verb} on {expires:%Y-%m-%d}"
                yield Finding(key, KEY_EXPIRING, f"{whose} {expires.isoformat()}", text)
                return


def _stop_text(failure: str, detail: str) -> str:
    """What stopped a side without the exception's message (it may quote issue contents)."""
    try:
        data = json.loads(failure) if failure else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    what = str(data.get("what") or "") or detail.partition(" could not be sent")[0].removeprefix("stopped: ")
    error = str(data.get("error") or "").partition(":")[0] or "an internal error"
    return one_line(f"{what or 'a tracker change'} could not be sent: {error} (internal error)")[:300]


def account_problems(settings: SmtpSettings) -> list[tuple[str, str]]:
    """(field, what is wrong) of an account, without the network."""
    found: list[tuple[str, str]] = []
    if not settings.host.strip() or not line_safe(settings.host):
        found.append(("host", f"{settings.host!r}: expected a server host name"))
    if not 0 < settings.port < 65536:
        found.append(("port", f"{settings.port}: expected a port from 1 to 65535"))
    if settings.tls not in TLS_MODES:
        found.append(("tls", f"{settings.tls!r}: expected one of {', '.join(TLS_MODES)}"))
    if not line_safe(settings.username) or not line_safe(settings.password):
        found.append(("user", "the user name and password may not contain line breaks"))
    if not settings.from_addr or not _plausible_address(settings.from_addr):
        found.append(("from_addr", f"{settings.from_addr!r}: expected one email address"))
    return found


def one_line(text: str) -> str:
    return " ".join(text.split())


def send_mail(account: SmtpSettings, recipients: list[str], subject: str, body: str) -> None:
    """Send one plain-text mail; `MailSendError` names the server, the step and its answer."""
    message = EmailMessage()
    message["From"] = account.from_addr
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=account.from_addr.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Mailer"] = "Backbone TUI"
    message.set_content(body)
    client = _smtp_open(account, MAIL_TIMEOUT, MailSendError)
    try:
        refused = client.send_message(message, account.from_addr, recipients)
    except (OSError, smtplib.SMTPException) as exc:
        raise _mail_error(MailSendError, account.server, "send", exc, account.password, MAIL_TIMEOUT) from exc
    finally:
        _smtp_quit(client)
    for address, (code, reply) in refused.items():
        log.warning("%s refused notification recipient %s: %s %r", account.server, address, code, reply)
