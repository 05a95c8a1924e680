"""OpenPGP trust: nothing unsigned, mis-signed, mis-addressed, damaged or replayed changes anything."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import gnupg  # type: ignore[import-untyped]
import pytest

from backbone_tui.cli import main
from engine.domain.envelope import Envelope
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.trackers.base import utcnow
from engine.trust.gpg import Keyring
from engine.vocab import Folder

from .conftest import cross_link, issue_by_summary, sync_all


@pytest.fixture
def mallory() -> Iterator[Keyring]:
    """A third party with a key of its own."""
    folder = Path(tempfile.mkdtemp(prefix="mal-", dir="/tmp"))
    keyring = Keyring(folder)
    keyring.ensure_key("Mallory", "mallory@example.invalid")
    yield keyring
    keyring.close()
    shutil.rmtree(folder, ignore_errors=True)


def inbox(demo: Demo) -> Path:
    return demo.root / "exchange" / "globex" / "RECEIVE"


def envelope_text(demo: Demo, summary: str, *, seq: int = 1, pair: str | None = None) -> str:
    at = "2026-11-23T10:00:00.000000+00:00"
    return Envelope(
        sync=demo.key,
        sender=demo.acme.id,
        recipient=demo.globex.id,
        id=str(uuid.uuid4()),
        type="ISSUE",
        created=at,
        config=1,
        issue=pair or uuid.uuid4().hex,
        epoch=1,
        seq=seq,
        body={
            "op": "create",
            "type": "task",
            "fields": {"title": {"v": summary, "at": at, "base": ""}},
            "parent": None,
        },
    ).to_json()


def fingerprints(demo: Demo) -> tuple[str, str]:
    info = demo.acme.sync_info(demo.key)
    return info.own_fingerprint, info.partner_fingerprint


def settled_write(path: Path, data: bytes) -> None:
    """Write a file that looks complete (older than the settle time)."""
    path.write_bytes(data)
    os.utime(path, (time.time() - 60, time.time() - 60))


def deliver(demo: Demo, name: str, data: bytes) -> dict[str, tuple[str, str]]:
    settled_write(inbox(demo) / name, data)
    Engine(demo.globex).run_once()
    return {m.original_name or "": (m.folder, m.reason_code) for m in demo.globex.messages(demo.key)}


def test_exchange_files_reveal_nothing(paired_gpg: Demo) -> None:
    t = paired_gpg.acme.tracker
    issue = t.create_issue(
        "ACME", "Bug", {"summary": "Secret merger plan", "Customer": "Initech"}, as_user="alice"
    )
    t.add_comment(issue, "confidential remark", as_user="alice")
    Engine(paired_gpg.acme).run_once()  # sealed and handed over; Globex has not read them yet
    files = list(inbox(paired_gpg).iterdir())
    assert files
    for path in files:
        data = path.read_bytes()
        assert data.startswith(b"-----BEGIN PGP MESSAGE-----")
        for secret in (
            b"Secret merger",
            b"Initech",
            b"confidential",
            b"ACME",
            b"GLOBEX",
            paired_gpg.key.encode(),
        ):
            assert secret not in data and secret not in path.name.encode()
    sync_all(paired_gpg)
    assert issue_by_summary(paired_gpg.globex, "GLOBEX", "Secret merger plan") is not None


def test_untrusted_messages_are_rejected_with_reasons(paired_gpg: Demo, mallory: Keyring) -> None:
    acme_fpr, globex_fpr = fingerprints(paired_gpg)
    acme_keys = paired_gpg.acme.keyring
    # mallory knows Globex's public key (it is no secret) and Acme's
    mallory.import_partner_key(paired_gpg.globex.keyring.export_public(globex_fpr), globex_fpr)
    acme_keys.import_partner_key(
        mallory.export_public(mallory.own_fingerprint() or ""), mallory.own_fingerprint() or ""
    )
    plain_gpg = gnupg.GPG(gnupghome=str(mallory.homedir))
    unsigned = plain_gpg.encrypt(
        envelope_text(paired_gpg, "unsigned").encode(), globex_fpr, always_trust=True, armor=True
    )
    assert unsigned.ok
    cases: dict[str, tuple[bytes, str | None]] = {
        "unsigned.bac": (bytes(unsigned.data), "SIG_MISSING"),
        "stranger.bac": (
            mallory.encrypt_sign(
                envelope_text(paired_gpg, "stranger").encode(), mallory.own_fingerprint() or "", globex_fpr
            ),
            "SIG_WRONG_KEY",
        ),
        "elsewhere.bac": (
            acme_keys.encrypt_sign(
                envelope_text(paired_gpg, "elsewhere").encode(), acme_fpr, mallory.own_fingerprint() or ""
            ),
            "DECRYPT_FAILED",
        ),
        "plain.bac": (envelope_text(paired_gpg, "plain").encode(), "DECRYPT_FAILED"),
    }
    good = acme_keys.encrypt_sign(envelope_text(paired_gpg, "damaged").encode(), acme_fpr, globex_fpr)
    lines = good.split(b"\n")
    middle = len(lines) // 2
    flipped = bytearray(lines[middle])
    flipped[10] = ord("A") if flipped[10] != ord("A") else ord("B")
    lines[middle] = bytes(flipped)
    cases["flipped.bac"] = (b"\n".join(lines), None)  # DECRYPT_FAILED or SIG_BAD: either way rejected
    cases["truncated.bac"] = (good[: len(good) // 2], "DECRYPT_FAILED")
    for name, (data, _code) in cases.items():
        settled_write(inbox(paired_gpg) / name, data)
    Engine(paired_gpg.globex).run_once()
    seen = {m.original_name: m for m in paired_gpg.globex.messages(paired_gpg.key)}
    for name, (_data, code) in cases.items():
        assert seen[name].folder == Folder.REJECTED, name
        if code:
            assert seen[name].reason_code == code, (name, seen[name].reason_code)
        assert seen[name].reason_text
    assert paired_gpg.globex.tracker.list_issues("GLOBEX") == []


def test_replays_are_outdated_and_never_applied_twice(paired_gpg: Demo) -> None:
    acme_fpr, globex_fpr = fingerprints(paired_gpg)
    keys = paired_gpg.acme.keyring
    pair = uuid.uuid4().hex
    first = keys.encrypt_sign(envelope_text(paired_gpg, "replayed", pair=pair).encode(), acme_fpr, globex_fpr)
    seen = deliver(paired_gpg, "first.bac", first)
    assert seen["first.bac"] == (Folder.PROCESSED, "")
    seen = deliver(paired_gpg, "again.bac", first)
    assert seen["again.bac"] == (Folder.OUTDATED, "DUPLICATE")
    other = keys.encrypt_sign(envelope_text(paired_gpg, "same seq", pair=pair).encode(), acme_fpr, globex_fpr)
    seen = deliver(paired_gpg, "other.bac", other)
    assert seen["other.bac"] == (Folder.ERROR, "SEQ_REUSED"), "another message under an applied seq is held"
    assert [i.fields["summary"] for i in paired_gpg.globex.tracker.list_issues("GLOBEX")] == ["replayed"]


def test_expired_partner_key_warns_30_days_ahead(paired_gpg: Demo) -> None:
    info = paired_gpg.acme.sync_info(paired_gpg.key)
    assert info.own_key_expires is not None
    assert timedelta(days=700) < info.own_key_expires - utcnow() < timedelta(days=731)
    assert info.key_warning() == ""
    assert "expires on" in info.key_warning(now=info.own_key_expires - timedelta(days=10))
    assert "expired" in info.key_warning(now=info.own_key_expires + timedelta(days=1))


def _pair_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path, str]:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    main(["--home", a, "project", "create", "ACME", "--name", "Acme"])
    main(["--home", b, "project", "create", "GLOBEX", "--name", "Globex"])
    handshake = tmp_path / "hs.json"
    assert (
        main(
            [
                "--home",
                a,
                "sync",
                "create",
                "--role",
                "primary",
                "--project",
                "ACME",
                "--user",
                "bot",
                "--protocol",
                "file",
                "--exchange",
                str(tmp_path / "xa"),
                "--name",
                "A-G",
                "--handshake-out",
                str(handshake),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "key fingerprint:" in out
    fingerprint = out.split("key fingerprint:")[1].split("\n")[0].replace(" ", "")
    assert len(fingerprint) == 40
    return a, b, handshake, fingerprint


def test_handshake_file_tampering_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mallory: Keyring
) -> None:
    _a, b, handshake, fingerprint = _pair_via_cli(tmp_path, capsys)
    original = json.loads(handshake.read_text())
    args = [
        "--home",
        b,
        "sync",
        "create",
        "--role",
        "secondary",
        "--project",
        "GLOBEX",
        "--user",
        "bot",
        "--exchange",
        str(tmp_path / "xb"),
        "--handshake",
    ]

    def attempt(data: dict[str, object], *extra: str) -> str:
        path = tmp_path / f"hs-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(data))
        assert main([*args, str(path), *extra]) == 1
        return capsys.readouterr().err

    assert "altered" in attempt({**original, "name": "Evil twin"})
    assert "format 2" in attempt({**original, "format": 2})
    other = mallory.own_fingerprint() or ""
    assert "not valid" in attempt({**original, "key": {**original["key"], "fingerprint": other}})
    swapped = {**original, "key": {"fingerprint": other, "public": mallory.export_public(other)}}
    assert "not valid" in attempt(swapped) or "altered" in attempt(swapped)
    assert "not the confirmed" in attempt(original, "--fingerprint", other)
    assert main(["--home", b, "sync", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    # the genuine file, with the fingerprint confirmed out of band, is accepted
    assert main([*args, str(handshake), "--fingerprint", fingerprint]) == 0
    assert "INCOMING REQUEST" in capsys.readouterr().out


def _create_secondary(home: str, exchange: Path, handshake: Path) -> int:
    args = f"--home {home} sync create --role secondary --project GLOBEX --user bot --exchange {exchange}"
    return main([*args.split(), "--handshake", str(handshake)])


def test_handshake_needs_the_secret_and_is_accepted_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, handshake, _fingerprint = _pair_via_cli(tmp_path, capsys)
    xa, xb = tmp_path / "xa", tmp_path / "xb"
    cross_link(xa, xb)
    assert _create_secondary(b, xb, handshake) == 0
    secondary = Installation(b)
    primary = Installation(a)
    try:
        key = secondary.list_syncs()[0].key
        info = secondary.sync_info(key)
        # a HANDSHAKE with a wrong secret, properly signed and encrypted by the secondary
        secondary_fpr, primary_fpr = info.own_fingerprint, info.partner_fingerprint

        def send_handshake(name: str, body: dict[str, Any]) -> None:
            """A HANDSHAKE signed and encrypted by the secondary, dropped in the primary's RECEIVE."""
            envelope = Envelope(
                sync=key,
                sender=secondary.id,
                recipient=primary.id,
                id=str(uuid.uuid4()),
                type="HANDSHAKE",
                created="2026-11-23T10:00:00+00:00",
                body=body,
            )
            data = secondary.keyring.encrypt_sign(envelope.to_json().encode(), secondary_fpr, primary_fpr)
            settled_write(xa / "RECEIVE" / name, data)

        public = {"fingerprint": secondary_fpr, "public": secondary.keyring.export_public(secondary_fpr)}
        send_handshake("forged.bac", {"secret": "guess", "project": "GLOBEX", "key": public})
        Engine(primary).run_once()
        rejected = {m.original_name: m for m in primary.messages(key)}["forged.bac"]
        assert (rejected.folder, rejected.reason_code) == (Folder.REJECTED, "BAD_PAIRING_SECRET")
        assert primary.sync_info(key).status == "REQUEST SENT"
        secondary.accept(key)
        Engine(secondary).run_once()
        handshake_file = next((xa / "RECEIVE").iterdir())
        replay = handshake_file.read_bytes()
        for _ in range(3):
            Engine(primary).run_once()
            Engine(secondary).run_once()
        assert primary.sync_info(key).status == "STOPPED"
        assert secondary.sync_info(key).status == "STOPPED"
        # the same HANDSHAKE again, and a new one with the right secret: neither is accepted
        settled_write(xa / "RECEIVE" / "replay.bac", replay)
        secret = json.loads(handshake.read_text())["secret"]
        send_handshake("again.bac", {"secret": secret, "project": "GLOBEX"})
        Engine(primary).run_once()
        seen = {m.original_name: m for m in primary.messages(key)}
        assert (seen["replay.bac"].folder, seen["replay.bac"].reason_code) == (Folder.OUTDATED, "DUPLICATE")
        assert (seen["again.bac"].folder, seen["again.bac"].reason_code) == (
            Folder.REJECTED,
            "HANDSHAKE_REPLAYED",
        )
        assert primary.sync_info(key).status == "STOPPED"
    finally:
        primary.close()
        secondary.close()


def test_decline_reaches_the_primary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, handshake, _fingerprint = _pair_via_cli(tmp_path, capsys)
    xa, xb = tmp_path / "xa", tmp_path / "xb"
    cross_link(xa, xb)
    _create_secondary(b, xb, handshake)
    key = json.loads(handshake.read_text())["sync"]
    assert main(["--home", b, "sync", "decline", key]) == 0
    main(["--home", b, "run", "--once"])
    main(["--home", a, "run", "--once"])
    capsys.readouterr()
    assert main(["--home", a, "sync", "show", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "DECLINED" and "Please delete it" in shown["status_detail"]


def test_user_and_protocol_are_fixed(paired_gpg: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(paired_gpg.acme.paths.root)
    paired_gpg.acme.close()
    assert main(["--home", home, "sync", "edit", paired_gpg.key, "--user", "someone"]) == 1
    assert "cannot be changed once set" in capsys.readouterr().err
    assert main(["--home", home, "sync", "edit", paired_gpg.key, "--protocol", "email"]) == 1
    assert "cannot be switched" in capsys.readouterr().err
