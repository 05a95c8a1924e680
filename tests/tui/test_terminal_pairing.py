"""End to end with keys only: two `backbone` TUIs in tmux (Acme the primary, Globex the secondary,
file channel, encrypted) from the wizard to RUNNING, then an issue created on Acme shows up on
Globex. Each TUI runs its own engine, as on two machines."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.conftest import cross_link

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


def test_two_tuis_pair_configure_publish_bind_and_sync(tmp_path: Path) -> None:
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
        acme.keys("Down", "Enter", "PageDown")
        acme.wait(lambda s: "Exchange folder" in s)
        typed(acme, str(exchange / "acme"))
        acme.keys("PageDown")
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
        globex.wait(lambda s: "Exchange folder" in s)
        typed(globex, str(exchange / "globex"))
        globex.keys("PageDown")
        globex.wait(lambda s: "Accept the request now" in s)
        globex.keys("PageDown")
        globex.wait(lambda s: "step 7 of 7: Done" in s, timeout=60)
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
        globex.keys("Tab", "Space", "C-s")
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
