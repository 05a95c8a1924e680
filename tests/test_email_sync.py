"""Two installations syncing through a real private Dovecot and SMTP relay (no mocked mail library)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest

from backbone_tui.cli import main
from engine.errors import BackboneError
from engine.runtime.demo import Demo, pair_installations
from engine.runtime.engine import Engine, wait_until
from engine.service.installation import Installation
from engine.vocab import Folder
from tests import mailserver
from tests.mailserver import MailServer

from .conftest import issue_by_summary, sync_all
from .hostile import compression_bomb

mail_server = mailserver.mail_server


def _pair(tmp_path: Path, server: MailServer, *, encryption: bool) -> Demo:
    return pair_installations(tmp_path / "demo", encryption=encryption, mail=server.pairing_settings())


@pytest.fixture
def mail_pair_gpg(tmp_path: Path, mail_server: MailServer) -> Iterator[Demo]:
    demo = _pair(tmp_path, mail_server, encryption=True)
    yield demo
    demo.close()


@pytest.fixture
def mail_pair_plain(tmp_path: Path, mail_server: MailServer) -> Iterator[Demo]:
    demo = _pair(tmp_path, mail_server, encryption=False)
    yield demo
    demo.close()


def address(demo: Installation, key: str) -> str:
    return str(demo.sync_info(key).mail["address"])


def test_encrypted_sync_both_ways_over_email(mail_pair_gpg: Demo, mail_server: MailServer) -> None:
    demo = mail_pair_gpg
    acme_info = demo.acme.sync_info(demo.key)
    assert acme_info.status == "RUNNING" and acme_info.protocol == "email"
    assert acme_info.mail["send"]["to_addr"] == address(demo.globex, demo.key)
    t = demo.acme.tracker
    bug = t.create_issue("ACME", "Bug", {"summary": "Mailed bug", "priority": "High"}, as_user="alice")
    t.add_comment(bug, "over email", as_user="alice")
    t.add_attachment(bug, "log.txt", b"x" * 5000, as_user="alice")
    sync_all(demo)
    mirrored = issue_by_summary(demo.globex, "GLOBEX", "Mailed bug")
    assert mirrored is not None and [a.size for a in mirrored.attachments] == [5000]
    demo.globex.tracker.update_issue(mirrored.id, {"summary": "Mailed bug, answered"}, as_user="carol")
    sync_all(demo)
    assert demo.acme.tracker.read_issue(bug).fields["summary"] == "Mailed bug, answered"  # type: ignore[union-attr]
    for inst in (demo.acme, demo.globex):
        inbox = address(inst, demo.key)
        assert mail_server.maildir_count(inbox, "INBOX") == 0, "processed mails leave the inbox"
        assert mail_server.maildir_count(inbox, "Backbone.Processed") > 0


def test_smtp_outage_sends_later_in_order(mail_pair_plain: Demo, mail_server: MailServer) -> None:
    demo = mail_pair_plain
    mail_server.stop_smtp()
    try:
        issue = demo.acme.tracker.create_issue("ACME", "Task", {"summary": "during outage"}, as_user="alice")
        demo.acme.tracker.add_comment(issue, "second", as_user="alice")
        Engine(demo.acme).run_once()
        errors = demo.acme.messages(demo.key, Folder.SEND_ERROR)
        assert [m.reason_code for m in errors] == ["MAIL_SEND_FAILED"]
        assert "SMTP" in errors[0].reason_text
        assert len(demo.acme.messages(demo.key, Folder.SEND)) == 1
    finally:
        mail_server.start_smtp()
    demo.acme.retry(demo.key)
    sync_all(demo)
    mirrored = issue_by_summary(demo.globex, "GLOBEX", "during outage")
    assert mirrored is not None and [c.body for c in mirrored.comments] == ["alice wrote:\nsecond"]


def test_wrong_password_shows_in_status_and_loses_nothing(mail_pair_plain: Demo) -> None:
    demo = mail_pair_plain
    variable = "BACKBONE_" + demo.key.replace("-", "_") + "_IMAP_PASSWORD"
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": "waits for login"}, as_user="alice")
    os.environ[variable] = "wrong-password"
    try:
        Engine(demo.acme).run_once()
        Engine(demo.globex).run_once()
        info = demo.globex.sync_info(demo.key)
        assert "login failed" in info.channel_error and "IMAP" in info.channel_error
        assert "wrong-password" not in json.dumps(info.to_json())
        assert issue_by_summary(demo.globex, "GLOBEX", "waits for login") is None
    finally:
        del os.environ[variable]
    sync_all(demo)
    assert issue_by_summary(demo.globex, "GLOBEX", "waits for login") is not None
    assert demo.globex.sync_info(demo.key).channel_error == ""


def test_foreign_and_odd_mails(mail_pair_plain: Demo, mail_server: MailServer) -> None:
    demo = mail_pair_plain
    inbox = address(demo.globex, demo.key)
    plain = EmailMessage()
    plain["From"], plain["To"], plain["Subject"] = "someone@example.test", inbox, "lunch?"
    plain.set_content("not a sync message")
    mail_server.lmtp_deliver("someone@example.test", inbox, plain.as_bytes())
    # one mail with two messages, one of them under a name with a path
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": "first of two"}, as_user="alice")
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": "second of two"}, as_user="alice")
    sync_all(demo)  # the normal path first, so the two creates exist
    acme = demo.acme
    bodies = [m for m in acme.messages(demo.key) if m.direction == "out" and m.type == "ISSUE"]
    data = [(acme.paths.data / demo.key / "ACME-1" / m.folder / m.file).read_bytes() for m in bodies]
    double = EmailMessage()
    double["From"], double["To"], double["Subject"] = "x@example.test", inbox, f"[Backbone] {demo.key}"
    double.set_content("two attachments")
    double.add_attachment(data[0], maintype="application", subtype="octet-stream", filename="../../a.bac")
    double.add_attachment(data[1], maintype="application", subtype="octet-stream", filename="b.bac")
    mail_server.lmtp_deliver("x@example.test", inbox, double.as_bytes())
    Engine(demo.globex).run_once()
    assert mail_server.maildir_count(inbox, "Backbone.Ignored") == 1, (
        "a foreign mail is set aside, not deleted"
    )
    seen = [m for m in demo.globex.messages(demo.key) if m.original_name in ("../../a.bac", "b.bac")]
    assert sorted((m.folder, m.reason_code) for m in seen) == [(Folder.OUTDATED, "DUPLICATE")] * 2
    assert not (demo.globex.paths.root.parent / "a.bac").exists()


def test_threaded_engines_use_idle(mail_pair_gpg: Demo, mail_server: MailServer) -> None:
    demo = mail_pair_gpg
    engines = [Engine(demo.acme), Engine(demo.globex)]
    for engine in engines:
        engine.start()
    try:
        demo.acme.tracker.create_issue("ACME", "Task", {"summary": "idle 1"}, as_user="alice")
        assert wait_until(lambda: issue_by_summary(demo.globex, "GLOBEX", "idle 1") is not None, 30)
        mail_server.stop_imap()
        demo.acme.tracker.create_issue("ACME", "Task", {"summary": "idle 2"}, as_user="alice")
        mail_server.start_imap()
        assert wait_until(lambda: issue_by_summary(demo.globex, "GLOBEX", "idle 2") is not None, 60)
    finally:
        for engine in engines:
            engine.stop()


def test_settings_are_checked_on_creation(tmp_path: Path, mail_server: MailServer) -> None:
    inst = Installation(tmp_path / "h")
    try:
        inst.tracker.create_project("ACME", "Acme")
        user, _ = mail_server.new_account("checked")
        settings = mail_server.settings(user, user)
        bad = replace(settings, receive=replace(settings.receive, password="nope"))
        with pytest.raises(BackboneError) as caught:
            inst.create_primary(
                project="ACME",
                user="bot",
                protocol="email",
                name="x",
                handshake_out=tmp_path / "hs.json",
                mail=bad,
            )
        text = str(caught.value)
        assert f"IMAP {mail_server.host}:{mail_server.imap_port}" in text and "login" in text
        assert "nope" not in text
        assert inst.list_syncs() == [] and not (tmp_path / "hs.json").exists()
        info, _ = inst.create_primary(
            project="ACME",
            user="bot",
            protocol="email",
            name="x",
            handshake_out=tmp_path / "hs.json",
            mail=settings,
        )
        assert "password" not in json.dumps(info.to_json())
        assert inst.test_channel(info.key) == ["ACME-1: IMAP and SMTP log-in work"]
        import zipfile

        from engine.service.support import create_support_zip

        with zipfile.ZipFile(create_support_zip(inst, info.key, tmp_path / "support.zip")) as archive:
            blob = b"".join(archive.read(name) for name in archive.namelist())
        assert mail_server.host.encode() in blob and settings.receive.password.encode() not in blob
    finally:
        inst.close()


def _create_email_primary(home: str, tmp_path: Path, server: MailServer, user: str, *extra: str) -> int:
    return main(
        [
            "--home",
            home,
            "sync",
            "create",
            "--role",
            "primary",
            "--project",
            "ACME",
            "--user",
            "bot",
            "--protocol",
            "email",
            "--name",
            "mail",
            "--handshake-out",
            str(tmp_path / "hs.json"),
            "--imap-host",
            server.host,
            "--imap-port",
            str(server.imap_port),
            "--imap-tls",
            "none",
            "--imap-user",
            user,
            "--smtp-host",
            server.host,
            "--smtp-port",
            str(server.smtp_port),
            "--smtp-tls",
            "none",
            "--same-credentials",
            "--from",
            user,
            *extra,
        ]
    )


def test_cli_creates_an_email_primary(
    tmp_path: Path, mail_server: MailServer, capsys: pytest.CaptureFixture[str]
) -> None:
    user, password = mail_server.new_account("cli")
    home = str(tmp_path / "h")
    main(["--home", home, "project", "create", "ACME", "--name", "Acme"])
    os.environ["BACKBONE_IMAP_PASSWORD"] = password
    try:
        code = _create_email_primary(home, tmp_path, mail_server, user)
    finally:
        del os.environ["BACKBONE_IMAP_PASSWORD"]
    out, err = capsys.readouterr()
    assert code == 0, err
    assert password not in out + err
    handshake = json.loads((tmp_path / "hs.json").read_text())
    assert handshake["primary"]["address"] == user
    assert password not in json.dumps(handshake)


def test_line_breaks_in_mail_settings_never_reach_a_server(
    mail_pair_plain: Demo, mail_server: MailServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = mail_pair_plain
    inbox = address(demo.globex, demo.key)
    variable = "BACKBONE_" + demo.key.replace("-", "_") + "_IMAP_PASSWORD"
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": "after the injection"}, as_user="alice")
    Engine(demo.acme).run_once()
    os.environ[variable] = "pw\r\nTAG DELETE INBOX"  # set by a service: checked where it is used
    try:
        Engine(demo.globex).run_once()
        error = demo.globex.sync_info(demo.key).channel_error
        assert "password contains a line break" in error and "not sent" in error
    finally:
        del os.environ[variable]
    assert mail_server.maildir_count(inbox, "INBOX") == 1, "the inbox and its mail are untouched"
    sync_all(demo)
    assert issue_by_summary(demo.globex, "GLOBEX", "after the injection") is not None
    user, _ = mail_server.new_account("crlf")
    home = str(tmp_path / "h")
    main(["--home", home, "project", "create", "ACME", "--name", "Acme"])
    capsys.readouterr()
    for password, extra, field in (
        ("pw\r\nTAG DELETE INBOX", [], "receive: the password"),
        ("pw", ["--imap-folder", "INBOX\r\nTAG DELETE INBOX"], "receive: the folder"),
        ("pw", ["--from", "bot@example.test\nRSET"], "send: the from address"),
    ):
        os.environ["BACKBONE_IMAP_PASSWORD"] = os.environ["BACKBONE_SMTP_PASSWORD"] = password
        try:
            assert _create_email_primary(home, tmp_path, mail_server, user, *extra) == 1
        finally:
            del os.environ["BACKBONE_IMAP_PASSWORD"], os.environ["BACKBONE_SMTP_PASSWORD"]
        assert f"{field} contains a line break" in capsys.readouterr().err


def test_email_demo(tmp_path: Path, mail_server: MailServer, capsys: pytest.CaptureFixture[str]) -> None:
    acme, acme_password = mail_server.new_account("demoacme")
    globex, globex_password = mail_server.new_account("demoglobex")
    os.environ["BACKBONE_DEMO_ACME_PASSWORD"] = acme_password
    os.environ["BACKBONE_DEMO_GLOBEX_PASSWORD"] = globex_password
    try:
        code = main(
            [
                "demo",
                str(tmp_path / "d"),
                "--protocol",
                "email",
                "--no-tui",
                "--mail-server",
                f"{mail_server.host}:{mail_server.imap_port}:{mail_server.smtp_port}",
                "--acme-mail",
                acme,
                "--globex-mail",
                globex,
            ]
        )
    finally:
        del os.environ["BACKBONE_DEMO_ACME_PASSWORD"], os.environ["BACKBONE_DEMO_GLOBEX_PASSWORD"]
    out = capsys.readouterr().out
    assert code == 0
    assert "issues synced: 4" in out


def test_compression_bomb_by_mail_is_rejected_and_leaves_the_inbox(
    mail_pair_gpg: Demo, mail_server: MailServer
) -> None:
    demo = mail_pair_gpg
    inbox = address(demo.globex, demo.key)
    bomb = EmailMessage()
    bomb["From"], bomb["To"], bomb["Subject"] = "x@example.test", inbox, f"[Backbone] {demo.key}"
    bomb.set_content("300 MB of zeros in a few hundred kB")
    bomb.add_attachment(
        compression_bomb(demo.globex, demo.key),
        maintype="application",
        subtype="octet-stream",
        filename="bomb.bac",
    )
    mail_server.lmtp_deliver("x@example.test", inbox, bomb.as_bytes())
    Engine(demo.globex).run_once()
    (message,) = [m for m in demo.globex.messages(demo.key) if m.original_name == "bomb.bac"]
    assert (message.folder, message.reason_code) == (Folder.REJECTED, "TOO_LARGE")
    assert mail_server.maildir_count(inbox, "INBOX") == 0
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": "after the bomb"}, as_user="alice")
    sync_all(demo)
    assert issue_by_summary(demo.globex, "GLOBEX", "after the bomb") is not None


def test_huge_mail_is_rejected_and_still_leaves_the_inbox(
    mail_pair_plain: Demo, mail_server: MailServer
) -> None:
    demo = mail_pair_plain
    demo.globex.pipeline.max_message_bytes = 100_000  # the default is 64 MiB; the rule is the same
    inbox = address(demo.globex, demo.key)
    huge = EmailMessage()
    huge["From"], huge["To"], huge["Subject"] = "x@example.test", inbox, f"[Backbone] {demo.key}"
    huge.set_content("one large attachment")
    huge.add_attachment(
        b"{" + b" " * 300_000 + b"}", maintype="application", subtype="octet-stream", filename="huge.bac"
    )
    mail_server.lmtp_deliver("x@example.test", inbox, huge.as_bytes())
    Engine(demo.globex).run_once()
    (message,) = [m for m in demo.globex.messages(demo.key) if m.original_name == "huge.bac"]
    assert (message.folder, message.reason_code) == (Folder.REJECTED, "TOO_LARGE")
    assert mail_server.maildir_count(inbox, "INBOX") == 0
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": "after the huge one"}, as_user="alice")
    sync_all(demo)
    assert issue_by_summary(demo.globex, "GLOBEX", "after the huge one") is not None
