"""Pilot tests of the new-synchronization wizard: every page's checks, the engine's errors next to
their field, cancel keeping what was typed, a primary and a secondary over the file channel and over
e-mail against the private test mail server; real homes, real gpg (no mocks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, RadioButton, Select, Static

from engine.channels.email import MailSettings
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.vocab import SyncStatus
from screens.wizard import NewSyncWizard
from tests.conftest import cross_link
from tests.mailserver import mail_pair, mail_server  # noqa: F401  (fixtures)

from .conftest import make_app, run, settle


def wizard(pilot: Pilot[Any]) -> NewSyncWizard:
    screen = pilot.app.screen
    assert isinstance(screen, NewSyncWizard), screen
    return screen


async def press_button(pilot: Pilot[Any], button_id: str) -> None:
    """Press a button as a keyboard user would: focus it (scrolled into view) and press enter."""
    button = wizard(pilot).query_one(f"#{button_id}", Button)
    button.focus()
    await pilot.pause()
    await pilot.press("enter")


def error_of(screen: NewSyncWizard, widget_id: str) -> str:
    return str(screen.query_one(f"#err-{widget_id}", Static).render())


def put(screen: NewSyncWizard, **values: Any) -> None:
    """Fill inputs (by id, `-` written as `_`), checkboxes and selects."""
    for name, value in values.items():
        widget = screen.query_one(f"#{name.replace('__', '-')}")
        if isinstance(widget, Input | Checkbox | Select):
            widget.value = value
        elif isinstance(widget, RadioButton):
            widget.value = True


async def next_page(pilot: Pilot[Any], page: str) -> None:
    await pilot.press("pagedown")
    await settle(pilot)
    assert wizard(pilot).page == page, (
        wizard(pilot).page,
        str(pilot.app.screen.query_one("#wizard-error").render()),
    )


def home_with(tmp_path: Path, name: str, project: str) -> Installation:
    inst = Installation(tmp_path / name)
    inst.tracker.create_project(project, project.title())
    return inst


def test_primary_over_files_checks_each_page_and_writes_the_handshake(tmp_path: Path) -> None:
    acme = home_with(tmp_path, "acme", "ACME")
    app = make_app(acme)
    out = tmp_path / "out" / "acme.json"

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("n")
        screen = wizard(pilot)
        assert screen.page == "role"
        await next_page(pilot, "project")
        await pilot.press("pagedown")  # nothing chosen
        assert error_of(screen, "project") == "choose the local project"
        put(screen, project="ACME", user="sync user")
        await pilot.press("pagedown")
        assert "expected a user name" in error_of(screen, "user") and screen.page == "project"
        put(screen, user="backbone")
        await next_page(pilot, "protocol")
        put(screen, protocol__file=True)
        await pilot.pause()
        assert screen.pages() == [
            "role", "project", "protocol", "exchange", "security", "name", "handshake_out", "done"
        ]  # fmt: skip
        await next_page(pilot, "exchange")
        put(screen, exchange=str(tmp_path / "exchange"))
        await next_page(pilot, "security")
        assert screen.checked("encryption") and not screen.checked("review")
        await next_page(pilot, "name")
        assert screen.text("name") == "ACME synchronization"  # a default to start from
        put(screen, name="  ", partner_project="globex")
        await pilot.press("pagedown")
        assert error_of(screen, "name") == "expected 1-120 characters"
        put(screen, name="Acme <-> Globex")
        await pilot.press("pagedown")
        assert "project key like GLOBEX" in error_of(screen, "partner_project")
        put(screen, partner_project="GLOBEX")
        await next_page(pilot, "handshake_out")
        assert screen.text("handshake_out") == "~/acme-handshake.json"
        assert str(screen.query_one("#wizard-next", Button).label) == "Create (pgdn)"
        put(screen, handshake_out=str(out))  # its folder does not exist: the engine says so
        await pilot.press("pagedown")
        await settle(pilot)
        assert screen.page == "handshake_out"
        assert "does not exist" in error_of(screen, "handshake_out")
        out.parent.mkdir()
        await next_page(pilot, "done")
        done = str(screen.query_one("#done-text", Static).render())
        assert "ACME-GLOBEX-1" in done and str(out) in done and "Deliver it securely" in done
        fingerprint = acme.own_key()[0]
        assert " ".join(fingerprint[i : i + 4] for i in range(0, 40, 4)) in done
        await pilot.press("pagedown")  # Close
        await settle(pilot)
        assert app.screen is app.overview
        assert app.overview.model.rows["ACME-GLOBEX-1"].status == SyncStatus.REQUEST_SENT
        assert json.loads(out.read_text())["sync"] == "ACME-GLOBEX-1"
        assert (tmp_path / "exchange" / "SEND").is_dir()

    try:
        run(app, scenario)
    finally:
        acme.close()


def test_cancel_keeps_what_was_typed_and_back_goes_back(tmp_path: Path) -> None:
    acme = home_with(tmp_path, "acme", "ACME")
    app = make_app(acme)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("n")
        await next_page(pilot, "project")
        put(wizard(pilot), project="ACME", user="sync-bot")
        await next_page(pilot, "protocol")
        await pilot.press("pageup")
        assert wizard(pilot).page == "project"
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is app.overview
        assert app.notices[-1][1].endswith("what you typed is kept for next time")
        await pilot.press("n")
        screen = wizard(pilot)
        assert screen.page == "project" and screen.text("user") == "sync-bot" and screen.project() == "ACME"

    try:
        run(app, scenario)
    finally:
        acme.close()


def primary_request(tmp_path: Path, acme: Installation, **options: Any) -> Path:
    (tmp_path / "ex-acme").mkdir()
    _, path = acme.create_primary(
        project="ACME",
        user="backbone",
        protocol=options.pop("protocol", "file"),
        name="Acme <-> Globex",
        handshake_out=tmp_path / "acme.json",
        exchange=options.pop("exchange", tmp_path / "ex-acme"),
        partner_project="GLOBEX",
        **options,
    )
    return path


def test_secondary_reads_the_handshake_file_confirms_the_key_and_accepts(tmp_path: Path) -> None:
    acme = home_with(tmp_path, "acme", "ACME")
    globex = home_with(tmp_path, "globex", "GLOBEX")
    handshake = primary_request(tmp_path, acme)
    altered = tmp_path / "altered.json"
    data = json.loads(handshake.read_text())
    altered.write_text(json.dumps({**data, "name": "Someone else"}))
    cross_link(tmp_path / "ex-acme", tmp_path / "ex-globex")
    app = make_app(globex)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("n")
        screen = wizard(pilot)
        put(screen, role__secondary=True)
        await pilot.pause()
        await next_page(pilot, "handshake")
        await pilot.press("pagedown")
        assert error_of(screen, "handshake").startswith("choose the handshake file")
        put(screen, handshake=str(tmp_path / "missing.json"))
        await pilot.press("pagedown")
        await settle(pilot)
        assert "not a readable handshake file" in error_of(screen, "handshake")
        put(screen, handshake=str(altered))
        await pilot.press("pagedown")
        await settle(pilot)
        assert "altered" in error_of(screen, "handshake") and screen.page == "handshake"
        put(screen, handshake=str(handshake))
        await next_page(pilot, "summary")
        summary = str(screen.query_one("#summary-text", Static).render())
        assert "Acme <-> Globex (ACME-GLOBEX-1)" in summary and "Partner project:  ACME" in summary
        fingerprint = acme.own_key()[0]
        assert " ".join(fingerprint[i : i + 4] for i in range(0, 40, 4)) in summary
        await pilot.press("pagedown")
        assert "compare the fingerprint" in error_of(screen, "fingerprint-ok")
        put(screen, fingerprint__ok=True)
        await next_page(pilot, "project")
        put(screen, project="GLOBEX")
        await next_page(pilot, "exchange")
        put(screen, exchange=str(tmp_path / "ex-globex"))
        await next_page(pilot, "accept")
        await next_page(pilot, "done")
        assert "HANDSHAKE" in str(screen.query_one("#done-text", Static).render())
        await pilot.press("pagedown")
        await settle(pilot)
        for _ in range(3):
            Engine(acme).run_once()
            Engine(globex).run_once()
        assert acme.sync_info("ACME-GLOBEX-1").status == SyncStatus.STOPPED
        assert globex.sync_info("ACME-GLOBEX-1").status == SyncStatus.STOPPED

    try:
        run(app, scenario)
    finally:
        acme.close()
        globex.close()


def fill_mail(screen: NewSyncWizard, settings: MailSettings, *, password: str | None = None) -> None:
    r, s = settings.receive, settings.send
    put(
        screen,
        receive__host=r.host,
        receive__port=str(r.port),
        receive__tls=r.tls,
        receive__username=r.username,
        receive__password=r.password if password is None else password,
        receive__folder=r.folder,
        send__host=s.host,
        send__port=str(s.port),
        send__tls=s.tls,
        send__from_addr=s.from_addr,
    )


def test_primary_over_email_tests_both_accounts(
    tmp_path: Path,
    mail_pair: tuple[MailSettings, MailSettings],  # noqa: F811
) -> None:
    acme = home_with(tmp_path, "acme", "ACME")
    app = make_app(acme)
    settings = mail_pair[0]

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("n")
        screen = wizard(pilot)
        await next_page(pilot, "project")
        put(screen, project="ACME")
        await next_page(pilot, "protocol")
        assert screen.protocol == "email"  # recommended, the default
        await next_page(pilot, "receive")
        await pilot.press("pagedown")
        assert error_of(screen, "receive-host") == "the server host is empty"
        fill_mail(screen, settings, password="wrong")
        await press_button(pilot, "test-receive")
        await settle(pilot)
        result = str(screen.query_one("#result-receive", Static).render())
        assert result.startswith("FAILED: ") and "IMAP" in result and "wrong" not in result
        put(screen, receive__password=settings.receive.password)
        await press_button(pilot, "test-receive")
        await settle(pilot)
        assert str(screen.query_one("#result-receive", Static).render()).startswith("OK: IMAP ")
        await next_page(pilot, "send")
        await press_button(pilot, "copy-credentials")
        assert screen.query_one("#send-password", Input).value == settings.receive.password
        put(screen, send__from_addr="not an address")
        await pilot.press("pagedown")
        shown = {w.id: str(w.render()) for w in screen.query(".w-error.-shown")}
        assert "is not an e-mail address" in error_of(screen, "send-from_addr"), shown
        put(screen, send__from_addr=settings.send.from_addr)
        await press_button(pilot, "test-send")
        await settle(pilot)
        assert str(screen.query_one("#result-send", Static).render()).startswith("OK: SMTP ")
        await next_page(pilot, "security")
        await next_page(pilot, "name")
        await next_page(pilot, "handshake_out")
        put(screen, handshake_out=str(tmp_path / "acme.json"))
        await next_page(pilot, "done")
        info = acme.sync_info("ACME-SYNC-1")
        assert (info.protocol, info.status) == ("email", SyncStatus.REQUEST_SENT)
        data = json.loads((tmp_path / "acme.json").read_text())
        assert data["primary"]["address"] == settings.send.from_addr

    try:
        run(app, scenario)
    finally:
        acme.close()


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_snapshots_of_the_wizard_pages(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """Each page of the primary (e-mail and file) and the secondary's summary (no key: fixed text)."""
    acme = home_with(tmp_path, "acme", "ACME")
    globex = home_with(tmp_path, "globex", "GLOBEX")
    handshake = primary_request(tmp_path, acme, encryption=False)
    try:
        pages = [
            [],
            ["pagedown", "pagedown"],  # the project page, with its error
            ["pagedown", "enter", "down", "enter", "pagedown"],  # protocol
            ["pagedown", "enter", "down", "enter", "pagedown", "pagedown"],  # receive
            ["pagedown", "enter", "down", "enter", "pagedown", "down", "enter", "pagedown"],  # exchange
        ]
        to_exchange = pages[-1]
        pages += [to_exchange + ["pagedown"] * n for n in (1, 2, 3)]  # security, name, handshake file
        for n, keys in enumerate(pages):
            assert snap_compare(make_app(acme), press=["n", *keys], terminal_size=size), f"page {n}"

        async def to_summary(pilot: Pilot[Any]) -> None:
            await settle(pilot)
            await pilot.press("n")
            put(wizard(pilot), role__secondary=True)
            await pilot.press("pagedown")
            put(wizard(pilot), handshake=str(handshake))
            await pilot.press("pagedown")
            await settle(pilot)

        assert snap_compare(make_app(globex), run_before=to_summary, terminal_size=size)

        async def to_send(pilot: Pilot[Any]) -> None:
            await settle(pilot)
            await pilot.press("n", "pagedown")
            put(wizard(pilot), project="ACME")
            await pilot.press("pagedown", "pagedown")  # e-mail, the default
            put(wizard(pilot), receive__host="imap.acme.example", receive__username="backbone@acme.example")
            await pilot.press("pagedown")
            await settle(pilot)
            assert wizard(pilot).page == "send"

        assert snap_compare(make_app(acme), run_before=to_send, terminal_size=size)

        async def to_accept(pilot: Pilot[Any]) -> None:
            await to_summary(pilot)
            await pilot.press("pagedown")  # no key to confirm: encryption is off
            put(wizard(pilot), project="GLOBEX")
            await pilot.press("pagedown", "pagedown")  # the exchange folder: blank, a folder in the home
            await settle(pilot)
            assert wizard(pilot).page == "accept"

        assert snap_compare(make_app(globex), run_before=to_accept, terminal_size=size)
    finally:
        acme.close()
        globex.close()
