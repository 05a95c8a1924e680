"""`sync history`: what happened to an issue, its conflicts, and which message set each value."""

from __future__ import annotations

import json
import time

import pytest

from backbone_tui.cli import main
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine

from .conftest import issue_by_summary, sync_all


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_history_shows_messages_conflicts_and_provenance(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    acme_id = paired.acme.tracker.create_issue("ACME", "Task", {"summary": "told"}, as_user="alice")
    sync_all(paired)
    globex = issue_by_summary(paired.globex, "GLOBEX", "told")
    assert globex is not None
    paired.acme.tracker.update_issue(acme_id, {"priority": "High"}, as_user="alice")  # acme: seq 2
    sync_all(paired)
    paired.globex.tracker.update_issue(globex.id, {"summary": "told twice"}, as_user="carol")  # globex: seq 1
    sync_all(paired)
    # a conflict: both edit the description, globex's edit is newer and wins
    paired.acme.tracker.update_issue(acme_id, {"description": "acme's"}, as_user="alice")
    Engine(paired.acme).run_once()
    time.sleep(0.01)
    paired.globex.tracker.update_issue(globex.id, {"description": "globex's"}, as_user="carol")
    Engine(paired.globex).run_once()
    sync_all(paired)

    home = str(paired.acme.paths.root)
    data = _json(
        capsys, "--home", home, "sync", "history", paired.key, "--issue", "ACME-" + acme_id, "--json"
    )
    events = data["events"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    sent = [e for e in events if e["kind"] == "message" and e["direction"] == "out"]
    received = [e for e in events if e["kind"] == "message" and e["direction"] == "in"]
    assert [e["seq"] for e in sent] == [1, 2, 3]
    assert "ISSUE create" in sent[0]["text"] and "PROCESSED" not in sent[0]["text"]
    assert [e["seq"] for e in received] == [1, 2]
    conflict = [e for e in events if e["kind"] == "conflict"]
    assert len(conflict) == 1 and "the local value lost" in conflict[0]["text"]
    assert {e["issue_key"] for e in events} == {"ACME-" + acme_id}
    fields = {f["field"]: f for f in data["fields"]}
    # priority: set here, by the second message sent; summary: by the partner's first message
    assert (fields["priority"]["origin"], fields["priority"]["direction"], fields["priority"]["seq"]) == (
        "local",
        "out",
        2,
    )
    assert fields["priority"]["local_value"] == "High" and fields["priority"]["message_id"]
    assert (fields["summary"]["origin"], fields["summary"]["direction"], fields["summary"]["seq"]) == (
        "partner",
        "in",
        1,
    )
    assert fields["summary"]["value"] == fields["summary"]["local_value"] == "told twice"
    assert (fields["description"]["origin"], fields["description"]["direction"]) == ("partner", "in")
    assert fields["description"]["value"] == "globex's"
    # the text form names the same things
    capsys.readouterr()
    assert main(["--home", home, "sync", "history", paired.key, "--issue", "ACME-" + acme_id]) == 0
    out = capsys.readouterr().out
    assert "conflict" in out and "received seq 1 of epoch 1" in out and "FIELD" in out


def test_history_of_a_whole_synchronization_and_limits(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(3):
        paired.acme.tracker.create_issue("ACME", "Task", {"summary": f"h{n}"}, as_user="alice")
    sync_all(paired)
    home = str(paired.globex.paths.root)
    data = _json(capsys, "--home", home, "sync", "history", paired.key, "--json")
    keys = {e["issue_key"] for e in data["events"] if e["kind"] == "message" and e["message_type"] == "ISSUE"}
    assert len(keys) == 3 and all(key.startswith("GLOBEX-") for key in keys)
    data = _json(capsys, "--home", home, "sync", "history", paired.key, "--limit", "2", "--json")
    assert len(data["events"]) == 2
    assert main(["--home", home, "sync", "history", paired.key, "--limit", "0"]) == 1
    assert main(["--home", home, "sync", "history", paired.key, "--issue", "GLOBEX-999"]) == 1
    assert "GLOBEX-999 does not exist" in capsys.readouterr().err
