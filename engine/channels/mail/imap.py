"""Receiving by IMAP: fetch, IDLE, and moving processed mail out of the inbox (never deleting)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import imaplib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from imapclient import IMAPClient  # type: ignore[import-untyped]
from imapclient.imapclient import SocketTimeout  # type: ignore[import-untyped]

from engine.channels.mail.settings import (
    BAC_SUFFIX,
    IDLE_RENEW_SECONDS,
    IGNORED_MAILBOX,
    PROCESSED_MAILBOX,
    SHORT_LIVED_SECONDS,
    ImapSettings,
    MailError,
    _mail_error,
    _refuse_unsafe,
    _ssl_context,
    _text,
)

log = logging.getLogger("backbone.mail")

T = TypeVar("T")


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


def check_imap(settings: ImapSettings, timeout: float = 30.0) -> None:
    """Connect, log in and select the folder, then log out."""
    client, _ = _imap_open(settings, timeout)
    _imap_logout(client)
