"""`sync settings`: validated advanced settings that a running engine uses without a restart."""

from __future__ import annotations

import json
import os
import time

import pytest
from sqlmodel import select

from backbone_tui.cli import main
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine, wait_until
from engine.store.models import Message
from engine.vocab import Folder, Reason


def test_settings_list_change_and_refuse(paired: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(paired.acme.paths.root)]
    assert main([*home, "sync", "settings", paired.key, "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["resend_after"] == {
        "name": "resend_after",
        "value": 600,
        "default": 600,
        "unit": "seconds",
        "changed": False,
        "help": rows["resend_after"]["help"],
    }
    assert {"retention_sent", "retention_processed", "scan_interval", "max_message_bytes"} <= set(rows)
    assert (
        main(
            [*home, "sync", "settings", paired.key, "--set", "resend_after=120", "--set", "retention_sent=7"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "120 *" in out and "settings changed" in out
    for wrong, expected in (
        ("resend_after=soon", "resend_after: 'soon': expected a number of seconds"),
        ("resend_after=1", "expected seconds from 5 to"),
        ("retention_sent=1.5", "expected a whole number of days"),
        ("colour=blue", "colour: no such setting; expected one of resend_after"),
        ("resend_after", "expected NAME=VALUE"),
    ):
        assert (
            main([*home, "sync", "settings", paired.key, "--set", "retention_processed=3", "--set", wrong])
            == 1
        )
        assert expected in capsys.readouterr().err
    # nothing of a refused command was stored; setting the default again removes the change
    assert paired.acme.settings(paired.key)[3]["value"] == 30
    paired.acme.change_settings(paired.key, {"resend_after": "600"})
    assert not [
        row for row in paired.acme.settings(paired.key) if row["name"] == "resend_after" and row["changed"]
    ]
    assert main([*home, "sync", "settings", "NO-SUCH-1"]) == 1


def test_a_running_engine_uses_a_changed_setting_at_once(paired: Demo) -> None:
    side = paired.acme.queries.sides_of(paired.key)[0]
    assert side.exchange is not None
    engine = Engine(paired.acme)
    engine.start()
    try:
        paired.acme.change_settings(paired.key, {"max_message_bytes": "2048"})  # while it runs
        staged = side.exchange / "RECEIVE" / ".big.bac.part"  # hidden: the engine skips it
        staged.write_bytes(b"x" * 4096)
        os.utime(staged, (time.time() - 10, time.time() - 10))  # settled
        os.replace(staged, staged.with_name("big.bac"))
        engine.wake()

        def rejected() -> bool:
            with paired.acme.db.session() as s:
                rows = s.exec(select(Message).where(Message.original_name == "big.bac")).all()
            return bool(rows) and rows[0].folder == Folder.REJECTED

        assert wait_until(rejected, 20)
    finally:
        engine.stop()
    with paired.acme.db.session() as s:
        row = s.exec(select(Message).where(Message.original_name == "big.bac")).one()
    assert row.reason_code == Reason.TOO_LARGE and "max_message_bytes" in row.reason_text
