"""The SIGKILL crash test against Jira (RELIABILITY rules 5 and 12, G2, G4, G8): a local
synchronization of the embedded ACME with the fake Jira's JIRA, the fake served from its own
process (`fake_jira_server.py`, so its state outlives every kill), a real `backbone run` killed at
random points while a user keeps editing ACME. After a restart that runs to the end, Jira holds
what it would hold without a crash: one issue per pair, the same fields, status and parent, each
comment, attachment and link exactly once. The seed is fixed; `BACKBONE_CRASH_SEED` tries others."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backbone_tui.cli import main
from engine.service.installation import Installation
from engine.vocab import Folder

from . import ledger
from .test_crash import ENV, SEED, Changes, Killer, _drain

KILLS = 6
JIRA_PROJECT = "JIRA"
SYNC = "sync-bot"
#: embedded field -> the fake's field id (the fields both projects have under the same names)
FIELDS = {
    "summary": "summary",
    "description": "description",
    "priority": "priority",
    "labels": "labels",
    "due_date": "duedate",
    "Severity": "customfield_10010",
}


@pytest.fixture
def jira_process(tmp_path: Path) -> Iterator[str]:
    """The fake Jira (v3, wall clock) in its own process; its URL."""
    log = (tmp_path / "fake-jira.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_jira_server", "--version", "3", "--project", JIRA_PROJECT],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=ENV,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening "), f"{line!r} {(tmp_path / 'fake-jira.log').read_text()}"
        url = line.split()[1]
        yield url
        errors = httpx.get(f"{url}/_fake/errors").json()
        assert errors == [], errors[0]
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _setup(home: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """ACME (with the fields the random changes write) synced with JIRA, RUNNING; the key."""
    inst = Installation(home)
    try:
        inst.tracker.create_project("ACME", "Acme")
        inst.tracker.add_custom_field("ACME", "Customer", "text")
        inst.tracker.add_custom_field("ACME", "Severity", "select", ["Critical", "Major", "Minor"])
    finally:
        inst.close()
    monkeypatch.setenv("BACKBONE_TRACKER_JIRA_SECRET", "s3cret")
    root = str(home)
    assert (
        main(
            ["--home", root, "tracker", "add", "jira", "--kind", "jira", "--url", url, "--api-version", "3"]
            + ["--auth", "token", "--user", "sync-bot@example.org", "--poll-interval", "0.2"]
        )
        == 0
    )
    assert (
        main(
            ["--home", root, "sync", "create", "--role", "local", "--project", "ACME"]
            + ["--partner-project", JIRA_PROJECT, "--partner-tracker", "jira", "--user", SYNC]
            + ["--name", "Acme <-> Jira"]
        )
        == 0
    )
    inst = Installation(home)
    try:
        (info,) = inst.list_syncs()
        inst.start([info.key])
        return info.key
    finally:
        inst.close()


def _jira_state(url: str) -> dict[str, dict[str, Any]]:
    return {issue["id"]: issue for issue in httpx.get(f"{url}/_fake/state").json()["issues"]}


def _problems(home: Path, key: str, url: str) -> list[str]:
    """How Jira differs from ACME (after everything ran to the end), and what is not where it
    belongs in the ledger."""
    inst = Installation(home)
    try:
        jira = _jira_state(url)
        pairs = inst.issue_pairs(key)
        problems = ledger.folder_problems(inst, key)
        stuck = [
            (m.folder, m.reason_code)
            for m in inst.messages(key)
            if m.folder not in (Folder.SENT, Folder.PROCESSED, Folder.OUTDATED)
        ]
        if stuck:
            problems.append(f"messages left in {Counter(stuck)}")
        markers = Counter(
            str((issue["properties"].get("backbone") or {}).get("marker")) for issue in jira.values()
        )
        problems += [f"{n} Jira issues carry marker {m}" for m, n in markers.items() if n > 1]
        paired = {sides.get("ACME"): sides.get(JIRA_PROJECT) for sides in pairs.values()}
        acme_issues = inst.tracker.list_issues("ACME")
        if len(jira) != len(acme_issues):
            problems.append(f"{len(jira)} Jira issues for {len(acme_issues)} ACME issues")
        for brief in acme_issues:
            acme = inst.tracker.read_issue(brief.id)
            assert acme is not None
            copy = jira.get(paired.get(acme.id) or "")
            if copy is None:
                problems.append(f"{acme.key} has no Jira issue")
                continue
            for name, field_id in FIELDS.items():
                mine, theirs = acme.fields.get(name), copy["values"].get(field_id)
                if name == "labels":
                    mine, theirs = sorted(mine or []), sorted(theirs or [])
                if (mine or None) != (theirs or None):
                    problems.append(f"{acme.key} {name}: {mine!r} in ACME, {theirs!r} in Jira")
            if (acme.issue_type, acme.status) != (copy["type"], copy["status"]):
                problems.append(
                    f"{acme.key}: {acme.issue_type}/{acme.status}, Jira {copy['type']}/{copy['status']}"
                )
            if paired.get(acme.parent_id) != copy["parent"]:
                problems.append(f"{acme.key}: parent {acme.parent_id} in ACME, {copy['parent']} in Jira")
            comments = Counter(f"{c.author} wrote:\n{c.body}" for c in acme.comments)
            if Counter(c["body"] for c in copy["comments"]) != comments:
                problems.append(
                    f"{acme.key}: {len(copy['comments'])} comments in Jira for {len(acme.comments)}"
                )
            files = Counter((a.filename, a.size) for a in acme.attachments)
            if Counter((a["filename"], a["size"]) for a in copy["attachments"]) != files:
                problems.append(
                    f"{acme.key}: {len(copy['attachments'])} attachments for {len(acme.attachments)}"
                )
            links = Counter((kind, paired.get(target)) for kind, target in acme.links)
            copied = Counter((x["type"].lower(), x["target"]) for x in copy["links"] if x["outward"])
            if copied != links:
                problems.append(f"{acme.key}: links {dict(links)} in ACME, {dict(copied)} in Jira")
        return problems
    finally:
        inst.close()


def test_engine_killed_while_applying_to_jira_leaves_jira_as_without_a_crash(
    tmp_path: Path, jira_process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(SEED + 7)
    home = tmp_path / "home"
    key = _setup(home, jira_process, monkeypatch)
    user = Installation(home)  # a user beside the engine: no lock taken
    changes = Changes(user.tracker, rng)
    killer = Killer(home, tmp_path / "run.log")
    try:
        for _ in range(KILLS):
            with killer.running() as proc:
                if rng.random() < 0.75:
                    killer.wait_ready(proc)
                for _ in range(rng.randint(5, 12)):
                    changes.step()
                    time.sleep(rng.uniform(0.0, 0.05))
                time.sleep(rng.uniform(0.2, 1.5))  # killed while it applies to Jira
    finally:
        user.close()
    assert killer.early_exits == []
    assert killer.kills == KILLS
    assert changes.made >= 30
    _drain(home)
    time.sleep(0.3)  # past the poll interval: Jira's own changes (echoes) are read once more
    _drain(home)
    assert _problems(home, key, jira_process) == [], f"seed {SEED + 7}"
    jira = _jira_state(jira_process).values()
    assert len(jira) >= 10 and sum(len(issue["comments"]) for issue in jira) >= 5  # not vacuous
