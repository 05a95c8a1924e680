"""The support ZIP (engine side, no Textual): what it holds and what it never holds."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.errors import BackboneError
from engine.runtime.demo import PRIMARY_PROJECT, Demo
from engine.service.support import create_support_zip, redact
from tests.conftest import sync_all

MOMENT = datetime(2026, 11, 20, 9, 30, 5, tzinfo=UTC)


def test_support_zip_holds_headers_and_no_secrets_or_issue_contents(paired: Demo) -> None:
    acme = paired.acme
    acme.tracker.create_issue(
        PRIMARY_PROJECT,
        "Bug",
        {"summary": "Confidential merger plans", "description": "Board only"},
        as_user="alice",
    )
    sync_all(paired)
    (acme.paths.logs / "backbone.log").write_text(
        "2026-11-20 INFO backbone.mail: login imap password=hunter2 ok\n"
        "2026-11-20 INFO backbone.engine: sent 3 messages\n"
    )
    with acme.db.session() as s:
        from sqlmodel import select

        from engine.store.models import SyncSide

        secret = "pairing-secret-never-shared"
        side = s.exec(select(SyncSide)).first()
        assert side is not None
        side.pairing_secret = secret
        s.add(side)
        s.commit()

    path = create_support_zip(acme, paired.key, now=MOMENT)

    assert path == acme.paths.root / "support" / f"support-{paired.key}-20261120T093005.zip"
    assert path.stat().st_mode & 0o777 == 0o600
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        blob = "\n".join(archive.read(name).decode() for name in names)
        manifest = json.loads(archive.read(f"{paired.key}/manifest.json"))
        sync = json.loads(archive.read(f"{paired.key}/synchronization.json"))
        messages = json.loads(archive.read(f"{paired.key}/messages.json"))
        folders = json.loads(archive.read(f"{paired.key}/folders.json"))
        environment = json.loads(archive.read(f"{paired.key}/environment.json"))
    prefix = f"{paired.key}/"
    assert {
        prefix + n
        for n in (
            "manifest.json",
            "synchronization.json",
            "folders.json",
            "messages.json",
            "history.json",
            "environment.json",
            "logs/backbone.log",
            "config/ACME-1.toml",
        )
    } <= names
    assert sorted(manifest["files"]) == sorted(name.removeprefix(prefix) for name in names)
    assert sync["status"] == "RUNNING" and sync["sides"][0]["pairing_pending"] is True
    assert messages and all("payload" not in row for row in messages)
    assert {row["folder"] for row in messages} >= {"SENT"}
    assert sum(folders["ACME-1"]["database"].values()) == len(messages)
    assert environment["packages"]["textual"] and environment["python"]
    assert archive_config_matches(path, paired)
    for forbidden in ("Confidential merger plans", "Board only", "hunter2", secret):
        assert forbidden not in blob
    assert "sent 3 messages" in blob


def archive_config_matches(path: Path, paired: Demo) -> bool:
    with zipfile.ZipFile(path) as archive:
        text = archive.read(f"{paired.key}/config/ACME-1.toml").decode()
    return text == paired.acme.config_export(paired.key)


def test_support_zip_output_file_folder_and_errors(paired: Demo, tmp_path: Path) -> None:
    chosen = tmp_path / "out.zip"
    assert create_support_zip(paired.acme, paired.key, chosen) == chosen
    with pytest.raises(BackboneError, match="exists already"):
        create_support_zip(paired.acme, paired.key, chosen)
    folder = tmp_path / "folder"
    folder.mkdir()
    assert create_support_zip(paired.acme, paired.key, folder, now=MOMENT).parent == folder
    with pytest.raises(BackboneError, match="does not exist"):
        create_support_zip(paired.acme, "NOPE-1", tmp_path / "nope.zip")
    assert not (tmp_path / "nope.zip").exists()
    assert not list(tmp_path.glob(".support-*"))


def test_redact() -> None:
    assert redact('imap_password = "x1"\nname = "ok"') == 'imap_password = "***REDACTED***"\nname = "ok"'
    assert "abc" not in redact("token=abc done")
    key = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nxyz\n-----END PGP PRIVATE KEY BLOCK-----"
    assert "xyz" not in redact(f"before\n{key}\nafter")
