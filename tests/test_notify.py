"""Notification mails against the private test mail server: each kind mails once, at most once an
hour per synchronization and kind, a failing server never stops the engine; the CLI."""

from __future__ import annotations

import email
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import Message as MailMessage
from pathlib import Path

import pytest
from sqlmodel import col, select

from backbone_tui.cli import main
from engine.channels.email import SmtpSettings
from engine.runtime.demo import Demo, pair_installations
from engine.runtime.engine import Engine, wait_until
from engine.service.installation import Installation
from engine.service.notify import (
    DRAFT_DECLINED,
    DRAFT_RECEIVED,
    ISSUE_ERROR,
    KEY_EXPIRING,
    RETRY_SECONDS,
    STOPPED,
    UNREACHABLE,
)
from engine.store.models import Notification, NotifyRecipient, Setting, SyncSide
from engine.trackers.base import utcnow
from engine.vocab import DraftState, Folder
from tests import mailserver
from tests.mailserver import MailServer

from .conftest import issue_by_summary, sync_all
from .test_bad_input import create_body, drop, envelope
from .test_config_interleavings import publish

mail_server = mailserver.mail_server


class Clock:
    """The notification service's clock, moved by hand."""

    def __init__(self) -> None:
        self.at = utcnow()

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


def use_server(inst: Installation, server: MailServer) -> tuple[str, Clock]:
    """Give `inst` the test server's account and a fresh recipient; returns (recipient, clock)."""
    sender, password = server.new_account("notifier")
    inst.notifications.set_account(
        SmtpSettings(server.host, server.smtp_port, "none", sender, password, sender)
    )
    recipient, _ = server.new_account("ops")
    clock = Clock()
    inst.notifications.now = clock
    return recipient, clock


def inbox(server: MailServer, address: str) -> list[MailMessage]:
    """The mails in `address`'s INBOX, oldest first."""
    client = server.imap(address)
    try:
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        fetched = client.fetch(uids, ["RFC822"]) if uids else {}
        return [email.message_from_bytes(fetched[uid][b"RFC822"]) for uid in sorted(fetched)]
    finally:
        client.logout()


def wait_mails(server: MailServer, address: str, count: int) -> list[MailMessage]:
    assert wait_until(lambda: server.maildir_count(address) >= count, 10), f"{count} mail(s) expected"
    mails = inbox(server, address)
    assert len(mails) == count, [m["Subject"] for m in mails]
    return mails


def text(mail: MailMessage) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def kinds(inst: Installation, key: str) -> list[str]:
    with inst.db.session() as s:
        rows = s.exec(
            select(Notification).where(Notification.sync_key == key).order_by(col(Notification.id))
        ).all()
    return [row.kind for row in rows]


def value_not_mapped(demo: Demo, summary: str) -> None:
    """An issue whose first message goes to ERROR on Globex (a value without a mapping)."""
    name = f"{uuid.uuid4().hex[:8]}.bac"
    drop(demo, name, envelope(demo, create_body(summary, urgency="u9"), pair=uuid.uuid4().hex))
    Engine(demo.globex).run_once()
    assert any(m.folder == Folder.ERROR and m.original_name == name for m in demo.globex.messages(demo.key))


def side_row(inst: Installation, key: str) -> SyncSide:
    with inst.db.session() as s:
        row = s.exec(select(SyncSide).where(SyncSide.sync_key == key)).first()
    assert row is not None
    return row


def change_side(inst: Installation, key: str, **values: object) -> None:
    with inst.db.write() as s:
        row = s.exec(select(SyncSide).where(SyncSide.sync_key == key)).one()
        for name, value in values.items():
            setattr(row, name, value)
        s.add(row)


@pytest.fixture
def review_pair(tmp_path: Path) -> Iterator[Demo]:
    demo = pair_installations(tmp_path / "demo", encryption=False, start=False, review=True)
    yield demo
    demo.close()


def test_an_issue_error_mails_once_and_the_hourly_limit_holds(paired: Demo, mail_server: MailServer) -> None:
    globex, key = paired.globex, paired.key
    recipient, clock = use_server(globex, mail_server)
    globex.notifications.change_recipients(key, add=[recipient])
    value_not_mapped(paired, "private summary text")
    globex.housekeeping()
    [mail] = wait_mails(mail_server, recipient, 1)
    body = text(mail)
    assert key in mail["Subject"] and "ERROR" in mail["Subject"]
    assert "VALUE_NOT_MAPPED" in body and "What to do:" in body
    assert "private summary text" not in body and "u9" not in body  # no issue contents
    # a second error within the hour waits; the next sweep after the hour tells it
    value_not_mapped(paired, "second")
    clock.advance(minutes=30)
    assert globex.notifications.check() == 0
    assert mail_server.maildir_count(recipient) == 1
    clock.advance(minutes=31)
    assert globex.notifications.check() == 1
    mails = wait_mails(mail_server, recipient, 2)
    assert "VALUE_NOT_MAPPED" in text(mails[1])
    assert kinds(globex, key) == [ISSUE_ERROR, ISSUE_ERROR]
    clock.advance(hours=2)
    assert globex.notifications.check() == 0  # nothing new: nothing told again


def test_held_messages_and_other_synchronizations_are_not_told(paired: Demo, mail_server: MailServer) -> None:
    globex, key = paired.globex, paired.key
    recipient, clock = use_server(globex, mail_server)
    value_not_mapped(paired, "nobody listens")  # no recipients yet: nothing to tell
    assert globex.notifications.check() == 0
    globex.notifications.change_recipients(key, add=[recipient])
    clock.advance(minutes=2)
    assert globex.notifications.check() == 0
    assert kinds(globex, key) == []


def test_a_stop_by_a_failure_mails_once(
    paired: Demo, mail_server: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme, key = paired.acme, paired.key
    recipient, clock = use_server(acme, mail_server)
    acme.notifications.change_recipients(key, add=[recipient])
    read = acme.tracker.read_issue

    def buggy(issue_id: str):  # type: ignore[no-untyped-def]
        data = read(issue_id)
        if data is not None and data.fields["summary"] == "boom":
            raise RuntimeError("injected bug")
        return data

    monkeypatch.setattr(acme.tracker, "read_issue", buggy)
    acme.tracker.create_issue("ACME", "Task", {"summary": "boom"}, as_user="alice")
    Engine(acme).run_once()  # the stop is told from the engine's own housekeeping
    assert acme.sync_info(key).status == "STOPPED"
    [mail] = wait_mails(mail_server, recipient, 1)
    assert "stopped because of a failure" in mail["Subject"]
    assert "injected bug" not in text(mail)  # the exception's type only
    clock.advance(hours=2)
    assert acme.notifications.check() == 0  # the same stop is told once
    assert kinds(acme, key) == [STOPPED]


def test_an_unreachable_partner_is_told_past_the_threshold(paired: Demo, mail_server: MailServer) -> None:
    globex, key = paired.globex, paired.key
    recipient, clock = use_server(globex, mail_server)
    globex.notifications.change_recipients(key, add=[recipient])
    globex.change_settings(key, {"unreachable_after": "600"})
    side = globex.queries.sides_of(key)[0]
    assert globex.pipeline.report_channel(side, "exchange folder missing")
    since = side_row(globex, key).channel_error_since
    assert since is not None
    clock.advance(minutes=5)
    assert globex.notifications.check() == 0  # within the threshold
    clock.advance(minutes=6)
    assert globex.notifications.check() == 1
    [mail] = wait_mails(mail_server, recipient, 1)
    assert "unreachable" in mail["Subject"]
    assert globex.pipeline.report_channel(side, "")
    assert side_row(globex, key).channel_error_since is None
    assert kinds(globex, key) == [UNREACHABLE]


def test_a_draft_received_and_declined_are_told(review_pair: Demo, mail_server: MailServer) -> None:
    acme, globex, key = review_pair.acme, review_pair.globex, review_pair.key
    acme_to, _ = use_server(acme, mail_server)
    globex_to, _ = use_server(globex, mail_server)
    acme.notifications.change_recipients(key, add=[acme_to])
    globex.notifications.change_recipients(key, add=[globex_to])
    publish(review_pair, 2)
    Engine(acme).run_once()
    Engine(globex).run_once()
    assert globex.sync_info(key).draft_state == DraftState.RECEIVED
    [mail] = wait_mails(mail_server, globex_to, 1)
    assert "draft was received" in mail["Subject"]
    globex.decline_config(key, "We keep owners to ourselves")
    Engine(globex).run_once()
    Engine(acme).run_once()
    assert acme.sync_info(key).draft_state == DraftState.DECLINED
    [mail] = wait_mails(mail_server, acme_to, 1)
    assert "declined" in mail["Subject"]
    assert "We keep owners" not in text(mail)
    assert kinds(globex, key) == [DRAFT_RECEIVED] and kinds(acme, key) == [DRAFT_DECLINED]


def test_a_key_near_its_expiry_is_told_once(paired: Demo, mail_server: MailServer) -> None:
    acme, key = paired.acme, paired.key
    recipient, clock = use_server(acme, mail_server)
    acme.notifications.change_recipients(key, add=[recipient])
    change_side(acme, key, partner_key_expires=clock.at + timedelta(days=40))
    assert acme.notifications.check() == 0  # 40 days: not yet
    clock.advance(days=11)
    assert acme.notifications.check() == 1
    [mail] = wait_mails(mail_server, recipient, 1)
    assert "expires soon" in mail["Subject"] and "partner's key" in text(mail)
    clock.advance(days=1)
    assert acme.notifications.check() == 0
    assert kinds(acme, key) == [KEY_EXPIRING]


def test_a_failing_mail_server_does_not_stop_the_engine(
    paired: Demo, mail_server: MailServer, caplog: pytest.LogCaptureFixture
) -> None:
    globex, key = paired.globex, paired.key
    recipient, clock = use_server(globex, mail_server)
    globex.notifications.change_recipients(key, add=[recipient])
    mail_server.reject_all = True
    try:
        with caplog.at_level(logging.WARNING, logger="backbone.notify"):
            value_not_mapped(paired, "while the server refuses")  # the engine's pass does not raise
            assert globex.notifications.check() == 0
        assert any(
            "could not be sent" in r.getMessage() for r in caplog.records if r.name == "backbone.notify"
        )
        assert not any("pw-" in r.getMessage() for r in caplog.records)  # no password in the log
        assert kinds(globex, key) == []
        paired.acme.tracker.create_issue("ACME", "Task", {"summary": "still syncs"}, as_user="alice")
        sync_all(paired)
        assert issue_by_summary(paired.globex, "GLOBEX", "still syncs") is not None
    finally:
        mail_server.reject_all = False
    clock.advance(seconds=RETRY_SECONDS + 61)  # the account's retry and the next sweep are due
    assert globex.notifications.check() == 1
    [mail] = wait_mails(mail_server, recipient, 1)
    assert "VALUE_NOT_MAPPED" in text(mail)


def test_an_email_synchronization_notifies_by_its_own_account(
    tmp_path: Path, mail_server: MailServer
) -> None:
    demo = pair_installations(tmp_path / "demo", encryption=False, mail=mail_server.pairing_settings())
    try:
        acme, key = demo.acme, demo.key
        recipient, _ = mail_server.new_account("ops")
        acme.notifications.change_recipients(key, add=[recipient])
        assert acme.notifications.account() is None  # no installation-wide account
        change_side(acme, key, own_key_expires=utcnow() + timedelta(days=3))
        assert acme.notifications.check() == 1
        [mail] = wait_mails(mail_server, recipient, 1)
        assert mail["From"] == acme.sync_info(key).mail["send"]["from_addr"]
    finally:
        demo.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_recipients_account_and_test_mail(
    paired: Demo, mail_server: MailServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, key = str(paired.acme.paths.root), paired.key
    assert cli(capsys, "--home", home, "sync", "notify", key)[1].startswith(f"{key}: nobody is notified")
    code, out, _ = cli(
        capsys, "--home", home, "sync", "notify", key, "--add", "a@acme.test", "--add", "b@acme.test"
    )
    assert (code, out.split()) == (0, ["a@acme.test", "b@acme.test"])
    code, out, _ = cli(capsys, "--home", home, "sync", "notify", key, "--remove", "a@acme.test", "--json")
    assert (code, json.loads(out)) == (0, {"sync": key, "recipients": ["b@acme.test"]})
    code, _, err = cli(capsys, "--home", home, "sync", "notify", key, "--add", "not an address")
    assert code == 1 and "--add" in err and "expected one email address" in err
    code, _, err = cli(capsys, "--home", home, "sync", "notify", key, "--remove", "c@acme.test")
    assert code == 1 and "is not a recipient" in err
    assert cli(capsys, "--home", home, "sync", "notify", "NOPE-1")[0] == 1

    sender, password = mail_server.new_account("notifier")
    monkeypatch.setenv("BACKBONE_NOTIFY_SMTP_PASSWORD", password)
    smtp = [
        "notify",
        "smtp",
        "--host",
        mail_server.host,
        "--port",
        str(mail_server.smtp_port),
        "--tls",
        "none",
    ]
    code, out, _ = cli(capsys, "--home", home, *smtp, "--user", sender, "--from", sender)
    assert code == 0 and "notifications go out by" in out
    code, out, _ = cli(capsys, "--home", home, "notify", "show", "--json")
    shown = json.loads(out)
    assert shown["smtp"]["from_addr"] == sender and shown["smtp"]["password_set"] is True
    assert password not in out
    assert password not in cli(capsys, "--home", home, "notify", "show")[1]
    recipient, _ = mail_server.new_account("ops")
    code, out, _ = cli(capsys, "--home", home, "notify", "test", recipient)
    assert code == 0 and f"sent a test mail to {recipient}" in out
    [mail] = wait_mails(mail_server, recipient, 1)
    assert "test" in mail["Subject"]
    monkeypatch.setenv("BACKBONE_NOTIFY_SMTP_PASSWORD", "wrong")
    code, _, err = cli(capsys, "--home", home, "notify", "test", recipient)
    assert code == 1 and "login" in err and "wrong" not in err
    code, _, err = cli(capsys, "--home", home, "notify", "smtp", "--host", "h", "--from", "nope")
    assert code == 1 and "--from" in err


def test_without_an_account_the_condition_waits_and_is_logged_once(
    paired: Demo, mail_server: MailServer, caplog: pytest.LogCaptureFixture
) -> None:
    acme, key = paired.acme, paired.key
    recipient, _ = mail_server.new_account("ops")
    clock = Clock()
    acme.notifications.now = clock
    acme.notifications.change_recipients(key, add=[recipient])
    change_side(acme, key, own_key_expires=clock.at + timedelta(days=5))
    with caplog.at_level(logging.WARNING, logger="backbone.notify"):
        for _ in range(3):
            clock.advance(minutes=2)
            assert acme.notifications.check() == 0
    assert len([r for r in caplog.records if "no account" in r.getMessage()]) == 1
    sender, password = mail_server.new_account("notifier")
    acme.notifications.set_account(
        SmtpSettings(mail_server.host, mail_server.smtp_port, "none", sender, password, sender)
    )
    clock.advance(minutes=2)
    assert acme.notifications.check() == 1
    wait_mails(mail_server, recipient, 1)


def test_deleting_a_synchronization_forgets_its_recipients_and_notifications(paired: Demo) -> None:
    inst = paired.acme
    inst.notifications.change_recipients(paired.key, add=["ops@acme.example"])
    with inst.db.write() as s:
        s.add(Notification(sync_key=paired.key, kind="error", at=utcnow(), recipients="[]", text="x"))
        s.add(Setting(name=f"notify.state.{paired.key}", value="{}"))
    inst.stop([paired.key])
    inst.delete(paired.key)
    with inst.db.session() as s:
        assert s.exec(select(NotifyRecipient)).all() == []
        assert s.exec(select(Notification)).all() == []
        assert s.get(Setting, f"notify.state.{paired.key}") is None
