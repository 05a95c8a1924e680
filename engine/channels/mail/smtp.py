"""Sending a `.bac` by SMTP, one connection per pass."""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache

from engine.channels.mail.settings import (
    MailError,
    MailSendError,
    MailSettings,
    SmtpSettings,
    _mail_error,
    _refuse_unsafe,
    _ssl_context,
)

log = logging.getLogger("backbone.mail")


@cache
def _helo_name() -> str:
    return socket.getfqdn() or "localhost"


def _smtp_open(settings: SmtpSettings, timeout: float, cls: type[MailError] = MailError) -> smtplib.SMTP:
    """A logged-in SMTP connection; `cls` errors name the step that failed."""
    server, secret = settings.server, settings.password
    _refuse_unsafe(server, settings.unsafe_fields())
    context = _ssl_context(settings.ca_file)
    try:
        client: smtplib.SMTP
        if settings.tls == "tls":
            client = smtplib.SMTP_SSL(
                settings.host, settings.port, _helo_name(), timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, _helo_name(), timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise _mail_error(cls, server, "connect", exc, secret, timeout) from exc
    step = "EHLO"
    try:
        client.ehlo_or_helo_if_needed()
        if settings.tls == "starttls":
            step = "STARTTLS"
            if not client.has_extn("starttls"):
                raise MailError(server, step, "the server does not offer STARTTLS", temporary=False)
            client.starttls(context=context)
            client.ehlo()
        if settings.username:
            step = "login"
            client.login(settings.username, settings.password)
    except (OSError, smtplib.SMTPException, MailError) as exc:
        _smtp_quit(client)
        raise _mail_error(cls, server, step, exc, secret, timeout) from exc
    return client


def _smtp_quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def build_message(settings: SmtpSettings, subject: str, file_name: str, data: bytes) -> EmailMessage:
    """The mail that carries one `.bac`: a short text and the file as application/octet-stream."""
    for label, value in (("subject", subject), ("file name", file_name)):
        if "\r" in value or "\n" in value:
            raise ValueError(f"the {label} may not contain line breaks")
    domain = settings.from_addr.rpartition("@")[2] or None
    message = EmailMessage()
    message["From"] = settings.from_addr
    message["To"] = settings.to_addr
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=domain)
    message["X-Mailer"] = "Backbone TUI"
    message.set_content(
        "This mail carries a Backbone TUI synchronization message as its attachment.\n"
        "It is processed automatically; please do not reply or move it.\n"
    )
    message.add_attachment(data, maintype="application", subtype="octet-stream", filename=file_name)
    return message


class MailSender:
    """Sends `.bac` mails over one SMTP connection, reopened when the server dropped it."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self._client: smtplib.SMTP | None = None
        self._last_used = 0.0

    def __enter__(self) -> MailSender:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send(self, subject: str, file_name: str, data: bytes) -> str:
        """Send one mail; returns its Message-ID. Raises `MailSendError` (never a bare OSError)."""
        smtp = self.settings.send
        message = build_message(smtp, subject, file_name, data)
        client = self._connection()
        try:
            client.send_message(message, smtp.from_addr, [smtp.to_addr])
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            code, reply = next(iter(exc.recipients.values()))
            raise self._error(
                f"RCPT TO <{smtp.to_addr}>", smtplib.SMTPResponseException(code, reply)
            ) from exc
        except smtplib.SMTPSenderRefused as exc:
            self.close()
            raise self._error(f"MAIL FROM <{smtp.from_addr}>", exc) from exc
        except smtplib.SMTPDataError as exc:
            self.close()
            raise self._error("DATA", exc) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise self._error("send", exc) from exc
        return str(message["Message-ID"])

    def close(self) -> None:
        if self._client is not None:
            _smtp_quit(self._client)
            self._client = None

    def _connection(self) -> smtplib.SMTP:
        if self._client is not None and time.monotonic() - self._last_used < 5.0:
            self._last_used = time.monotonic()
            return self._client
        if self._client is not None:  # idle a while: the server may have closed it
            try:
                code, _ = self._client.noop()
                if code == 250:
                    self._last_used = time.monotonic()
                    return self._client
            except (OSError, smtplib.SMTPException):
                pass
            self._client.close()
            self._client = None
        self._client = _smtp_open(self.settings.send, self.settings.timeout, MailSendError)
        self._last_used = time.monotonic()
        return self._client

    def _error(self, step: str, exc: BaseException) -> MailError:
        smtp = self.settings.send
        return _mail_error(MailSendError, smtp.server, step, exc, smtp.password, self.settings.timeout)


def send_message(settings: MailSettings, subject: str, file_name: str, data: bytes) -> str:
    """Send one mail with `data` attached as `file_name`; returns the mail's Message-ID.

    Raises `MailSendError` on any failure (its `temporary` says whether a retry may help).
    """
    with MailSender(settings) as sender:
        return sender.send(subject, file_name, data)


def check_smtp(settings: SmtpSettings, timeout: float = 30.0) -> None:
    """Connect, log in and try the envelope (MAIL FROM / RCPT TO, then RSET): nothing is sent."""
    client = _smtp_open(settings, timeout)
    try:
        for step, command, address in (
            ("MAIL FROM", client.mail, settings.from_addr),
            ("RCPT TO", client.rcpt, settings.to_addr),
        ):
            try:
                code, reply = command(address)
                if code >= 400:
                    raise smtplib.SMTPResponseException(code, reply)
            except (OSError, smtplib.SMTPException) as exc:
                raise _mail_error(
                    MailError,
                    settings.server,
                    f"{step} <{address}>",
                    exc,
                    settings.password,
                    timeout,
                ) from exc
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.rset()
    finally:
        _smtp_quit(client)
