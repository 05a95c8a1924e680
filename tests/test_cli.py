"""The CLI contract of SPEC section 8: commands, --json listings and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backbone_tui.cli import main
from engine.runtime.demo import Demo

from .conftest import cross_link, sync_all


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_issue_commands_on_the_embedded_tracker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "h")
    assert cli(capsys, "--home", home, "project", "create", "ACME", "--name", "Acme")[0] == 0
    code, out, _ = cli(
        capsys,
        "--home",
        home,
        "issue",
        "create",
        "--project",
        "ACME",
        "--type",
        "Bug",
        "--summary",
        "Broken",
        "--set",
        "priority=High",
        "--set",
        "labels=a,b",
    )
    assert (code, out.strip()) == (0, "ACME-1")
    assert (
        cli(
            capsys,
            "--home",
            home,
            "issue",
            "create",
            "--project",
            "ACME",
            "--type",
            "Sub-task",
            "--summary",
            "Child",
            "--parent",
            "ACME-1",
        )[0]
        == 0
    )
    assert cli(capsys, "--home", home, "issue", "update", "ACME-1", "--set", "summary=Fixed")[0] == 0
    assert cli(capsys, "--home", home, "issue", "comment", "ACME-1", "a note", "--as", "bob")[0] == 0
    attachment = tmp_path / "log.txt"
    attachment.write_text("log")
    assert cli(capsys, "--home", home, "issue", "attach", "ACME-1", str(attachment))[0] == 0
    assert cli(capsys, "--home", home, "issue", "transition", "ACME-1", "Done")[0] == 0
    code, out, _ = cli(capsys, "--home", home, "issue", "show", "ACME-1", "--json")
    shown = json.loads(out)
    assert shown["fields"]["summary"] == "Fixed"
    assert shown["fields"]["labels"] == ["a", "b"]
    assert shown["status"] == "Done"
    assert shown["comments"][0]["author"] == "bob"
    assert shown["attachments"][0]["filename"] == "log.txt"
    code, out, _ = cli(capsys, "--home", home, "issue", "list", "--project", "ACME", "--json")
    assert [i["key"] for i in json.loads(out)] == ["ACME-1", "ACME-2"]
    assert cli(capsys, "--home", home, "user", "add", "alice", "--email", "Alice@Acme.example")[0] == 0
    code, out, _ = cli(capsys, "--home", home, "user", "list", "--json")
    assert json.loads(out) == [{"name": "alice", "email": "alice@acme.example"}]
    code, _, err = cli(capsys, "--home", home, "user", "add", "bob", "--email", "alice@acme.example")
    assert (code, err.strip()) == (
        1,
        "backbone: user bob: alice@acme.example is the address of alice already",
    )


def test_user_errors_exit_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "h")
    cli(capsys, "--home", home, "project", "create", "ACME", "--name", "Acme")
    for args, fragment in [
        (("issue", "create", "--project", "ACME", "--type", "Epic", "--summary", "x"), "unknown issue type"),
        (("issue", "update", "ACME-9", "--set", "summary=x"), "ACME-9 does not exist"),
        (
            (
                "issue",
                "create",
                "--project",
                "ACME",
                "--type",
                "Bug",
                "--summary",
                "x",
                "--set",
                "priority=Urgent",
            ),
            "priority 'Urgent'",
        ),
        (("sync", "show", "NOPE-1"), "NOPE-1 does not exist"),
        (("sync", "delete", "NOPE-1"), "--yes"),
        (("project", "create", "acme", "--name", "x"), "upper-case"),
    ]:
        code, _, err = cli(capsys, "--home", home, *args)
        assert code == 1, args
        assert fragment in err, (args, err)
        assert err.count("\n") == 1


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backbone_tui.cli", "--home", str(tmp_path), "sync", "frobnicate"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2


def test_pairing_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    cli(capsys, "--home", a, "project", "create", "ACME", "--name", "Acme")
    cli(capsys, "--home", b, "project", "create", "GLOBEX", "--name", "Globex")
    exchange = tmp_path / "x"
    cross_link(exchange / "a", exchange / "b")
    handshake = tmp_path / "hs.json"
    code, out, _ = cli(
        capsys,
        "--home",
        a,
        "sync",
        "create",
        "--role",
        "primary",
        "--project",
        "ACME",
        "--partner-project",
        "GLOBEX",
        "--user",
        "sync-bot",
        "--protocol",
        "file",
        "--exchange",
        str(exchange / "a"),
        "--name",
        "ACME <-> Globex",
        "--handshake-out",
        str(handshake),
    )
    assert code == 0 and "REQUEST SENT" in out
    assert handshake.stat().st_mode & 0o077 == 0
    code, out, _ = cli(
        capsys,
        "--home",
        b,
        "sync",
        "create",
        "--role",
        "secondary",
        "--handshake",
        str(handshake),
        "--project",
        "GLOBEX",
        "--user",
        "sync-bot",
        "--exchange",
        str(exchange / "b"),
    )
    assert code == 0 and "INCOMING REQUEST" in out
    assert cli(capsys, "--home", b, "sync", "accept", "ACME-GLOBEX-1")[0] == 0
    for _ in range(3):
        assert cli(capsys, "--home", a, "run", "--once")[0] == 0
        assert cli(capsys, "--home", b, "run", "--once")[0] == 0
    for home in (a, b):
        code, out, _ = cli(capsys, "--home", home, "sync", "list", "--json")
        assert [s["status"] for s in json.loads(out)] == ["STOPPED"]
    # the primary publishes its terms, the secondary binds them: then both may start
    code, _, err = cli(capsys, "--home", a, "sync", "start", "ACME-GLOBEX-1")
    assert code == 1 and "no configuration in force yet" in err
    code, _, err = cli(capsys, "--home", a, "config", "publish", "ACME-GLOBEX-1")
    assert code == 1 and err.startswith("backbone: --message: a message for the partner is required")
    code, out, _ = cli(capsys, "--home", a, "config", "publish", "ACME-GLOBEX-1", "-m", "First terms")
    assert code == 0 and "WAITING FOR PARTNER" in out
    for _ in range(2):
        cli(capsys, "--home", a, "run", "--once")
        cli(capsys, "--home", b, "run", "--once")
    code, out, _ = cli(capsys, "--home", b, "config", "incoming", "ACME-GLOBEX-1", "--json")
    incoming = json.loads(out)
    assert (incoming["version"], incoming["in_force"], incoming["message"]) == (1, 0, "First terms")
    assert {change["how"] for change in incoming["changes"]} == {"added"}
    template = tmp_path / "bind.toml"
    cli(capsys, "--home", b, "config", "export", "ACME-GLOBEX-1", "-o", str(template))
    assert "<- new: put a local name" in template.read_text()
    code, _, err = cli(capsys, "--home", b, "config", "publish", "ACME-GLOBEX-1")
    assert code == 1 and "bind issue type" in err
    binding = tmp_path / "binding.toml"  # both trackers name their fields alike here
    cli(capsys, "--home", a, "config", "export", "ACME-GLOBEX-1", "-o", str(binding))
    assert cli(capsys, "--home", b, "config", "import", "ACME-GLOBEX-1", str(binding))[0] == 0
    code, out, _ = cli(capsys, "--home", b, "config", "publish", "ACME-GLOBEX-1", "--start")
    assert code == 0 and "RUNNING" in out
    for _ in range(2):
        cli(capsys, "--home", a, "run", "--once")
        cli(capsys, "--home", b, "run", "--once")
    code, out, _ = cli(capsys, "--home", a, "sync", "list", "--json")
    assert [s["status"] for s in json.loads(out)] == ["STOPPED"]
    assert cli(capsys, "--home", a, "sync", "start", "--status", "STOPPED")[0] == 0
    code, _, err = cli(capsys, "--home", b, "sync", "start", "ACME-GLOBEX-1")
    assert code == 1 and "RUNNING" in err
    cli(capsys, "--home", a, "issue", "create", "--project", "ACME", "--type", "Task", "--summary", "via cli")
    for _ in range(2):
        cli(capsys, "--home", a, "run", "--once")
        cli(capsys, "--home", b, "run", "--once")
    code, out, _ = cli(capsys, "--home", b, "issue", "list", "--json")
    assert [i["fields"]["summary"] for i in json.loads(out)] == ["via cli"]
    code, out, _ = cli(capsys, "--home", b, "messages", "ACME-GLOBEX-1", "--json")
    assert {m["folder"] for m in json.loads(out)} == {"PROCESSED", "SENT"}
    code, out, _ = cli(capsys, "--home", a, "sync", "list", "--json")
    assert json.loads(out)[0]["folders"]["SENT"] == 3  # PING, CONFIG and the issue
    exported = tmp_path / "acme.toml"
    assert cli(capsys, "--home", a, "config", "export", "ACME-GLOBEX-1", "-o", str(exported))[0] == 0
    assert cli(capsys, "--home", a, "config", "import", "ACME-GLOBEX-1", str(exported))[0] == 0
    broken = tmp_path / "broken.toml"
    broken.write_text('[[fields]]\nid = "x"\nlocal = "nonexistent"\n')
    code, _, err = cli(capsys, "--home", a, "config", "import", "ACME-GLOBEX-1", str(broken))
    assert code == 1 and "broken.toml" in err and "nonexistent" in err
    assert cli(capsys, "--home", a, "sync", "edit", "ACME-GLOBEX-1", "--name", "Renamed")[0] == 0
    assert cli(capsys, "--home", a, "sync", "delete", "ACME-GLOBEX-1", "--yes")[0] == 0
    code, out, _ = cli(capsys, "--home", a, "sync", "list", "--json")
    assert json.loads(out) == []


def test_handshake_file_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "h")
    cli(capsys, "--home", home, "project", "create", "GLOBEX", "--name", "Globex")
    bad = tmp_path / "hs.json"
    secondary = f"--home {home} sync create --role secondary --project GLOBEX --user bot --handshake".split()
    bad.write_text(json.dumps({"kind": "backbone-handshake", "format": 99}))
    code, _, err = cli(capsys, *secondary, str(bad))
    assert code == 1 and "format 99" in err
    bad.write_text("{not json")
    code, _, err = cli(capsys, *secondary, str(bad))
    assert code == 1 and "handshake" in err
    code, out, _ = cli(capsys, "--home", home, "sync", "list", "--json")
    assert json.loads(out) == []


def test_second_process_does_not_take_the_engine(tmp_path: Path) -> None:
    from engine.service.installation import Installation

    inst = Installation(tmp_path / "h")
    assert inst.lock.acquire()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "backbone_tui.cli", "--home", str(tmp_path / "h"), "run", "--once"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1
        assert "another process" in result.stderr
    finally:
        inst.close()


def test_engine_has_no_ui_imports() -> None:
    """The engine runs headless: importing it must not import Textual or the UI packages."""
    code = (
        "import importlib, pkgutil, sys, engine; "  # every module of every room
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(engine.__path__, 'engine.')]; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'screens', 'backbone_tui')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_support_zip_keeps_secrets_out(
    paired_gpg: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    paired_gpg.acme.tracker.create_issue("ACME", "Task", {"summary": "Top secret summary"}, as_user="alice")
    sync_all(paired_gpg)
    home = str(paired_gpg.acme.paths.root)
    secret = json.loads((paired_gpg.root / "handshake.json").read_text())["secret"]
    paired_gpg.acme.close()
    out = tmp_path / "support.zip"
    assert main(["--home", home, "sync", "support-zip", paired_gpg.key, "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        blob = b"".join(archive.read(name) for name in archive.namelist())
    assert paired_gpg.key.encode() in blob
    for leaked in (b"Top secret summary", b"PRIVATE KEY", secret.encode()):
        assert leaked not in blob
