"""End to end with keys only: two `backbone` TUIs in tmux (Acme the primary, Globex the secondary,
encrypted; over the file channel, and over e-mail against the private test mail server) from the
wizard to RUNNING, then an issue created on Acme shows up on Globex. Each TUI runs its own engine,
as on two machines."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cross_link
from tests.mailserver import dovecot_available, mail_server  # noqa: F401  (fixture)

from .test_terminal import Terminal, backbone_command, pytestmark  # noqa: F401  (skips without tmux)


def cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [*backbone_command(), "--home", str(home), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def typed(terminal: Terminal, text: str) -> None:
    terminal.tmux("send-keys", "-l", text)
    time.sleep(0.2)


def row(screen: str, key: str) -> str:
    return next((line for line in screen.splitlines() if key in line), "")


def fill_mail(terminal: Terminal, settings: Any) -> None:
    """The receive page, then the send page, typed field by field (tab moves on)."""
    r, s = settings.receive, settings.send
    terminal.wait(lambda screen: "Receive e-mails" in screen)
    for text in (r.host, str(r.port)):
        typed(terminal, text)
        terminal.keys("Tab")
    terminal.keys("Enter", "Up", "Up", "Enter", "Tab")  # connection security: none (loopback test)
    for text in (r.username, r.password):
        typed(terminal, text)
        terminal.keys("Tab")
    terminal.keys("PageDown")
    terminal.wait(lambda screen: "Send e-mails" in screen)
    for text in (s.host, str(s.port)):
        typed(terminal, text)
        terminal.keys("Tab")
    terminal.keys("Enter", "Up", "Enter", "Tab")  # starttls -> none
    for text in (s.username, s.password, s.from_addr):
        typed(terminal, text)
        terminal.keys("Tab")
    terminal.keys("PageDown")


@pytest.mark.parametrize("channel", ["file", "email"])
def test_two_tuis_pair_configure_publish_bind_and_sync(
    tmp_path: Path, channel: str, request: pytest.FixtureRequest
) -> None:
    mail: tuple[Any, Any] | None = None
    if channel == "email":
        if not dovecot_available():
            pytest.skip("dovecot is not installed: apt-get install dovecot-imapd dovecot-lmtpd")
        mail = request.getfixturevalue("mail_server").pairing_settings()
    acme_home, globex_home, exchange = tmp_path / "acme", tmp_path / "globex", tmp_path / "exchange"
    cli(acme_home, "project", "create", "ACME", "--name", "Acme")
    cli(globex_home, "project", "create", "GLOBEX", "--name", "Globex")
    cross_link(exchange / "acme", exchange / "globex")
    handshake = tmp_path / "acme-handshake.json"
    acme = Terminal([*backbone_command(), "--home", str(acme_home)], 100, 30)
    globex = Terminal([*backbone_command(), "--home", str(globex_home)], 100, 30)
    try:
        acme.wait(lambda s: "engine running" in s)
        globex.wait(lambda s: "engine running" in s)
        # Acme: the primary's wizard
        acme.keys("n")
        acme.wait(lambda s: "What do you want to do?" in s)
        acme.keys("PageDown")
        acme.wait(lambda s: "Local project" in s)
        acme.keys("Enter", "Down", "Enter", "PageDown")
        acme.wait(lambda s: "How messages travel" in s)
        if mail is None:
            acme.keys("Down", "Enter", "PageDown")
            acme.wait(lambda s: "Exchange folder" in s)
            typed(acme, str(exchange / "acme"))
            acme.keys("PageDown")
        else:
            acme.keys("PageDown")
            fill_mail(acme, mail[0])
        acme.wait(lambda s: "Encryption and review mode" in s)
        acme.keys("PageDown")
        acme.wait(lambda s: "Name and description" in s)
        acme.keys("PageDown")
        acme.wait(lambda s: "Write the handshake file" in s)
        typed(acme, str(handshake))
        acme.keys("PageDown")
        acme.wait(lambda s: "Deliver it securely" in s, timeout=60)
        acme.keys("PageDown")
        key = "ACME-SYNC-1"
        acme.wait(lambda s: "REQUEST SENT" in row(s, key))
        # Globex: the secondary's wizard, from the handshake file
        globex.keys("n")
        globex.wait(lambda s: "What do you want to do?" in s)
        globex.keys("Down", "Enter", "PageDown")
        globex.wait(lambda s: "handshake file" in s.lower() and "step 2" in s)
        typed(globex, str(handshake))
        globex.keys("PageDown")
        globex.wait(lambda s: "Key fingerprint" in s, timeout=60)
        globex.keys("Space", "PageDown")
        globex.wait(lambda s: "Local project" in s)
        globex.keys("Enter", "Down", "Enter", "PageDown")
        if mail is None:
            globex.wait(lambda s: "Exchange folder" in s)
            typed(globex, str(exchange / "globex"))
            globex.keys("PageDown")
        else:
            fill_mail(globex, mail[1])
        globex.wait(lambda s: "Accept the request now" in s)
        globex.keys("PageDown")
        globex.wait(lambda s: ": Done" in s and "Created " in s, timeout=60)
        globex.keys("PageDown")
        acme.wait(lambda s: "STOPPED" in row(s, key), timeout=60)
        globex.wait(lambda s: "STOPPED" in row(s, key), timeout=60)
        # Acme labels its generated draft and publishes it
        acme.keys("c")
        acme.wait(lambda s: f"Configure {key}" in s)
        acme.keys("L")
        acme.wait(lambda s: "Labelled" in s)
        acme.keys("P")
        acme.wait(lambda s: "Message to the partner" in s, timeout=30)
        typed(acme, "Everything, labelled with our names")
        acme.keys("C-s")
        acme.wait(lambda s: "WAITING FOR PARTNER" in s, timeout=30)
        acme.keys("Escape")
        # Globex reviews it, binds by the labels and publishes, starting at once
        globex.wait(lambda s: "UPDATE REQUIRED" in row(s, key), timeout=60)
        globex.keys("i")
        globex.wait(lambda s: "Everything, labelled" in s, timeout=30)
        globex.keys("y")
        globex.wait(lambda s: f"Configure {key}" in s, timeout=30)
        globex.keys("B")
        globex.wait(lambda s: "Bound " in s and "0 type(s)/status(es) left" in s)
        globex.keys("P")
        globex.wait(lambda s: "Bind and put in force" in s, timeout=30)
        globex.keys("C-t")
        globex.wait(lambda s: "[x] Start synchronizing" in s)
        globex.keys("C-s")
        globex.wait(lambda s: "RUNNING" in s, timeout=30)
        globex.keys("Escape")
        globex.wait(lambda s: "RUNNING" in row(s, key), timeout=30)
        # Acme has the version in force once the acknowledgement arrives; it starts too
        acme.wait(lambda s: "STOPPED" in row(s, key), timeout=60)
        acme.keys("s")
        acme.wait(lambda s: "RUNNING" in row(s, key), timeout=30)
        cli(
            acme_home,
            "issue",
            "create",
            "--project",
            "ACME",
            "--type",
            "Bug",
            "--summary",
            "From the TUI pair",
        )
        deadline = time.monotonic() + 60
        while True:
            issues = json.loads(cli(globex_home, "issue", "list", "--project", "GLOBEX", "--json"))
            if any(i["fields"]["summary"] == "From the TUI pair" for i in issues):
                break
            assert time.monotonic() < deadline, f"not synced: {issues}\n{globex.screen()}"
            time.sleep(0.5)
    finally:
        acme.kill()
        globex.kill()
