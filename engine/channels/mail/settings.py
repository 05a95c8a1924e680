"""Mail account settings, their checks, and the errors that name server, step and answer."""

from __future__ import annotations

import imaplib
import logging
import re
import smtplib
import socket
import ssl
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Any, Literal, TypeVar

from engine.errors import BackboneError
from engine.vocab import Reason

log = logging.getLogger("backbone.mail")

TlsMode = Literal["none", "starttls", "tls"]
TLS_MODES: tuple[str, ...] = ("none", "starttls", "tls")
PROCESSED_MAILBOX = ("Backbone", "Processed")
IGNORED_MAILBOX = ("Backbone", "Ignored")
BAC_SUFFIX = ".bac"
IDLE_RENEW_SECONDS = 540.0  # RFC 2177 servers may drop IDLE after 29 min; NATs far sooner.
SHORT_LIVED_SECONDS = 5.0  # a connection dying younger than this backs off before the next

T = TypeVar("T")


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

    def checkable(self) -> MailSettings:
        """A copy that, before the partner's address is known, sends its test to our own address."""
        copy = MailSettings.from_dict(self.to_dict())
        if not copy.send.to_addr:
            copy.send.to_addr = copy.send.from_addr
        return copy

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

    reason_code = Reason.MAIL_FAILED

    def __init__(self, server: str, step: str, answer: str, *, temporary: bool = True) -> None:
        super().__init__(f"{server}: {step} failed: {answer}")
        self.server = server
        self.step = step
        self.answer = answer
        self.temporary = temporary


class MailSendError(MailError):
    """Sending one message failed: the caller moves it to `SEND_ERROR` and retries later."""

    reason_code = Reason.MAIL_SEND_FAILED


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
