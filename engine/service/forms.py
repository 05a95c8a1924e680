"""What a creation wizard fills in, and the checks it runs on one page before the next: the mail
accounts (tried against the servers, nothing sent), a handshake file's summary, the choices offered.

Screens use these instead of the channel classes; the CLI builds the same settings from flags."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.channels.email import ImapSettings, MailSettings, SmtpSettings, check_imap, check_smtp
from engine.channels.mail.settings import TLS_MODES, line_safe
from engine.errors import FieldError
from engine.vocab import Protocol

if TYPE_CHECKING:
    from engine.service.installation import Installation

__all__ = [
    "TLS_MODES",
    "HandshakeSummary",
    "ImapSettings",
    "MailSettings",
    "SmtpSettings",
    "check_receive",
    "check_send",
    "receive_problems",
    "send_problems",
]

TEST_TIMEOUT = 15.0  # seconds a "Test connection" waits for a server


def receive_problems(receive: ImapSettings) -> list[tuple[str, str]]:
    """(field, what is wrong) of the receive form, without the network: host, port, user, folder."""
    return _server_problems(receive) + [
        (name, text)
        for name, text in (
            ("username", "the user name is empty" if not receive.username.strip() else ""),
            ("folder", "the folder is empty" if not receive.folder.strip() else ""),
        )
        if text
    ]


def send_problems(send: SmtpSettings) -> list[tuple[str, str]]:
    """(field, what is wrong) of the send form: host, port, the from address."""
    found = _server_problems(send)
    address = send.from_addr.strip()
    if "@" not in address or any(c in address for c in " \r\n<>,"):
        found.append(("from_addr", f"{address!r} is not an e-mail address (like backbone@acme.example)"))
    return found


def _server_problems(server: ImapSettings | SmtpSettings) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if not server.host.strip():
        found.append(("host", "the server host is empty"))
    if not 0 < server.port < 65536:
        found.append(("port", f"{server.port} is not a port (1-65535)"))
    if server.tls not in TLS_MODES:
        found.append(("tls", f"expected one of {', '.join(TLS_MODES)}"))
    values = {"host": server.host, "username": server.username, "password": server.password}
    unsafe = [name for name, value in values.items() if not line_safe(value)]
    found += [(name, "contains a line break or control character") for name in unsafe]
    return found


def check_receive(receive: ImapSettings) -> str:
    """Log in to the IMAP server and open the folder; raises `MailError` naming step and answer."""
    problems = receive_problems(receive)
    if problems:
        raise FieldError(problems[0][0], problems[0][1])
    check_imap(receive, TEST_TIMEOUT)
    return f"{receive.server}: logged in as {receive.username}, folder {receive.folder} opened"


def check_send(send: SmtpSettings) -> str:
    """Log in to the SMTP server and try the envelope to our own address (nothing is sent)."""
    problems = send_problems(send)
    if problems:
        raise FieldError(problems[0][0], problems[0][1])
    trial = replace(send, to_addr=send.to_addr or send.from_addr)
    check_smtp(trial, TEST_TIMEOUT)
    who = f" as {send.username}" if send.username else ""
    return f"{send.server}: logged in{who}, the server takes mail from {send.from_addr}"


@dataclass(frozen=True)
class HandshakeSummary:
    """What a secondary's admin confirms before creating its side: who asks, how, with which key."""

    path: Path
    key: str
    name: str
    description: str
    protocol: str
    review: bool
    encryption: bool
    partner_project: str
    partner_address: str  # email protocol: where this side's messages go
    fingerprint: str  # "" when encryption is off

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for display."""
        rows = [
            ("Synchronization", f"{self.name} ({self.key})"),
            ("Description", self.description or "-"),
            ("Protocol", self.protocol),
            ("Partner project", self.partner_project),
        ]
        if self.protocol == Protocol.EMAIL:
            rows.append(("Partner address", self.partner_address or "(not given)"))
        else:
            rows.append(("Folders", "an exchange folder with SEND and RECEIVE, shared with the partner"))
        rows.append(("Review mode", "on" if self.review else "off"))
        rows.append(("Encryption", "on (OpenPGP)" if self.encryption else "off"))
        if self.fingerprint:
            spaced = " ".join(self.fingerprint[i : i + 4] for i in range(0, len(self.fingerprint), 4))
            rows.append(("Key fingerprint", spaced))
        return rows


def handshake_summary(installation: Installation, path: str | Path) -> HandshakeSummary:
    """Read and verify a handshake file (signature or checksum) and summarise it."""
    data: dict[str, Any] = installation.read_handshake(path)
    primary = data["primary"]
    key = data.get("key") if isinstance(data.get("key"), dict) else {}
    return HandshakeSummary(
        Path(path).absolute(),
        data["sync"],
        data["name"],
        str(data.get("description", "")),
        data["protocol"],
        bool(data.get("review")),
        bool(data["encryption"]),
        primary["project"],
        str(primary.get("address", "")),
        str((key or {}).get("fingerprint", "")).replace(" ", "").upper(),
    )
