"""Defects a new user meets at the command line: each ends in one clear line, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backbone_tui.cli import main
from engine.channels import email as mail
from engine.errors import FieldError
from engine.runtime.demo import Demo
from engine.service.installation import Installation

from .conftest import sync_all
from .test_bad_input import create_body, drop, envelope, run_globex, update_body


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, _, err = cli(capsys, *args)
    assert code == 1, (args, err)
    assert err.count("\n") == 1, err
    return err


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "h")
    cli(capsys, "--home", home, "project", "create", "ACME", "--name", "Acme")
    reader, writer = os.pipe()
    os.close(reader)  # like `| head` that has read its lines already
    result = subprocess.run(
        [sys.executable, "-m", "backbone_tui.cli", "--home", home, "project", "list"],
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(writer)
    assert result.stderr == ""
    assert result.returncode == 141


def test_a_home_that_is_a_file_or_not_sqlite_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for args in (["run", "--once"], ["sync", "list"], ["project", "create", "A", "--name", "A"]):
        assert "must be a folder" in one_line_error(capsys, "--home", str(a_file), *args)
    home = tmp_path / "h"
    home.mkdir()
    (home / "backbone.db").write_text("this is not SQLite\n" * 100)
    for args in (["run", "--once"], ["sync", "list"]):
        assert "backbone.db" in one_line_error(capsys, "--home", str(home), *args)


def test_a_mistyped_home_is_refused_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "hmoe"
    for args in (["sync", "list"], ["run", "--once"], ["issue", "list"], ["messages", "X-1"]):
        assert f"{typo}: no Backbone home here" in one_line_error(capsys, "--home", str(typo), *args)
    assert not typo.exists()
    assert cli(capsys, "--home", str(typo), "project", "create", "ACME", "--name", "Acme")[0] == 0


def test_unknown_status_and_project_list_the_valid_values(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(paired.acme.paths.root)
    assert "RUNNING" in one_line_error(capsys, "--home", home, "sync", "list", "--status", "BOGUS")
    assert "ACME" in one_line_error(capsys, "--home", home, "sync", "list", "--project", "NOPE")
    assert "expected one of" in one_line_error(capsys, "--home", home, "sync", "stop", "--status", "BOGUS")
    code, out, _ = cli(capsys, "--home", home, "sync", "list", "--status", "running", "--json")
    assert code == 0 and [info["key"] for info in json.loads(out)] == [paired.key]


def test_handshake_out_in_a_missing_folder_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "h")
    cli(capsys, "--home", home, "project", "create", "ACME", "--name", "Acme")
    create = ["--home", home, "sync", "create", "--role", "primary", "--project", "ACME", "--user", "bot"]
    create += ["--name", "n", "--no-encryption", "--exchange", str(tmp_path / "x")]
    missing = tmp_path / "missing" / "hs.json"
    assert "does not exist" in one_line_error(capsys, *create, "--handshake-out", str(missing))
    assert json.loads(cli(capsys, "--home", home, "sync", "list", "--json")[1]) == []
    first = tmp_path / "hs.json"
    assert cli(capsys, *create, "--handshake-out", str(first))[0] == 0
    (key,) = [info["key"] for info in json.loads(cli(capsys, "--home", home, "sync", "list", "--json")[1])]
    again = tmp_path / "again.json"
    code, out, _ = cli(capsys, "--home", home, "sync", "handshake", key, "-o", str(again))
    assert code == 0 and str(again) in out
    assert json.loads(again.read_text())["secret"] == json.loads(first.read_text())["secret"]
    assert "exists already" in one_line_error(
        capsys, "--home", home, "sync", "handshake", key, "-o", str(again)
    )
    assert cli(capsys, "--home", str(tmp_path / "g"), "project", "create", "GLOBEX", "--name", "G")[0] == 0
    secondary = ["--home", str(tmp_path / "g"), "sync", "create", "--role", "secondary", "--handshake"]
    assert (
        cli(
            capsys,
            *secondary,
            str(again),
            "--project",
            "GLOBEX",
            "--user",
            "bot",
            "--exchange",
            str(tmp_path / "y"),
        )[0]
        == 0
    )


def test_the_home_and_its_data_are_private(paired: Demo) -> None:
    root = paired.globex.paths.root
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    sync_all(paired)
    side = root / "data" / paired.key / "GLOBEX-1"
    ours = [p for p in (side / "SENT").iterdir()]  # written by the engine (arrivals keep the partner's mode)
    assert ours and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in ours), ours
    paired.close()
    os.chmod(root, 0o755)
    assert main(["--home", str(root), "sync", "list"]) == 0
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_small_things_a_new_user_sees(paired: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(paired.acme.paths.root)
    t = paired.acme.tracker
    parent = t.create_issue("ACME", "Task", {"summary": "parent"}, as_user="alice")
    child = t.create_issue("ACME", "Sub-task", {"summary": "child"}, as_user="alice", parent_id=parent)
    t.add_link(child, parent, "relates", as_user="alice")
    shown = t.read_issue(child)
    assert shown is not None
    code, out, _ = cli(capsys, "--home", home, "issue", "show", shown.key)
    assert code == 0 and "parent       ACME-1" in out and "link         relates ACME-1" in out
    code, out, _ = cli(capsys, "--home", home, "sync", "show", paired.key)
    assert "exchange" in out and str(paired.root / "exchange" / "acme") in out
    with pytest.raises(SystemExit) as usage:  # bad usage: exit 2, as argparse says
        main(["--home", home, "messages", paired.key, "extra"])
    assert usage.value.code == 2 and "unrecognized arguments: extra" in capsys.readouterr().err
    pair = "ab" * 16
    drop(paired, "1.bac", envelope(paired, create_body("one"), pair=pair))
    drop(paired, "2.bac", envelope(paired, update_body(nonexistent="x"), pair=pair, seq=2))
    drop(paired, "3.bac", envelope(paired, update_body(title="three"), pair=pair, seq=3))
    run_globex(paired)
    code, out, _ = cli(
        capsys,
        "--home",
        str(paired.globex.paths.root),
        "messages",
        "skip",
        paired.key,
        "--issue",
        pair,
        "--reason",
        "the field is gone",
    )
    assert (code, out.strip()) == (0, f"{paired.key}: 1 message(s) skipped, 1 queued again")


def test_the_log_says_what_the_engine_did(paired: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    home = paired.globex.paths.root
    drop(paired, "garbage.bac", b"\x00 not json")
    root = logging.getLogger("backbone")
    before = list(root.handlers)
    try:
        assert main(["--home", str(home), "run", "--once"]) == 0
        (home / "data").chmod(0o700)
        os.environ["BACKBONE_IMAP_PASSWORD"] = "never-logged"
        assert main(["--home", str(home), "--log-level", "DEBUG", "sync", "list"]) == 0
    finally:
        del os.environ["BACKBONE_IMAP_PASSWORD"]
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
            handler.close()
    text = (home / "logs" / "backbone.log").read_text()
    assert "REJECTED: ENVELOPE_INVALID" in text and "garbage.bac" in text
    assert "never-logged" not in text
    assert stat.S_IMODE((home / "logs" / "backbone.log").stat().st_mode) == 0o600
    assert mail.log.name == "backbone.mail", "mail warnings reach the home's log"


def test_every_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """Every subcommand and action is listed with a help line; each has --help; --version works."""
    from backbone_tui.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[list[str], str | None]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, child in action.choices.items():
                    yield [*path, name], helps.get(name)
                    yield from walk(child, [*path, name])

    commands = list(walk(build_parser(), []))
    assert len(commands) >= 39
    assert [path for path, text in commands if not text] == []
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("backbone ")
    assert main(["completion", "bash"]) == 0 and "messages" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["messages", "retry", "--help"])
    assert "--issue" in capsys.readouterr().out


def test_an_error_about_one_input_names_its_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "h")
    cli(capsys, "--home", home, "project", "create", "ACME", "--name", "Acme")
    create = ["--home", home, "sync", "create", "--role", "primary", "--name", "n", "--no-encryption"]
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    out = str(tmp_path / "hs.json")
    nope = one_line_error(capsys, *create, "--project", "NOPE", "--user", "bot", "--handshake-out", out)
    assert nope.startswith("backbone: --project: project NOPE does not exist")
    bad_user = one_line_error(capsys, *create, "--project", "ACME", "--user", "a b", "--handshake-out", out)
    assert bad_user.startswith("backbone: --user: 'a b': expected a user name")
    made = ["--project", "ACME", "--user", "bot", "--exchange", str(tmp_path / "x"), "--handshake-out", out]
    assert cli(capsys, *create, *made)[0] == 0
    (key,) = [info["key"] for info in json.loads(cli(capsys, "--home", home, "sync", "list", "--json")[1])]
    again = one_line_error(capsys, "--home", home, "sync", "handshake", key, "-o", out)
    assert again.startswith("backbone: --output: handshake file") and "exists already" in again
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "SEND").write_text("")
    second = ["--project", "ACME", "--user", "bot", "--exchange", str(blocked)]
    exchange = one_line_error(capsys, *create, *second, "--handshake-out", str(tmp_path / "hs2.json"))
    assert exchange.startswith("backbone: --exchange: exchange folder") and "is not a folder" in exchange
    assert "--home: " in one_line_error(capsys, "--home", str(tmp_path / "nothing"), "sync", "list")


def test_the_service_names_the_field_a_form_marks(tmp_path: Path) -> None:
    inst = Installation(tmp_path / "h")
    try:
        inst.tracker.create_project("ACME", "Acme")
        blocked = tmp_path / "blocked"
        blocked.mkdir()
        (blocked / "RECEIVE").write_text("")
        out = tmp_path / "hs.json"

        def create(protocol: str = "file", **extra: Any) -> None:
            inst.create_primary(
                project="ACME", user="bot", name="n", protocol=protocol, encryption=False, **extra
            )

        with pytest.raises(FieldError) as caught:
            create(handshake_out=out, exchange=blocked)
        assert caught.value.field == "exchange"
        with pytest.raises(FieldError) as caught:
            create(handshake_out=tmp_path / "no" / "hs.json")
        assert caught.value.field == "handshake_out"
        with pytest.raises(FieldError) as caught:
            create("pigeon", handshake_out=out)
        assert (caught.value.field, caught.value.text) == (
            "protocol",
            "'pigeon': expected one of file, email, local",
        )
        with pytest.raises(FieldError) as caught:
            create("email", handshake_out=out)
        assert caught.value.field == "mail"
    finally:
        inst.close()
