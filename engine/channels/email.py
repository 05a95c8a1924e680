"""Email transport: mail settings, a settings check, sending a `.bac` by SMTP, receiving by IMAP.

Receiving is at-least-once: a mail leaves the inbox (to `Backbone/Processed`) only after the
caller says its attachments are stored, so a crash in between means the mail is fetched again.
The caller dedupes on the message's own identity. Mail is never deleted.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import imaplib
import logging
import random
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from imapclient import IMAPClient  # type: ignore[import-untyped]
from imapclient.imapclient import SocketTimeout  # type: ignore[import-untyped]

from engine.errors import BackboneError

log = logging.getLogger("backbone.mail")

TlsMode = Literal["none", "starttls", "tls"]
TLS_MODES: tuple[str, ...] = ("none", "starttls", "tls")
PROCESSED_MAILBOX = ("Backbone", "Processed")
IGNORED_MAILBOX = ("Backbone", "Ignored")
BAC_SUFFIX = ".bac"
IDLE_RENEW_SECONDS = 540.0  # RFC 2177 servers may drop IDLE after 29 min; NATs far sooner.
SHORT_LIVED_SECONDS = 5.0  # a connection dying younger than this backs off before the next

T = TypeVar("T")


# ------------------------------------------------------------------------------------ settings


@dataclass
class ImapSettings:
    """The receive account. `ca_file` (PEM) replaces the system CAs, for private CAs."""

    host: str = ""
    port: int = 993
    tls: TlsMode = "tls"
    username: str = ""
    password: str = field(default="", repr=False)
    folder: str = "INBOX"
    ca_file: str = ""

    @property
    def server(self) -> str:
        return f"IMAP {self.host}:{self.port}"

    def unsafe_fields(self) -> list[str]:
        """The values that would break a protocol line (a CR or LF would start a new command)."""
        return _unsafe(
            {"host": self.host, "user name": self.username, "password": self.password, "folder": self.folder}
        )


@dataclass
class SmtpSettings:
    """The send account; mail goes from `from_addr` to the partner's `to_addr`."""

    host: str = ""
    port: int = 587
    tls: TlsMode = "starttls"
    username: str = ""
    password: str = field(default="", repr=False)
    from_addr: str = ""
    to_addr: str = ""
    ca_file: str = ""

    @property
    def server(self) -> str:
        return f"SMTP {self.host}:{self.port}"

    def unsafe_fields(self) -> list[str]:
        """The values that would break a protocol line (a CR or LF would start a new command)."""
        return _unsafe(
            {
                "host": self.host,
                "user name": self.username,
                "password": self.password,
                "from address": self.from_addr,
                "to address": self.to_addr,
            }
        )


def _unsafe(values: dict[str, str]) -> list[str]:
    return [label for label, value in values.items() if not line_safe(value)]


def line_safe(value: str) -> bool:
    """Whether `value` can go into one line of IMAP or SMTP: no control characters at all."""
    return not any(ord(char) < 32 or ord(char) == 127 for char in value)


@dataclass
class MailSettings:
    """Both accounts of one synchronization; `timeout` bounds every network wait (seconds)."""

    receive: ImapSettings = field(default_factory=ImapSettings)
    send: SmtpSettings = field(default_factory=SmtpSettings)
    timeout: float = 30.0

    def with_receive_credentials(self) -> MailSettings:
        """A copy whose send account uses the receive account's user name and password."""
        send = replace(self.send, username=self.receive.username, password=self.receive.password)
        return replace(self, send=send)

    def problems(self) -> list[str]:
        """What is missing or malformed, without touching the network (empty when fine)."""
        found: list[str] = []
        for label, server in (("receive", self.receive), ("send", self.send)):
            found += [
                f"{label}: the {name} contains a line break or control character"
                for name in server.unsafe_fields()
            ]
            if not server.host.strip():
                found.append(f"{label}: the server host is empty")
            if not 0 < server.port < 65536:
                found.append(f"{label}: port {server.port} is not between 1 and 65535")
            if server.tls not in TLS_MODES:
                found.append(f"{label}: encryption must be one of {', '.join(TLS_MODES)}")
        if not self.receive.username:
            found.append("receive: the user name is empty")
        if not self.receive.folder:
            found.append("receive: the folder is empty")
        for label, address in (("from", self.send.from_addr), ("to", self.send.to_addr)):
            if "@" not in address or any(c in address for c in " \r\n<>,"):
                found.append(f"send: the {label} address {address!r} is not an email address")
        return found

    def to_dict(self) -> dict[str, Any]:
        """Plain data for storage; it holds the passwords, so never log it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MailSettings:
        return cls(
            receive=ImapSettings(**data.get("receive", {})),
            send=SmtpSettings(**data.get("send", {})),
            timeout=float(data.get("timeout", 30.0)),
        )


# ------------------------------------------------------------------------------------ errors


class MailError(BackboneError):
    """A mail server could not be reached or refused a step; names server, step and answer.

    `temporary` is False when retrying cannot help without a change (bad login, 5xx answer).
    """

    reason_code = "MAIL_FAILED"

    def __init__(self, server: str, step: str, answer: str, *, temporary: bool = True) -> None:
        super().__init__(f"{server}: {step} failed: {answer}")
        self.server = server
        self.step = step
        self.answer = answer
        self.temporary = temporary


class MailSendError(MailError):
    """Sending one message failed: the caller moves it to `SEND_ERROR` and retries later."""

    reason_code = "MAIL_SEND_FAILED"


def _describe(exc: BaseException, timeout: float) -> str:
    """A short, human answer for a low-level failure."""
    if isinstance(exc, MailError):
        return exc.answer
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, socket.gaierror):
        return f"host name not found ({exc.strerror})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error
        reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return f"{exc.smtp_code} {reply}".strip()
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"connection closed by the server ({exc})" if str(exc) else "connection closed"
    if isinstance(exc, imaplib.IMAP4.abort):
        return f"connection lost ({_text(exc)})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _text(exc) or type(exc).__name__


def _text(exc: BaseException) -> str:
    parts = [a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in exc.args]
    text = " ".join(parts).strip()
    quoted = re.fullmatch(r"b(['\"])(.*)\1", text, re.DOTALL)  # imapclient wraps bytes in str()
    return quoted.group(2) if quoted else text


def _mail_error(
    cls: type[MailError], server: str, step: str, exc: BaseException, secret: str, timeout: float
) -> MailError:
    answer = _describe(exc, timeout)
    if secret:
        answer = answer.replace(secret, "***")
    temporary = not isinstance(exc, smtplib.SMTPAuthenticationError | ssl.SSLCertVerificationError) and not (
        isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500
    )
    if isinstance(exc, MailError):
        temporary = exc.temporary
    error = cls(server, step, answer, temporary=temporary)
    error.__cause__ = exc
    return error


def _refuse_unsafe(server: str, fields: list[str]) -> None:
    """Nothing with a line break reaches the server (it would be read as another command)."""
    if fields:
        raise MailError(
            server, "settings", f"the {', '.join(fields)} contains a line break; not sent", temporary=False
        )


@cache
def _ssl_context(ca_file: str) -> ssl.SSLContext:
    """One context per CA file: loading the system's CAs costs ~25 ms, so not per connection."""
    return ssl.create_default_context(cafile=ca_file or None)


# ------------------------------------------------------------------------------------ checks


def check_settings(settings: MailSettings) -> None:
    """Connect and log in to both servers; raise `MailError` naming server, step and answer."""
    problems = settings.problems()
    if problems:
        raise BackboneError("mail settings: " + "; ".join(problems))
    check_imap(settings.receive, settings.timeout)
    check_smtp(settings.send, settings.timeout)


def check_imap(settings: ImapSettings, timeout: float = 30.0) -> None:
    """Connect, log in and select the folder, then log out."""
    client, _ = _imap_open(settings, timeout)
    _imap_logout(client)


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


# ------------------------------------------------------------------------------------ SMTP


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


# ------------------------------------------------------------------------------------ IMAP


@dataclass
class IncomingMail:
    """One mail from the receive folder.

    `attachments` holds (name, bytes) of each `.bac` part. The name is the sender's raw text
    (it may be `../../x.bac`): keep it as metadata only, never build a path from it.
    """

    uid: int
    uidvalidity: int
    digest: str  # sha256 of the whole raw mail
    message_id: str
    subject: str
    sender: str
    size: int
    attachments: list[tuple[str, bytes]] = field(repr=False)

    @property
    def not_ours(self) -> bool:
        """True when the mail carries no `.bac` attachment (spam, a person's mail)."""
        return not self.attachments


def parse_mail(uid: int, uidvalidity: int, raw: bytes) -> IncomingMail:
    """Read the headers and `.bac` attachments of one raw mail; never raises on bad input."""
    digest = hashlib.sha256(raw).hexdigest()
    subject = sender = message_id = ""
    attachments: list[tuple[str, bytes]] = []
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        subject = _header(message, "Subject")
        sender = _header(message, "From")
        message_id = _header(message, "Message-ID")
        for part in message.walk():
            if part.is_multipart():
                continue
            name = part.get_filename()
            if not name or not name.strip().lower().endswith(BAC_SUFFIX):
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                attachments.append((name, payload))
    except Exception:  # a malformed mail is "not ours", not a crash
        log.warning("mail uid %s could not be parsed", uid, exc_info=True)
    return IncomingMail(uid, uidvalidity, digest, message_id, subject, sender, len(raw), attachments)


def _header(message: email.message.Message, name: str) -> str:
    try:
        return str(message.get(name, "")).strip()
    except Exception:
        return ""


class _Dropped(Exception):
    """The IMAP connection is gone."""


def _imap_open(settings: ImapSettings, timeout: float) -> tuple[Any, dict[bytes, Any]]:
    """A logged-in IMAP connection with the folder selected, and the SELECT answer."""
    server, secret = settings.server, settings.password
    _refuse_unsafe(server, settings.unsafe_fields())
    context = _ssl_context(settings.ca_file)
    try:
        client = IMAPClient(
            settings.host,
            port=settings.port,
            ssl=settings.tls == "tls",
            ssl_context=context if settings.tls == "tls" else None,
            timeout=SocketTimeout(connect=timeout, read=timeout),
        )
    except (OSError, imaplib.IMAP4.error) as exc:
        raise _mail_error(MailError, server, "connect", exc, secret, timeout) from exc
    step = "greeting"
    try:
        if settings.tls == "starttls":
            step = "STARTTLS"
            if not client.has_capability("STARTTLS"):
                raise MailError(server, step, "the server does not offer STARTTLS", temporary=False)
            client.starttls(context)
        step = "login"
        try:
            client.login(settings.username, settings.password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise MailError(server, step, _text(exc), temporary=False) from exc
        # imapclient 4.1 would keep answering with the pre-login capability list.
        client._cached_capabilities = None
        step = f"select folder {settings.folder!r}"
        try:
            selected = client.select_folder(settings.folder)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise MailError(server, step, _text(exc), temporary=False) from exc
    except (OSError, imaplib.IMAP4.error, MailError) as exc:
        _imap_shutdown(client)
        raise _mail_error(MailError, server, step, exc, secret, timeout) from exc
    return client, cast(dict[bytes, Any], selected)


def _imap_logout(client: Any) -> None:
    try:
        client.logout()
    except (OSError, imaplib.IMAP4.error):
        _imap_shutdown(client)


def _imap_shutdown(client: Any) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        client.shutdown()


@dataclass
class _Pending:
    """A mail handed to the caller and not yet moved; `uid` is None while it must be found."""

    mail: IncomingMail
    uid: int | None
    target: tuple[str, ...] | None = None  # a move that failed and is retried on reconnect


class MailReceiver:
    """Reads `.bac` mails from one IMAP folder; one thread uses one receiver.

    The caller's loop: `fetch_new()`, store each mail's attachments durably, then
    `mark_processed(mail)` (or `set_aside(mail)` for a not-ours mail), then `idle_wait()`.
    A mail is handed out once per receiver; a new receiver hands out again whatever is still
    in the folder. After a UIDVALIDITY change the folder is read again and mails already
    handed out are recognised by their digest, not handed out twice.
    """

    def __init__(
        self,
        settings: ImapSettings,
        *,
        timeout: float = 30.0,
        stop: threading.Event | None = None,
        idle_renew: float = IDLE_RENEW_SECONDS,
        poll_interval: float = 60.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        batch_size: int = 25,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self.stop_event = stop or threading.Event()
        self.idle_renew = idle_renew
        self.poll_interval = poll_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        self.uidvalidity: int | None = None
        self.last_error: MailError | None = None
        self.reconnects = 0
        self._client: Any = None
        self._failures = 0
        self._short_lived = 0
        self._connected_at = 0.0
        self._retry_at = 0.0
        self._highest_uid = 0
        self._pending: dict[str, _Pending] = {}  # digest -> pending
        self._pending_uids: dict[int, str] = {}  # current uid -> digest
        self._mailboxes: dict[tuple[str, ...], str] = {}
        self._capabilities: frozenset[bytes] = frozenset()

    # ---------------------------------------------------------------- public

    def __enter__(self) -> MailReceiver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._client is not None

    def connect(self) -> None:
        """Connect now (otherwise the first call does); raises `MailError`."""
        self._ensure_connected()

    def close(self) -> None:
        """Log out. Mails not yet moved stay in the folder; a new receiver hands them out again."""
        if self._client is not None:
            _imap_logout(self._client)
            self._client = None

    def fetch_new(self, limit: int = 100) -> list[IncomingMail]:
        """Up to `limit` mails not yet handed out, oldest first, fetched without setting \\Seen.

        Raises `MailError` when the server cannot be reached; during the back-off after a
        failed connect it raises the last error again without trying (`idle_wait` retries).
        """
        try:
            self._ensure_connected()
            sound = self._session_sound()
        except MailError:
            if self._client is not None:  # a refusal, not a lost connection
                raise
            sound = False  # lost: one immediate reconnect below
        if not sound:
            self._drop()
        client = self._ensure_connected()
        uids = sorted(self._call("search", lambda: client.search(["UNDELETED"])))
        uidvalidity = self.uidvalidity or 0
        candidates = [uid for uid in uids if uid not in self._pending_uids]
        found: list[IncomingMail] = []
        position = 0
        while position < len(candidates) and len(found) < limit:
            batch = candidates[position : position + min(self.batch_size, limit - len(found))]
            position += len(batch)
            for uid, raw in self._fetch_raw(batch):
                self._highest_uid = max(self._highest_uid, uid)
                mail = parse_mail(uid, uidvalidity, raw)
                pending = self._pending.get(mail.digest)
                if pending is not None:
                    if pending.uid is None:  # found again after a UIDVALIDITY change
                        pending.uid = uid
                        self._pending_uids[uid] = mail.digest
                    continue
                self._pending[mail.digest] = _Pending(mail, uid)
                self._pending_uids[uid] = mail.digest
                found.append(mail)
        return found

    def mark_processed(self, mail: IncomingMail | int) -> None:
        """Move a mail whose attachments are safely stored to `Backbone/Processed`.

        Raises `MailError` when the move failed; it is retried after the next reconnect.
        """
        self._move(mail, PROCESSED_MAILBOX)

    def set_aside(self, mail: IncomingMail | int) -> None:
        """Move a not-ours mail to `Backbone/Ignored` (mail is never deleted)."""
        self._move(mail, IGNORED_MAILBOX)

    def idle_wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for new mail: True when `fetch_new` has something to do.

        Uses IDLE (re-issued every `idle_renew` s), else polls every `poll_interval` s. A lost
        connection is reopened with exponential back-off and jitter; a reconnect returns True.
        Returns False at once when the stop event is set. Never raises for network trouble.
        """
        deadline = time.monotonic() + timeout
        while not self.stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._client is None:
                wait = max(0.0, self._retry_at - time.monotonic())
                if wait >= remaining:
                    self.stop_event.wait(remaining)
                    return False
                if wait and self.stop_event.wait(wait):
                    return False
                try:
                    self._ensure_connected()
                except MailError:
                    continue
                return True
            try:
                if not self._session_sound():
                    raise _Dropped("the server reported trouble with the selected folder")
                if self._has_unfetched():
                    return True
                if b"IDLE" in self._capabilities:
                    if self._idle(min(remaining, self.idle_renew)):
                        return True
                else:
                    self.stop_event.wait(min(remaining, self.poll_interval))
            except (_Dropped, MailError) as exc:
                log.info("IMAP connection lost while waiting: %s", exc)
                self._drop()
        return False

    # ---------------------------------------------------------------- connection

    def _ensure_connected(self) -> Any:
        if self._client is not None:
            return self._client
        if self.last_error is not None and time.monotonic() < self._retry_at:
            raise self.last_error
        try:
            client, selected = _imap_open(self.settings, self.timeout)
        except MailError as exc:
            self._failures += 1
            self._retry_at = time.monotonic() + self._backoff(self._failures)
            self.last_error = exc
            raise
        if self.last_error is not None or self._failures:
            self.reconnects += 1
        self._failures = 0
        self.last_error = None
        self._client = client
        self._connected_at = time.monotonic()
        self._capabilities = frozenset(client.capabilities())
        self._mailboxes = {}
        uidvalidity = int(selected.get(b"UIDVALIDITY", 0))
        if self.uidvalidity is not None and uidvalidity != self.uidvalidity:
            log.warning(
                "%s folder %r: UIDVALIDITY changed (%s -> %s); reading it again",
                self.settings.server,
                self.settings.folder,
                self.uidvalidity,
                uidvalidity,
            )
            for pending in self._pending.values():
                pending.uid = None
            self._pending_uids.clear()
            self._highest_uid = 0
        self.uidvalidity = uidvalidity
        self._retry_moves()
        if self._client is None:  # lost again while retrying moves
            raise self.last_error or MailError(self.settings.server, "connect", "connection lost")
        return self._client

    def _drop(self) -> None:
        """Forget a broken connection; reconnect at once unless connections keep dying young."""
        if self._client is not None:
            _imap_shutdown(self._client)
            self._client = None
            if time.monotonic() - self._connected_at < SHORT_LIVED_SECONDS:
                self._short_lived += 1
                self._retry_at = time.monotonic() + self._backoff(self._short_lived)
            else:
                self._short_lived = 0
                self._retry_at = 0.0
        if self.last_error is None:
            self.last_error = MailError(self.settings.server, "connection", "connection lost")

    def _backoff(self, attempt: int) -> float:
        """Exponential delay with jitter before attempt number `attempt` (1, 2, ...)."""
        delay = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)

    def _call(self, step: str, operation: Callable[[], T]) -> T:
        """Run one IMAP command; a lost connection is dropped and raised as `MailError`."""
        try:
            return operation()
        except (imaplib.IMAP4.abort, OSError) as exc:
            self._drop()
            error = _mail_error(
                MailError, self.settings.server, step, exc, self.settings.password, self.timeout
            )
            self.last_error = error
            raise error from exc
        except imaplib.IMAP4.error as exc:
            raise MailError(self.settings.server, step, _text(exc), temporary=False) from exc

    def _fetch_raw(self, uids: list[int]) -> Iterator[tuple[int, bytes]]:
        if not uids:
            return
        client = self._client
        response = self._call("fetch", lambda: client.fetch(uids, ["BODY.PEEK[]"]))
        for uid in uids:
            raw = response.get(uid, {}).get(b"BODY[]")
            if isinstance(raw, bytes):
                yield uid, raw

    def _session_sound(self) -> bool:
        """NOOP: False when the server says the selected folder went bad (deleted, recreated)."""
        client = self._client
        _, responses = self._call("noop", lambda: client.noop())
        for response in responses:
            kind = response[0] if response else None
            text = b" ".join(r for r in response[1:] if isinstance(r, bytes))
            if kind in (b"NO", b"BAD", b"BYE"):
                log.warning("%s: %s", self.settings.server, text.decode("utf-8", "replace"))
                return False
            match = re.match(rb"\[UIDVALIDITY (\d+)\]", text) if kind == b"OK" else None
            if match and int(match.group(1)) != self.uidvalidity:
                return False
        return True

    def _has_unfetched(self) -> bool:
        """Whether the folder holds a UID above the highest one fetched so far."""
        client = self._client
        criteria = ["UID", f"{self._highest_uid + 1}:*", "UNDELETED"]
        uids = self._call("search", lambda: client.search(criteria))
        return any(uid > self._highest_uid for uid in uids)

    def _idle(self, duration: float) -> bool:
        """One IDLE round of at most `duration` s; True when the server reported new mail."""
        client = self._client
        try:
            client.idle()
        except (imaplib.IMAP4.error, OSError) as exc:
            raise _Dropped(str(exc)) from exc
        end = time.monotonic() + duration
        new_mail = False
        quiet_returns = 0
        while not self.stop_event.is_set() and not new_mail:
            left = end - time.monotonic()
            if left <= 0:
                break
            chunk = min(0.5, left)  # how often the stop event is looked at
            started = time.monotonic()
            try:
                responses = client.idle_check(timeout=chunk)
            except (imaplib.IMAP4.error, OSError) as exc:
                raise _Dropped(str(exc)) from exc
            if any(r and r[0] == b"BYE" for r in responses):
                raise _Dropped("the server said BYE")
            new_mail = any(len(r) > 1 and r[1] == b"EXISTS" for r in responses)
            if not responses and time.monotonic() - started < chunk / 2:
                quiet_returns += 1  # readable but no line: the peer closed the socket
                if quiet_returns >= 2:
                    break
        try:
            _, responses = client.idle_done()
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError) as exc:
            raise _Dropped(str(exc)) from exc
        return new_mail or any(len(r) > 1 and r[1] == b"EXISTS" for r in responses)

    # ---------------------------------------------------------------- moving

    def _move(self, mail: IncomingMail | int, target: tuple[str, ...]) -> None:
        digest = self._digest_of(mail)
        if digest is None:  # a uid we never handed out: move it as it is
            assert isinstance(mail, int)
            self._ensure_connected()
            self._move_uid(mail, target)
            return
        pending = self._pending[digest]
        pending.target = target
        self._ensure_connected()
        if digest in self._pending:  # a reconnect may have carried it out already
            self._complete(digest, pending)

    def _digest_of(self, mail: IncomingMail | int) -> str | None:
        if isinstance(mail, IncomingMail):
            if mail.digest not in self._pending:
                raise ValueError(f"mail uid {mail.uid} is not pending with this receiver")
            return mail.digest
        matches = [d for d, p in self._pending.items() if p.mail.uid == mail]
        if len(matches) > 1:
            raise ValueError(f"uid {mail} is ambiguous after a UIDVALIDITY change: pass the mail")
        return matches[0] if matches else None

    def _complete(self, digest: str, pending: _Pending) -> None:
        """Carry out the pending move of one mail (finding it first if its UID is stale)."""
        assert pending.target is not None
        if pending.uid is None:
            pending.uid = self._locate(pending.mail)
            if pending.uid is None:
                log.warning("mail %s is no longer in the folder", pending.mail.message_id)
                del self._pending[digest]
                return
            self._pending_uids[pending.uid] = digest
        self._move_uid(pending.uid, pending.target)
        self._pending_uids.pop(pending.uid, None)
        del self._pending[digest]

    def _retry_moves(self) -> None:
        for digest, pending in list(self._pending.items()):
            if pending.target is not None:
                try:
                    self._complete(digest, pending)
                except MailError as exc:
                    log.warning("retrying a move failed: %s", exc)
                    return

    def _locate(self, mail: IncomingMail) -> int | None:
        """The current UID of a mail, found by Message-ID and confirmed by digest."""
        client = self._client
        if mail.message_id:
            criteria: list[Any] = ["HEADER", "Message-ID", mail.message_id]
        else:
            criteria = ["UNDELETED"]
        uids = self._call("search", lambda: client.search(criteria))
        unknown = [uid for uid in sorted(uids) if uid not in self._pending_uids]
        for start in range(0, len(unknown), self.batch_size):
            for uid, raw in self._fetch_raw(unknown[start : start + self.batch_size]):
                if hashlib.sha256(raw).hexdigest() == mail.digest:
                    return uid
        return None

    def _mailbox(self, parts: tuple[str, ...]) -> str:
        """The server's name for a mailbox under our prefix, created when missing."""
        name = self._mailboxes.get(parts)
        if name is not None:
            return name
        client = self._client
        prefix, delimiter = "", "/"
        if b"NAMESPACE" in self._capabilities:
            personal = self._call("namespace", lambda: client.namespace()).personal
            if personal:
                prefix, delimiter = personal[0][0] or "", personal[0][1] or "/"
        else:
            listed = self._call("list", lambda: client.list_folders("", ""))
            if listed and listed[0][1]:
                delimiter = listed[0][1].decode() if isinstance(listed[0][1], bytes) else listed[0][1]
        name = prefix + delimiter.join(parts)
        if not self._call("list", lambda: client.folder_exists(name)):
            try:
                self._call(f"create mailbox {name!r}", lambda: client.create_folder(name))
            except MailError as exc:
                if exc.temporary or not self._call("list", lambda: client.folder_exists(name)):
                    raise
            try:
                self._call("subscribe", lambda: client.subscribe_folder(name))
            except MailError as exc:
                if exc.temporary:
                    raise
        self._mailboxes[parts] = name
        return name

    def _move_uid(self, uid: int, target: tuple[str, ...]) -> None:
        """MOVE one mail; without MOVE: COPY, flag \\Deleted, and UID EXPUNGE if supported."""
        client = self._client
        mailbox = self._mailbox(target)
        step = f"move to {mailbox!r}"
        if b"MOVE" in self._capabilities:
            self._call(step, lambda: client.move([uid], mailbox))
            return
        self._call(step, lambda: client.copy([uid], mailbox))
        self._call(step, lambda: client.add_flags([uid], [b"\\Deleted"]))
        if b"UIDPLUS" in self._capabilities:
            self._call(step, lambda: client.uid_expunge([uid]))
        # Without UIDPLUS the mail stays flagged \Deleted: a plain EXPUNGE would remove other
        # clients' deleted mail too. Fetching skips \Deleted mail.


class EmailChannel:
    """Sends each sealed message file as a mail attachment, over one SMTP connection per pass.

    Arrivals come through `MailReceiver` (IMAP IDLE, its own thread), so there is no inbox."""

    bundles = True
    inbox: Path | None = None

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

    def unfinished(self) -> list[Path]:
        """Nothing is staged."""
        return []
