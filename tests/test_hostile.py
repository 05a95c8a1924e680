"""Hostile and broken input never stops the engine (issue: bombs, deep payloads, a missing share,
a reused sequence number, a corrupt database, line breaks in mail settings, unknown config versions)."""

from __future__ import annotations

import os
import random
import sqlite3
import tracemalloc
import uuid
from pathlib import Path

import pytest

from backbone_tui.cli import main
from engine.domain.envelope import bundle_text
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine, wait_until
from engine.trust.gpg import DEFAULT_MAX_PLAINTEXT_BYTES
from engine.vocab import Folder, SyncStatus

from .conftest import issue_by_summary, sync_all
from .hostile import compression_bomb
from .test_bad_input import create_body, drop, envelope, reasons, run_globex, still_syncs, update_body


def test_a_compression_bomb_is_rejected_with_bounded_memory(paired_gpg: Demo) -> None:
    bomb = compression_bomb(paired_gpg.globex, paired_gpg.key)
    assert len(bomb) < 1_000_000
    drop(paired_gpg, "bomb.bac", bomb)
    tracemalloc.start()
    try:
        run_globex(paired_gpg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reasons(paired_gpg)["bomb.bac"] == (Folder.REJECTED, "TOO_LARGE")
    assert peak < DEFAULT_MAX_PLAINTEXT_BYTES + (8 << 20), f"{peak} bytes held while opening the bomb"
    still_syncs(paired_gpg, "after the bomb")


def test_large_garbage_that_gpg_stops_reading_is_rejected(paired_gpg: Demo) -> None:
    drop(paired_gpg, "junk.bac", os.urandom(8 << 20))
    run_globex(paired_gpg)
    assert reasons(paired_gpg)["junk.bac"] == (Folder.REJECTED, "DECRYPT_FAILED")
    still_syncs(paired_gpg, "after the junk")


def _sealed_by_acme(demo: Demo, text: str) -> bytes:
    """`text` signed by Acme's key and encrypted to Globex's, as a genuine message would be."""
    (side,) = [side for side in demo.acme.pipeline.sides() if side.sync_key == demo.key]
    return demo.acme.pipeline.codec_for(side).seal(text)


def _deep(levels: int) -> str:
    return '{"format":1,"body":' + "[" * levels + "]" * levels + "}"


def test_signed_payloads_that_crash_a_json_parser_are_rejected(paired_gpg: Demo) -> None:
    pair = uuid.uuid4().hex
    huge_number = envelope(paired_gpg, create_body("n"), pair=pair).replace(
        b'"seq":1', b'"seq":' + b"9" * 5000
    )
    drop(paired_gpg, "deep.bac", _sealed_by_acme(paired_gpg, _deep(200_000)))
    drop(paired_gpg, "number.bac", _sealed_by_acme(paired_gpg, huge_number.decode()))
    drop(paired_gpg, "bundle.bac", _sealed_by_acme(paired_gpg, bundle_text([_deep(100)])))
    run_globex(paired_gpg)
    seen = reasons(paired_gpg)
    assert (
        seen["deep.bac"] == seen["number.bac"] == seen["bundle.bac"] == (Folder.REJECTED, "ENVELOPE_INVALID")
    )
    texts = {m.original_name: m.reason_text for m in paired_gpg.globex.messages(paired_gpg.key)}
    assert "nested deeper than" in texts["deep.bac"] and "nested deeper than" in texts["bundle.bac"]
    assert "digits" in texts["number.bac"]
    still_syncs(paired_gpg, "after the deep ones")


def test_without_encryption_any_file_is_only_rejected(paired: Demo) -> None:
    pair = uuid.uuid4().hex
    cases = {
        "deep.bac": _deep(200_000).encode(),
        "number.bac": envelope(paired, create_body("n"), pair=pair).replace(
            b'"epoch":1', b'"epoch":1' + b"0" * 5000
        ),
        "nan.bac": envelope(paired, create_body("n"), pair=pair).replace(b'"seq":1', b'"seq":NaN'),
        "bigseq.bac": envelope(paired, create_body("n"), pair=pair, type="PING", issue=None, seq=2**62),
        "surrogate.bac": envelope(paired, create_body("\ud800"), pair=pair),
        "bundle.bac": bundle_text([_deep(40), "[" * 100_000]).encode(),
    }
    for name, data in cases.items():
        drop(paired, name, data)
    run_globex(paired)
    seen = reasons(paired)
    assert {name: seen[name] for name in cases} == dict.fromkeys(cases, (Folder.REJECTED, "ENVELOPE_INVALID"))
    still_syncs(paired, "after the plain ones")


def test_a_missing_share_shows_as_a_channel_error_and_resumes_when_back(paired: Demo) -> None:
    acme_send = paired.root / "exchange" / "acme" / "SEND"
    parked = acme_send.with_name("SEND.away")
    acme_send.rename(parked)  # Acme's SEND is gone; Globex's RECEIVE, a link to it, dangles
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "while away"}, as_user="alice")
    Engine(paired.acme).run_once()
    run_globex(paired)
    assert [m.reason_code for m in paired.acme.messages(paired.key, Folder.SEND_ERROR)] == [
        "EXCHANGE_NOT_WRITABLE"
    ]
    assert paired.acme.sync_info(paired.key).channel_error == f"{acme_send} is missing"
    globex_receive = paired.root / "exchange" / "globex" / "RECEIVE"
    assert paired.globex.sync_info(paired.key).channel_error == (
        f"{globex_receive} is a link to ../acme/SEND, which does not exist"
    )
    assert paired.acme.sync_info(paired.key).status == "RUNNING"
    parked.rename(acme_send)
    sync_all(paired)  # no operator action: the share coming back re-arms what waited
    assert issue_by_summary(paired.globex, "GLOBEX", "while away") is not None
    assert paired.acme.messages(paired.key, Folder.SEND_ERROR) == []
    assert paired.acme.sync_info(paired.key).channel_error == ""
    assert paired.globex.sync_info(paired.key).channel_error == ""


def test_a_share_path_that_is_a_file_keeps_the_engine_running(paired: Demo) -> None:
    acme_send = paired.root / "exchange" / "acme" / "SEND"
    parked = acme_send.with_name("SEND.away")
    acme_send.rename(parked)
    acme_send.write_text("not a folder")
    engine = Engine(paired.globex)
    engine.start()
    try:
        globex_receive = paired.root / "exchange" / "globex" / "RECEIVE"

        def shown() -> str:
            return paired.globex.sync_info(paired.key).channel_error

        assert wait_until(lambda: shown() == f"{globex_receive} is not a folder", 10), shown()
        acme_send.unlink()
        parked.rename(acme_send)
        assert wait_until(lambda: shown() == "", 10), shown()
        assert engine.failure is None and engine.running
    finally:
        engine.stop()
    still_syncs(paired, "after the file")


def test_another_message_under_an_applied_seq_is_held_as_seq_reused(paired: Demo) -> None:
    pair = uuid.uuid4().hex
    first = envelope(paired, update_body(title="first"), pair=pair, seq=2)
    drop(paired, "1.bac", envelope(paired, create_body("reused"), pair=pair))
    drop(paired, "2.bac", first)
    run_globex(paired)
    drop(paired, "2-copy.bac", first)
    drop(paired, "2-other.bac", envelope(paired, update_body(title="second"), pair=pair, seq=2))
    run_globex(paired)
    drop(paired, "3.bac", envelope(paired, update_body(title="third"), pair=pair, seq=3))
    run_globex(paired)
    seen = reasons(paired)
    assert seen["2-copy.bac"] == (Folder.OUTDATED, "DUPLICATE")
    assert seen["2-other.bac"] == (Folder.ERROR, "SEQ_REUSED")
    assert seen["3.bac"] == (Folder.ERROR, "HELD_BEHIND_ERROR")
    assert issue_by_summary(paired.globex, "GLOBEX", "first") is not None
    assert paired.globex.sync_info(paired.key).errors == 2
    paired.globex.skip(paired.key, pair)  # the admin's choice: drop the reused one
    run_globex(paired)
    assert reasons(paired)["3.bac"] == (Folder.PROCESSED, "")
    assert issue_by_summary(paired.globex, "GLOBEX", "third") is not None
    third = next(m for m in paired.globex.messages(paired.key) if m.original_name == "3.bac")
    drop(paired, "2-late.bac", envelope(paired, update_body(title="late"), pair=pair, seq=2))
    run_globex(paired)
    assert reasons(paired)["2-late.bac"] == (Folder.ERROR, "SEQ_REUSED")
    paired.globex.skip(paired.key, pair)
    side = paired.globex.paths.data / paired.key / "GLOBEX-1"
    drop(paired, "3-copy.bac", (side / Folder.PROCESSED / third.file).read_bytes())
    run_globex(paired)
    assert reasons(paired)["3-copy.bac"] == (Folder.OUTDATED, "DUPLICATE"), "skipping moved the sequence back"
    assert issue_by_summary(paired.globex, "GLOBEX", "third") is not None


def _damage_page(database: Path, table: str) -> None:
    """Overwrite the body of `table`'s fullest page (its header kept) with fixed noise."""
    with sqlite3.connect(database) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        (page,) = connection.execute(
            "SELECT pageno FROM dbstat WHERE name = ? ORDER BY ncell DESC LIMIT 1", (table,)
        ).fetchone()
    connection.close()
    noise = random.Random(page).randbytes(page_size - 8)
    with open(database, "r+b") as handle:
        handle.seek((page - 1) * page_size + 8)
        handle.write(noise)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_damaged_page_stops_the_engine_before_it_writes(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    still_syncs(paired, "before the damage")
    home = paired.globex.paths.root
    database = paired.globex.paths.database
    paired.close()
    _damage_page(database, "message")
    before = database.read_bytes()
    line = _one_line_error(capsys, ["--home", str(home), "run", "--once"])
    assert str(database) in line and "damaged" in line and "backup" in line
    assert database.read_bytes() == before, "nothing is written to a damaged database"
    assert main(["--home", str(home), "doctor"]) == 1
    assert "the database is damaged" in capsys.readouterr().out


def test_a_garbage_header_is_one_line_naming_the_file(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    home = paired.globex.paths.root
    database = paired.globex.paths.database
    paired.close()
    with open(database, "r+b") as handle:
        handle.write(b"garbage" * 20)
    for argv in (["run", "--once"], ["sync", "list"]):
        line = _one_line_error(capsys, ["--home", str(home), *argv])
        assert str(database) in line and "not a database" in line


def test_a_newer_config_version_waits_and_a_never_published_one_is_held(paired: Demo) -> None:
    in_force = paired.globex.pipeline.sides()[0].config_version
    pair, unknown = uuid.uuid4().hex, uuid.uuid4().hex
    drop(paired, "1.bac", envelope(paired, create_body("newer config"), pair=pair, config=in_force + 1))
    drop(paired, "2.bac", envelope(paired, update_body(title="then this"), pair=pair, seq=2, config=1))
    drop(paired, "0.bac", envelope(paired, create_body("version 0"), pair=unknown, config=0))
    run_globex(paired)
    seen = reasons(paired)
    assert seen["1.bac"] == (Folder.WAITING, "CONFIG_PENDING")
    assert seen["2.bac"] == (Folder.WAITING, "SEQ_GAP")
    assert seen["0.bac"] == (Folder.ERROR, "CONFIG_UNKNOWN")
    assert issue_by_summary(paired.globex, "GLOBEX", "newer config") is None
    # the primary publishes version 2; once the secondary has bound it, what waited applies
    draft = paired.acme.config_export(paired.key).replace('direction = "to_partner"', 'direction = "both"')
    paired.acme.config_import_text(paired.key, draft, "v2.toml")
    paired.acme.publish_config(paired.key, "the customer travels both ways")
    sync_all(paired)
    assert paired.globex.sync_info(paired.key).status == SyncStatus.UPDATE_REQUIRED
    assert reasons(paired)["1.bac"] == (Folder.WAITING, "CONFIG_PENDING")
    template = paired.globex.config_export(paired.key)  # keeps what version 1 bound
    paired.globex.config_import_text(paired.key, template, "bind.toml")
    paired.globex.publish_config(paired.key, start=True)
    run_globex(paired)
    assert reasons(paired)["1.bac"] == reasons(paired)["2.bac"] == (Folder.PROCESSED, "")
    assert issue_by_summary(paired.globex, "GLOBEX", "then this") is not None
