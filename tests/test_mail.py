"""The email transport against a real private Dovecot and SMTP relay (no mocked mail library)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import pytest

from engine.channels.email import (
    IncomingMail,
    MailError,
    MailReceiver,
    MailSender,
    MailSendError,
    MailSettings,
    check_settings,
    send_message,
)
from engine.errors import BackboneError
from tests import mailserver
from tests.mailserver import MailServer, free_port, requires_dovecot

mail_server = mailserver.mail_server
mail_pair = mailserver.mail_pair

pytestmark = requires_dovecot


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Show a measured figure in the normal test output (not asserted)."""
    with capsys.disabled():
        print(f"\n  [mail] {text}")


def receiver(settings: MailSettings, **kwargs: Any) -> MailReceiver:
    options: dict[str, Any] = {"timeout": 5.0, "backoff_initial": 0.1, "backoff_max": 0.5}
    options.update(kwargs)
    return MailReceiver(settings.receive, **options)


def fetch_all(rx: MailReceiver, expected: int, timeout: float = 15.0) -> list[IncomingMail]:
    """Fetch until `expected` mails were handed out, waiting with IDLE in between."""
    mails: list[IncomingMail] = []
    deadline = time.monotonic() + timeout
    while len(mails) < expected and time.monotonic() < deadline:
        with contextlib.suppress(MailError):  # idle_wait below reconnects
            mails += rx.fetch_new()
        if len(mails) < expected:
            rx.idle_wait(min(1.0, deadline - time.monotonic()))
    return mails


def raw_mail(to: str, parts: list[tuple[str, bytes]], subject: str = "test") -> bytes:
    message = EmailMessage()
    message["From"] = "someone@example.test"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{os.urandom(8).hex()}@example.test>"
    message.set_content("a person's mail\n")
    for name, data in parts:
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes()


def in_background(action: Callable[[], object], delay: float = 0.0) -> threading.Thread:
    """Run `action` in a thread after `delay` seconds."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def count(server: MailServer, address: str, folder: str) -> int:
    return server.maildir_count(address, folder)


# ------------------------------------------------------------------------------------ settings


def test_settings_check_succeeds(mail_pair: tuple[MailSettings, MailSettings]) -> None:
    acme, _ = mail_pair
    check_settings(acme)
    assert acme.receive.password not in repr(acme)


def test_copy_credentials(mail_pair: tuple[MailSettings, MailSettings]) -> None:
    acme, _ = mail_pair
    blank = replace(acme, send=replace(acme.send, username="", password=""))
    copied = blank.with_receive_credentials()
    assert (copied.send.username, copied.send.password) == (
        acme.receive.username,
        acme.receive.password,
    )
    assert MailSettings.from_dict(copied.to_dict()) == copied


@pytest.mark.parametrize(
    ("side", "change", "server", "step", "answer"),
    [
        ("receive", {"password": "wrong-pass-1"}, "IMAP", "login", "Authentication failed"),
        ("send", {"password": "wrong-pass-2"}, "SMTP", "login", "535"),
        ("receive", {"port": "free"}, "IMAP", "connect", "connection refused"),
        ("send", {"port": "free"}, "SMTP", "connect", "connection refused"),
        ("receive", {"folder": "Nope"}, "IMAP", "select folder 'Nope'", "doesn't exist"),
        ("receive", {"tls": "starttls"}, "IMAP", "STARTTLS", "does not offer STARTTLS"),
        ("send", {"tls": "starttls"}, "SMTP", "STARTTLS", "does not offer STARTTLS"),
    ],
)
def test_settings_check_names_server_and_step(
    mail_pair: tuple[MailSettings, MailSettings],
    side: str,
    change: dict[str, Any],
    server: str,
    step: str,
    answer: str,
) -> None:
    acme, _ = mail_pair
    if change.get("port") == "free":
        change = {"port": free_port()}
    part = replace(getattr(acme, side), **change)
    settings = replace(acme, **{side: part}, timeout=3.0)
    with pytest.raises(MailError) as caught:
        check_settings(settings)
    text = str(caught.value)
    assert text.startswith(f"{server} {part.host}:{part.port}: {step} failed: "), text
    assert answer in text
    for secret in (acme.receive.password, acme.send.password, "wrong-pass"):
        assert secret not in text
    assert isinstance(caught.value, BackboneError)


def test_settings_problems_are_found_before_connecting() -> None:
    with pytest.raises(BackboneError, match="host is empty"):
        check_settings(MailSettings())


# ------------------------------------------------------------------------------------ round trip


def test_send_idle_fetch_and_mark_processed(
    mail_server: MailServer,
    mail_pair: tuple[MailSettings, MailSettings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme, globex = mail_pair
    payload = os.urandom(50_000) + b"\r\n.\r\n\x00"
    sent_at: list[float] = []

    def send() -> None:
        time.sleep(0.3)
        sent_at.append(time.monotonic())
        send_message(acme, "Backbone ACME-GLOBEX-1", "0001.bac", payload)

    with receiver(globex) as rx:
        assert rx.fetch_new() == []
        thread = in_background(send)
        assert rx.idle_wait(10.0), "IDLE did not report the new mail"
        woke_at = time.monotonic()
        thread.join()
        mails = rx.fetch_new()
        assert len(mails) == 1
        mail = mails[0]
        assert mail.attachments == [("0001.bac", payload)]
        assert not mail.not_ours
        assert mail.subject == "Backbone ACME-GLOBEX-1"
        assert mail.sender == acme.send.from_addr
        assert rx.fetch_new() == [], "a mail was handed out twice"
        rx.mark_processed(mail)
        assert not rx.idle_wait(0.2)
    report(capsys, f"send -> IDLE wake-up: {(woke_at - sent_at[0]) * 1000:.0f} ms")
    address = globex.receive.username
    assert count(mail_server, address, "INBOX") == 0
    assert count(mail_server, address, "Backbone.Processed") == 1
    flags = mail_server.doveadm("fetch", "-u", address, "flags", "mailbox", "Backbone.Processed")
    assert "\\Seen" not in flags, "fetching must not mark mail as read"


def test_unprocessed_mail_is_handed_out_again_by_a_new_receiver(
    mail_pair: tuple[MailSettings, MailSettings],
) -> None:
    acme, globex = mail_pair
    send_message(acme, "Backbone S-1", "a.bac", b"first")
    with receiver(globex) as rx:
        assert [m.attachments for m in fetch_all(rx, 1)] == [[("a.bac", b"first")]]
    # The process "died" before mark_processed: the next receiver gets the mail again.
    with receiver(globex) as rx:
        again = fetch_all(rx, 1)
        assert [m.attachments for m in again] == [[("a.bac", b"first")]]
        rx.mark_processed(again[0].uid)  # the uid form works too
        assert rx.fetch_new() == []


def test_not_ours_several_attachments_and_odd_names(
    mail_server: MailServer, mail_pair: tuple[MailSettings, MailSettings]
) -> None:
    _, globex = mail_pair
    address = globex.receive.username
    mail_server.lmtp_deliver("x@example.test", address, raw_mail(address, []))
    mail_server.lmtp_deliver(
        "x@example.test",
        address,
        raw_mail(address, [("one.bac", b"1"), ("notes.txt", b"t"), ("two.BAC", b"2")]),
    )
    mail_server.lmtp_deliver("x@example.test", address, raw_mail(address, [("../../x.bac", b"p")]))
    mail_server.lmtp_deliver("x@example.test", address, b"\xff\xfegarbage without headers\r\n")
    with receiver(globex) as rx:
        mails = fetch_all(rx, 4)
        assert [m.attachments for m in mails] == [
            [],
            [("one.bac", b"1"), ("two.BAC", b"2")],
            [("../../x.bac", b"p")],  # the raw name: metadata only, never a path
            [],
        ]
        assert [m.not_ours for m in mails] == [True, False, False, True]
        for mail in mails:
            if mail.not_ours:
                rx.set_aside(mail)
            else:
                rx.mark_processed(mail)
    assert count(mail_server, address, "INBOX") == 0
    assert count(mail_server, address, "Backbone.Ignored") == 2
    assert count(mail_server, address, "Backbone.Processed") == 2


def test_stop_event_ends_idle_wait_promptly(mail_pair: tuple[MailSettings, MailSettings]) -> None:
    _, globex = mail_pair
    stop = threading.Event()
    with receiver(globex, stop=stop) as rx:
        rx.connect()
        in_background(stop.set, delay=0.2)
        started = time.monotonic()
        assert not rx.idle_wait(30.0)
        assert time.monotonic() - started < 2.0


def test_idle_is_reissued_without_missing_mail(
    mail_pair: tuple[MailSettings, MailSettings],
) -> None:
    acme, globex = mail_pair
    with receiver(globex, idle_renew=0.2) as rx:
        rx.connect()
        in_background(lambda: send_message(acme, "S", "r.bac", b"r"), delay=0.7)
        assert rx.idle_wait(5.0)
        assert [m.attachments for m in rx.fetch_new()] == [[("r.bac", b"r")]]


# ------------------------------------------------------------------------------------ outages


def test_imap_restart_while_idling(
    mail_server: MailServer,
    mail_pair: tuple[MailSettings, MailSettings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme, globex = mail_pair
    timeline: dict[str, float] = {}

    def outage() -> None:
        time.sleep(0.3)
        mail_server.stop_imap()
        send_message(acme, "Backbone S-2", "during.bac", b"sent while IMAP was down")
        time.sleep(0.5)
        mail_server.start_imap()
        timeline["up"] = time.monotonic()

    with receiver(globex) as rx:
        rx.connect()
        thread = in_background(outage)
        try:
            assert rx.idle_wait(15.0)
        finally:
            thread.join()
        mails = fetch_all(rx, 1)
        got_at = time.monotonic()
        assert [m.attachments for m in mails] == [[("during.bac", b"sent while IMAP was down")]]
        assert rx.reconnects >= 1
        rx.mark_processed(mails[0])
    report(capsys, f"IMAP back up -> mail fetched: {(got_at - timeline['up']) * 1000:.0f} ms")


def test_dovecot_down_entirely_then_back(
    mail_server: MailServer, mail_pair: tuple[MailSettings, MailSettings]
) -> None:
    acme, globex = mail_pair
    imap = f"IMAP {globex.receive.host}:{globex.receive.port}"
    with receiver(globex) as rx:
        rx.connect()
        mail_server.stop_dovecot()
        try:
            with pytest.raises(MailError, match=f"^{imap}: "):
                rx.fetch_new()
            assert not rx.idle_wait(0.5)  # tries to reconnect and fails
            with pytest.raises(MailError, match=f"^{imap}: connect failed: connection refused"):
                rx.fetch_new()
            send_message(acme, "Backbone S-3", "queued.bac", b"q")  # the relay queues it
        finally:
            mail_server.start_dovecot()
        mails = fetch_all(rx, 1)
        assert [m.attachments for m in mails] == [[("queued.bac", b"q")]]
        rx.mark_processed(mails[0])


def test_smtp_down_then_up(mail_server: MailServer, mail_pair: tuple[MailSettings, MailSettings]) -> None:
    acme, globex = mail_pair
    mail_server.stop_smtp()
    try:
        with pytest.raises(MailSendError) as caught:
            send_message(acme, "Backbone S-4", "late.bac", b"late")
        error = caught.value
        assert error.temporary
        assert str(error).startswith(f"SMTP {acme.send.host}:{acme.send.port}: connect failed")
        with MailSender(acme) as sender:  # a sender outlives the outage
            with pytest.raises(MailSendError):
                sender.send("Backbone S-4", "late.bac", b"late")
            mail_server.start_smtp()
            sender.send("Backbone S-4", "late.bac", b"late")
    finally:
        mail_server.start_smtp()
    with receiver(globex) as rx:
        assert [m.attachments for m in fetch_all(rx, 1)] == [[("late.bac", b"late")]]


def test_smtp_refusal_is_reported_with_its_answer(
    mail_server: MailServer, mail_pair: tuple[MailSettings, MailSettings]
) -> None:
    acme, _ = mail_pair
    mail_server.reject_all = True
    try:
        with pytest.raises(MailSendError) as caught:
            send_message(acme, "Backbone S-5", "x.bac", b"x")
    finally:
        mail_server.reject_all = False
    assert caught.value.step == f"RCPT TO <{acme.send.to_addr}>"
    assert "451" in caught.value.answer and caught.value.temporary


# ------------------------------------------------------------------------------------ UIDVALIDITY


def test_uidvalidity_change_hands_out_no_duplicate(
    mail_server: MailServer, mail_pair: tuple[MailSettings, MailSettings]
) -> None:
    _, globex = mail_pair
    address = globex.receive.username
    first = raw_mail(address, [("first.bac", b"1")])
    second = raw_mail(address, [("second.bac", b"2")])
    admin = mail_server.imap(address)
    admin.create_folder("Sync")
    admin.append("Sync", first)
    settings = replace(globex, receive=replace(globex.receive, folder="Sync"))
    with receiver(settings) as rx:
        [pending] = fetch_all(rx, 1)
        old_validity = rx.uidvalidity
        # The folder is deleted and recreated (new UIDVALIDITY) with the same mail and a new one.
        admin.delete_folder("Sync")
        admin.create_folder("Sync")
        admin.append("Sync", first)
        admin.append("Sync", second)
        mails: list[IncomingMail] = []
        deadline = time.monotonic() + 10
        while not mails and time.monotonic() < deadline:
            with contextlib.suppress(MailError):
                mails = rx.fetch_new()
            if not mails:
                rx.idle_wait(0.5)
        assert rx.uidvalidity != old_validity
        assert [m.attachments for m in mails] == [[("second.bac", b"2")]]
        rx.mark_processed(pending)  # found again by its digest under the new UIDVALIDITY
        rx.mark_processed(mails[0])
        assert rx.fetch_new() == []
    assert count(mail_server, address, "Sync") == 0
    assert count(mail_server, address, "Backbone.Processed") == 2
    admin.logout()


# ------------------------------------------------------------------------------------ fallbacks


@pytest.fixture(scope="module")
def plain_server() -> Iterator[MailServer]:
    """A server announcing neither IDLE, MOVE nor NAMESPACE (old or minimal IMAP servers)."""
    with MailServer(imap_capability="IMAP4rev1 UIDPLUS LITERAL+") as server:
        yield server


def test_polling_and_copy_fallbacks(plain_server: MailServer) -> None:
    sending, receiving = plain_server.partner_settings()
    globex = receiving.receive.username
    with receiver(receiving, poll_interval=0.2) as rx:
        rx.connect()
        in_background(lambda: send_message(sending, "S", "p.bac", b"p"), delay=0.3)
        started = time.monotonic()
        assert rx.idle_wait(10.0)
        assert time.monotonic() - started < 5
        [mail] = rx.fetch_new()
        rx.mark_processed(mail)
    assert count(plain_server, globex, "INBOX") == 0
    assert count(plain_server, globex, "Backbone.Processed") == 1


def test_starttls_and_tls_with_a_private_ca(capsys: pytest.CaptureFixture[str]) -> None:
    with MailServer(tls=True) as server:
        sending, receiving = server.partner_settings()
        check_settings(sending)
        implicit = replace(receiving.receive, port=server.imaps_port, tls="tls")
        check_settings(replace(receiving, receive=implicit))
        untrusted = replace(sending, send=replace(sending.send, ca_file=""))
        with pytest.raises(MailError, match=r"SMTP .*: STARTTLS failed: certificate not trusted"):
            check_settings(replace(untrusted, receive=implicit))
        send_message(sending, "Backbone TLS", "t.bac", b"over TLS")
        with MailReceiver(implicit, timeout=5) as rx:
            assert [m.attachments for m in fetch_all(rx, 1)] == [[("t.bac", b"over TLS")]]


# ------------------------------------------------------------------------------------ throughput


def test_throughput_200_mails(
    mail_server: MailServer,
    mail_pair: tuple[MailSettings, MailSettings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme, globex = mail_pair
    total = 200
    payload = os.urandom(4096)
    started = time.monotonic()
    with MailSender(acme) as sender:
        for number in range(total):
            sender.send(f"Backbone T-{number}", f"{number:04}.bac", payload)
    sent = time.monotonic()
    with receiver(globex) as rx:
        mails = fetch_all(rx, total, timeout=30)
        fetched = time.monotonic()
        for mail in mails:
            rx.mark_processed(mail)
        marked = time.monotonic()
    assert sorted(m.attachments[0][0] for m in mails) == [f"{n:04}.bac" for n in range(total)]
    report(
        capsys,
        f"{total} mails of 4 KB: send {total / (sent - started):.0f}/s (one SMTP connection, "
        f"relayed over LMTP), fetch {total / (fetched - sent):.0f}/s, "
        f"move to Processed {total / (marked - fetched):.0f}/s",
    )
    assert count(mail_server, globex.receive.username, "INBOX") == 0
