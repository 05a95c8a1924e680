"""End to end in a real terminal: `backbone` in tmux against the demo, read with capture-pane."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def backbone_command() -> list[str]:
    script = Path(sys.executable).with_name("backbone")
    return [str(script)] if script.exists() else [sys.executable, "-m", "backbone_tui.cli"]


class Terminal:
    """One tmux server of our own (its own socket), one window running a command."""

    def __init__(self, command: list[str], width: int, height: int) -> None:
        self.socket = f"backbone-test-{uuid.uuid4().hex[:8]}"
        shell = f"{shlex.join(command)}; echo backbone-exit-$?; sleep 60"
        env = {key: value for key, value in os.environ.items() if not key.startswith("TMUX")}
        subprocess.run(
            [
                "tmux",
                "-L",
                self.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                str(width),
                "-y",
                str(height),
                shell,
            ],
            check=True,
            env=env,
        )

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        for key in keys:  # one at a time: ESC then a letter would arrive as alt+letter
            self.tmux("send-keys", key)
            time.sleep(0.15)

    def wait(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never matched:\n{screen}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def demo_home(tmp_path: Path) -> Path:
    subprocess.run(
        [*backbone_command(), "demo", str(tmp_path / "demo"), "--no-tui"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return tmp_path / "demo" / "acme"


@pytest.fixture
def terminal(demo_home: Path) -> Iterator[Terminal]:
    term = Terminal([*backbone_command(), "--home", str(demo_home)], 100, 30)
    yield term
    term.kill()


def row(screen: str, key: str) -> str:
    return next((line for line in screen.splitlines() if key in line and line.startswith("[")), "")


def test_backbone_in_a_real_terminal(terminal: Terminal) -> None:
    key = "ACME-GLOBEX-1"
    screen = terminal.wait(lambda s: "RUNNING" in row(s, key) and "q Quit" in s and "engine running" in s)
    assert "all projects" in screen
    assert row(screen, key).rstrip().endswith("...")

    terminal.keys("Space")
    screen = terminal.wait(lambda s: row(s, key).startswith("[x]"))
    assert "1 checked:" in screen and "Stop 1" in screen

    terminal.keys("x")  # bulk stop of the checked one
    # the row, the notice and the footer update in separate refreshes: wait for all three
    terminal.wait(lambda s: "STOPPED" in row(s, key) and f"Stopped {key}" in s and "Start 1" in s)

    terminal.keys("Enter")  # the row's menu; start from there
    terminal.wait(lambda s: "Create support ZIP" in s)
    terminal.keys("s")
    terminal.wait(lambda s: "RUNNING" in row(s, key))

    terminal.keys("p")  # project overview of the row's project, and back
    terminal.wait(lambda s: "project ACME" in s)
    terminal.keys("p")
    terminal.wait(lambda s: "all projects" in s)

    terminal.keys("?")
    terminal.wait(lambda s: "keys and commands" in s and "Start the checked synchronizations" in s)
    terminal.keys("Escape")
    terminal.wait(lambda s: "keys and commands" not in s and key in s)

    terminal.keys("q")
    terminal.wait(lambda s: "backbone-exit-0" in s)
