"""The engine's workers sleep until woken: tracker writes (here or in another process), watched
inboxes and queued messages wake them; their safety checks are only a fallback.

Each test starts engines whose safety intervals are an hour, so a change that arrives within
the (generous) deadline can only have been carried by wake-ups."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runtime import engine as engine_module
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine, wait_until
from engine.store import fsutil, notify

from .conftest import issue_by_summary, sync_all

HOUR = 3600.0
DEADLINE = 30.0


@pytest.fixture
def sleepy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every periodic check of the engine once an hour, none spread over time."""
    for name in (
        "DETECT_INTERVAL",
        "SAFETY_INTERVAL",
        "SEND_INTERVAL",
        "SCAN_INTERVAL",
        "APPLY_INTERVAL",
        "HOUSEKEEPING_INTERVAL",
        "SIDES_TTL",
    ):
        monkeypatch.setattr(engine_module, name, HOUR)
    monkeypatch.setattr(engine_module, "SAFETY_SCANS_PER_SECOND", 0.0)


@pytest.fixture
def running(paired: Demo, sleepy: None) -> Iterator[tuple[Demo, str, str]]:
    """The pair with one synced issue and both engines started: (demo, Acme key, its summary)."""
    issue = paired.acme.tracker.create_issue("ACME", "Task", {"summary": "before"}, as_user="alice")
    sync_all(paired)
    assert issue_by_summary(paired.globex, "GLOBEX", "before") is not None
    key = paired.acme.tracker.read_issue(issue).key  # type: ignore[union-attr]
    engines = [Engine(paired.acme), Engine(paired.globex)]
    for engine in engines:
        engine.start()
    try:
        yield paired, key, "before"
    finally:
        for engine in engines:
            engine.stop()


def test_a_change_written_by_another_process_is_applied_promptly(running: tuple[Demo, str, str]) -> None:
    demo, key, _ = running
    home = demo.acme.paths.root
    # the CLI in its own process: its tracker write touches the home's notice file
    subprocess.run(
        [sys.executable, "-m", "backbone_tui.cli", "--home", str(home), "issue", "update", key]
        + ["--set", "summary=from another process"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (notify.notify_folder(home) / notify.TRACKER_CHANGED).is_file()
    assert wait_until(
        lambda: issue_by_summary(demo.globex, "GLOBEX", "from another process") is not None, DEADLINE
    )


def test_a_change_written_in_this_process_wakes_detection_directly(running: tuple[Demo, str, str]) -> None:
    demo, key, _ = running
    demo.acme.tracker.notice_file = None  # no file: only the in-process listener can wake it
    issue_id = demo.acme.tracker.issue_key_to_id(key)
    demo.acme.tracker.update_issue(issue_id, {"summary": "in this process"}, as_user="alice")
    assert wait_until(
        lambda: issue_by_summary(demo.globex, "GLOBEX", "in this process") is not None, DEADLINE
    )


def test_messages_waiting_in_the_inbox_at_start_are_taken_at_once(paired: Demo, sleepy: None) -> None:
    """A watch sees no file that came before it: a start scans each watched inbox once."""
    paired.acme.tracker.create_issue(
        "ACME", "Task", {"summary": "sent while Globex was down"}, as_user="alice"
    )
    Engine(paired.acme).run_once()  # sent: it waits in Globex's RECEIVE
    engine = Engine(paired.globex)
    engine.start()
    try:
        assert wait_until(
            lambda: issue_by_summary(paired.globex, "GLOBEX", "sent while Globex was down") is not None,
            DEADLINE,
        )
    finally:
        engine.stop()


def test_a_synchronization_started_by_another_process_runs_at_once(paired: Demo, sleepy: None) -> None:
    home = paired.acme.paths.root
    paired.acme.stop([paired.key])
    engines = [Engine(paired.acme), Engine(paired.globex)]
    for engine in engines:
        engine.start()
    try:
        for args in (
            ["sync", "start", paired.key],
            [
                "issue",
                "create",
                "--project",
                "ACME",
                "--type",
                "Task",
                "--summary",
                "after a start elsewhere",
            ],
        ):
            subprocess.run(
                [sys.executable, "-m", "backbone_tui.cli", "--home", str(home), *args],
                check=True,
                capture_output=True,
                timeout=60,
            )
        assert (notify.notify_folder(home) / notify.SYNCS_CHANGED).is_file()
        assert wait_until(
            lambda: issue_by_summary(paired.globex, "GLOBEX", "after a start elsewhere") is not None, DEADLINE
        )
    finally:
        for engine in engines:
            engine.stop()


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw
41 22 0:40 / /srv/exchange rw,relatime shared:20 - nfs4 files.partner.example:/x rw,vers=4.2
42 22 0:41 / /mnt/my\\040share rw,relatime shared:21 - cifs //nas/share rw
43 41 0:42 / /srv/exchange/local rw,relatime shared:22 - ext4 /dev/vdb rw
"""


def test_the_mount_holding_a_path_is_read_from_mountinfo() -> None:
    assert fsutil.mount_of("/srv/exchange/acme/RECEIVE", MOUNTINFO) == ("/srv/exchange", "nfs4")
    assert fsutil.mount_of("/srv/exchange/local/RECEIVE", MOUNTINFO) == ("/srv/exchange/local", "ext4")
    assert fsutil.mount_of("/mnt/my share/RECEIVE", MOUNTINFO) == ("/mnt/my share", "cifs")
    assert fsutil.mount_of("/srv/exchanged", MOUNTINFO) == ("/", "ext4")  # a prefix is not a parent
    assert fsutil.mount_of("/tmp", MOUNTINFO) == ("/tmp", "tmpfs")
    assert fsutil.network_filesystem(Path("/")) is None  # this machine's root is local


def test_an_inbox_on_a_network_share_is_scanned_not_watched(
    paired: Demo, sleepy: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """inotify sees nothing another machine writes to an NFS or SMB share, so a watch there would
    never wake anyone: such an inbox is scanned every `scan_interval` (2 s by default) instead.
    No network file system can be mounted on this machine: the file system type of the exchange
    folder is the one thing faked here."""
    exchange = str(paired.root / "exchange")
    monkeypatch.setattr(
        fsutil, "network_filesystem", lambda path: "nfs4" if str(path).startswith(exchange) else None
    )
    engines = [Engine(paired.acme), Engine(paired.globex)]
    with caplog.at_level("INFO", logger="backbone.engine"):
        for engine in engines:
            engine.start()
        try:
            paired.acme.tracker.create_issue("ACME", "Task", {"summary": "over the share"}, as_user="alice")
            assert wait_until(
                lambda: issue_by_summary(paired.globex, "GLOBEX", "over the share") is not None, DEADLINE
            )
        finally:
            for engine in engines:
                engine.stop()
    shares = [r.getMessage() for r in caplog.records if "on a network share (nfs4)" in r.getMessage()]
    assert shares and all("scan it every scan_interval" in text for text in shares)
