"""Analyze on real homes: problems first with their fixes, every folder scanned, and the global
view from a fixed number of grouped queries however many synchronizations there are."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from backbone_tui.cli import main
from engine.runtime.demo import Demo, default_config, request_pair, settle
from engine.runtime.engine import Engine
from engine.service.analysis import Analysis, Finding
from engine.service.installation import Installation
from engine.store.models import Message, Synchronization, SyncSide
from engine.trackers.base import utcnow
from engine.vocab import ALL_FOLDERS, Folder, Reason, SyncStatus

from .test_bad_input import create_body, drop, envelope, run_globex


def found(analysis: Analysis, reason: str) -> Finding:
    matches = [finding for finding in analysis.findings if finding.reason == reason]
    assert matches, f"no {reason} in {[f.reason for f in analysis.findings]}"
    return matches[0]


def test_a_healthy_pair_has_no_problems_and_every_folder_is_scanned(paired: Demo) -> None:
    for inst in (paired.acme, paired.globex):
        analysis = inst.analyze(paired.key)
        assert analysis.problems == ()
        assert analysis.channel_checked
        assert {scan.folder for scan in analysis.folders} == set(ALL_FOLDERS)
        assert "usable" in found(analysis, Reason.CHANNEL_WORKS).text
        assert "no permissions" in found(analysis, Reason.PERMISSIONS_UNCHECKED).text
        assert json.loads(json.dumps(analysis.to_json()))["problems"] == 0


def test_what_waits_in_error_is_shown_since_when_why_and_with_its_fixes(paired: Demo) -> None:
    pair = uuid.uuid4().hex
    drop(paired, "value.bac", envelope(paired, create_body("v", urgency="u9"), pair=pair))
    run_globex(paired)
    analysis = paired.globex.analyze(paired.key)
    problem = analysis.problems[0]
    assert (problem.severity, problem.reason, problem.side) == ("error", Reason.VALUE_NOT_MAPPED, "GLOBEX-1")
    assert problem.issues == (pair,) and problem.since is not None
    assert "1 message(s) in ERROR since" in problem.text and "u9" in problem.text
    commands = {fix.name: fix.command for fix in problem.fixes}
    assert commands["retry"] == f"backbone messages retry {paired.key} --issue {pair}"
    assert "--reason" in commands["skip"]
    (scan,) = [s for s in analysis.folders if s.folder == Folder.ERROR]
    assert (scan.count, scan.reasons) == (1, ((Reason.VALUE_NOT_MAPPED, 1),))
    assert scan.oldest == problem.since


def test_an_offline_tracker_and_a_broken_exchange_link_are_errors(paired: Demo) -> None:
    paired.globex.tracker.set_maintenance(True)
    target = paired.root / "exchange" / "acme" / "RECEIVE"
    target.rename(target.with_name("RECEIVE.moved"))
    try:
        analysis = paired.globex.analyze(paired.key)
    finally:
        target.with_name("RECEIVE.moved").rename(target)
        paired.globex.tracker.set_maintenance(False)
    assert found(analysis, Reason.TRACKER_OFFLINE).severity == "error"
    broken = found(analysis, Reason.LINK_BROKEN)
    assert "globex/SEND is a link to ../acme/RECEIVE, which does not exist" in broken.text
    assert broken.fixes[0].command == f"backbone sync test {paired.key}"
    assert paired.globex.analyze(paired.key).problems == ()


def test_configuration_not_yet_in_force_on_both_sides_is_shown_with_publish(tmp_path: Path) -> None:
    demo = request_pair(tmp_path / "demo", encryption=False)
    try:
        acme, globex, key = demo.acme, demo.globex, demo.key
        assert found(globex.analyze(key), Reason.SYNC_NOT_PAIRED).fixes[0].name == "accept"
        globex.accept(key)
        engines = (Engine(acme), Engine(globex))
        settle(
            engines, until=lambda: all(i.sync_info(key).status == SyncStatus.STOPPED for i in (acme, globex))
        )
        missing = found(acme.analyze(key), Reason.CONFIG_MISSING)
        assert missing.fixes[0].name == "publish"
        acme.config_import_text(key, default_config("acme"), "demo-acme.toml")
        acme.publish_config(key, "first version")
        settle(engines, until=lambda: globex.sync_info(key).status == SyncStatus.UPDATE_REQUIRED)
        waiting = found(acme.analyze(key), Reason.CONFIG_PENDING)
        assert waiting.severity == "info" and "WAITING FOR PARTNER" in waiting.text
        required = found(globex.analyze(key), Reason.CONFIG_PENDING)
        assert required.severity == "warning" and "UPDATE REQUIRED" in required.text
        assert required.fixes[0].command == f"backbone config publish {key}"
    finally:
        demo.close()


def test_expiring_keys_and_unacknowledged_messages_are_warnings(paired: Demo) -> None:
    now = utcnow()
    with paired.acme.db.write() as s:
        sync = s.get(Synchronization, paired.key)
        assert sync is not None
        sync.encryption = True  # only the analysis reads it here: no message is sent afterwards
        (side,) = s.exec(select(SyncSide)).all()
        side.own_key_expires = now + timedelta(days=10)
        side.partner_key_expires = now - timedelta(days=1)
        sent = s.exec(select(Message).where(Message.folder == Folder.SENT)).all()
        assert sent
        for row in sent:
            row.acked, row.updated = False, now - timedelta(days=8)
    analysis = paired.acme.analyze(paired.key, check_channel=False)
    assert found(analysis, Reason.KEY_EXPIRING).severity == "warning"
    expired = found(analysis, Reason.KEY_EXPIRED)
    assert expired.severity == "error" and "the partner's key expired" in expired.text
    late = found(analysis, Reason.NOT_ACKNOWLEDGED)
    assert f"{len(sent)} sent message(s) not acknowledged" in late.text and "7 days" in late.text
    paired.acme.change_settings(paired.key, {"max_lifetime": "9"})
    assert not [f for f in paired.acme.analyze(paired.key).findings if f.reason == Reason.NOT_ACKNOWLEDGED]


def add_syncs(inst: Installation, count: int, start: int) -> None:
    """Synchronization rows with a side and a held message each, written directly (no pairing)."""
    now = utcnow()
    with inst.db.write() as s:
        for n in range(start, start + count):
            key = f"BULK-{n}"
            s.add(
                Synchronization(
                    key=key,
                    name=key,
                    role="primary",
                    protocol="local",
                    sync_user="bot",
                    status="RUNNING",
                    created=now,
                )
            )
            side = SyncSide(sync_key=key, project="ACME", folder="ACME-1", role="primary", endpoint=key)
            s.add(side)
            s.flush()
            s.add(
                Message(
                    side_id=side.id or 0,
                    direction="in",
                    folder=Folder.ERROR,
                    hold="ab" * 16,
                    pair_id="ab" * 16,
                    file_name=f"{n}.bac",
                    reason_code=Reason.VALUE_NOT_MAPPED,
                    created=now,
                    updated=now,
                )
            )


def test_the_global_analysis_takes_the_same_queries_for_ten_or_a_thousand(paired: Demo) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = paired.acme.db.engine
    add_syncs(paired.acme, 10, 0)
    event.listen(engine, "before_cursor_execute", count)
    try:
        few = paired.acme.analyze_all()
        queries_for_few = len(statements)
        add_syncs(paired.acme, 1000, 10)
        statements.clear()
        many = paired.acme.analyze_all()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(few) == 11 and len(many) == 1011
    assert len(statements) == queries_for_few
    bulk = next(a for a in many if a.key == "BULK-500")
    assert bulk.problems[0].reason == Reason.VALUE_NOT_MAPPED
    assert next(a for a in many if a.key == paired.key).problems == ()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_analyze_prints_problems_first_with_the_command_that_fixes_each(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = uuid.uuid4().hex
    drop(paired, "value.bac", envelope(paired, create_body("v", urgency="u9"), pair=pair))
    run_globex(paired)
    home = str(paired.globex.paths.root)
    code, out, _ = cli(capsys, "--home", home, "sync", "analyze", paired.key)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith("ERROR") and "VALUE_NOT_MAPPED" in lines[1]
    assert f"fix: backbone messages retry {paired.key} --issue {pair}" in lines[2]
    assert any(line.startswith("GLOBEX-1  ERROR") for line in lines)  # the folder scan
    code, out, _ = cli(capsys, "--home", home, "sync", "analyze", paired.key, "--json")
    assert code == 0 and json.loads(out)["findings"][0]["reason"] == Reason.VALUE_NOT_MAPPED
    code, out, _ = cli(capsys, "--home", home, "sync", "analyze", "--all")
    assert code == 0 and out.splitlines()[-1] == "1 of 1 synchronization(s) with problems"
    code, out, _ = cli(capsys, "--home", home, "messages", "problems", paired.key, "--json")
    assert code == 0 and json.loads(out)[0]["pair_id"] == pair
    code, _, err = cli(capsys, "--home", home, "sync", "analyze")
    assert code == 1 and "name one synchronization, or --all" in err


def test_cli_actions_take_a_reason_and_a_confirmation(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = uuid.uuid4().hex
    drop(paired, "value.bac", envelope(paired, create_body("v", urgency="u9"), pair=pair))
    run_globex(paired)
    home = str(paired.globex.paths.root)
    with pytest.raises(SystemExit) as usage:
        main(["--home", home, "messages", "skip", paired.key, "--issue", pair])
    assert usage.value.code == 2 and "--reason" in capsys.readouterr().err
    code, _, err = cli(
        capsys, "--home", home, "messages", "ignore", paired.key, "--issue", pair, "--reason", "x"
    )
    assert code == 1 and "--yes" in err
    code, out, _ = cli(
        capsys, "--home", home, "messages", "skip", paired.key, "--issue", pair, "--reason", "not ours"
    )
    assert code == 0 and "1 message(s) skipped" in out
    code, _, err = cli(capsys, "--home", home, "sync", "skip-change", paired.key, "--reason", "x")
    assert code == 1 and "no side was stopped by a tracker change" in err
