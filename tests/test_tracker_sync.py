"""A real Redmine as a synchronization's tracker: accounts from the CLI, a local synchronization
between the embedded tracker and Redmine, changes in both directions (real Redmine, no mocks)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from backbone_tui.cli import main
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from tests.redmine_server import RedmineServer, redmine  # noqa: F401 - the session fixture

SYNC = "sync-bot"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def link(
    redmine: RedmineServer,  # noqa: F811
    home: Installation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    user: str = SYNC,
) -> tuple[Installation, str, str]:
    """Embedded ACME and a fresh Redmine project in one home (the Redmine account signs in as
    sync-bot), a local synchronization between them with `user` as its synchronization user,
    RUNNING; (home, its key, the Redmine project)."""
    project = redmine.new_project(f"t{uuid.uuid4().hex[:10]}")
    root = str(home.paths.root)
    home.tracker.create_project("ACME", "Acme")
    monkeypatch.setenv("BACKBONE_TRACKER_REDMINE_SECRET", redmine.sync_key)
    sync_marker, write_marker = redmine.marker_field_ids
    code, out, err = cli(
        capsys,
        "--home", root, "tracker", "add", "redmine", "--kind", "redmine", "--url", redmine.url,
        "--user", SYNC, "--poll-interval", "0.1",
        "--option", f"sync_marker_field_id={sync_marker}",
        "--option", f"write_marker_field_id={write_marker}",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = cli(
        capsys,
        "--home", root, "sync", "create", "--role", "local", "--project", "ACME",
        "--partner-project", project, "--partner-tracker", "redmine", "--user", user,
        "--name", "Acme <-> Redmine",
    )  # fmt: skip
    assert code == 0, err
    key = out.split(":")[0]
    assert main(["--home", root, "sync", "start", key]) == 0
    return home, key, project


@pytest.fixture
def linked(
    redmine: RedmineServer,  # noqa: F811
    home: Installation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Installation, str, str]]:
    """`link` with sync-bot, the Redmine account's own login, as the synchronization user."""
    yield link(redmine, home, capsys, monkeypatch)


def test_accounts_are_listed_tested_and_removed_only_when_unused(
    linked: tuple[Installation, str, str],
    redmine: RedmineServer,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, key, project = linked
    root = str(home.paths.root)
    code, out, _ = cli(capsys, "--home", root, "tracker", "list", "--json")
    listed = {row["name"]: row for row in json.loads(out)}
    assert listed["embedded"]["used_by"] == [key] and listed["redmine"]["used_by"] == [key]
    assert listed["redmine"]["secret_set"] is True and redmine.sync_key not in out
    code, out, err = cli(capsys, "--home", root, "tracker", "test", "redmine", "--project", project)
    assert code == 0, err
    assert "reachable and authenticated as sync-bot" in out and f"project {project}" in out
    code, _, err = cli(capsys, "--home", root, "tracker", "test", "redmine", "--project", "nope")
    assert code == 1 and "project nope is not there" in err
    code, _, err = cli(capsys, "--home", root, "tracker", "remove", "redmine")
    assert code == 1 and f"used by {key}" in err
    code, _, err = cli(
        capsys,
        "--home",
        root,
        "tracker",
        "add",
        "Bad Name",
        "--kind",
        "redmine",
        "--url",
        redmine.url,
        "--user",
        "x",
    )
    assert code == 1 and "expected 1-64 lower-case letters" in err
    # the configuration offers Redmine's real types and fields
    code, out, _ = cli(capsys, "--home", root, "config", "export", key, "--project", project)
    assert code == 0 and "Bug" in out and "subject" not in out
    assert main(["--home", root, "sync", "stop", key]) == 0
    assert main(["--home", root, "sync", "delete", key, "--yes"]) == 0
    code, out, _ = cli(capsys, "--home", root, "tracker", "remove", "redmine")
    assert code == 0 and "removed" in out


def _until(home: Installation, predicate: Any, timeout: float = 30.0) -> None:
    """Run the engine's passes (polling Redmine too) until `predicate` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not synced in time"
        Engine(home).run_once()
        time.sleep(0.2)


def test_changes_travel_between_the_embedded_tracker_and_redmine(
    linked: tuple[Installation, str, str],
    redmine: RedmineServer,  # noqa: F811
) -> None:
    home, key, project = linked
    remote = home.trackers.get("redmine")
    acme_id = home.tracker.create_issue(
        "ACME", "Bug", {"summary": "Checkout fails", "description": "on big carts"}, as_user="alice"
    )

    def remote_issue() -> Any:
        with redmine.admin() as http:
            found = http.get("/issues.json", params={"project_id": project, "status_id": "*"}).json()[
                "issues"
            ]
        return remote.read_issue(str(found[0]["id"])) if found else None

    _until(home, lambda: remote_issue() is not None)
    issue = remote_issue()
    assert (issue.issue_type, issue.fields["summary"], issue.fields["description"]) == (
        "Bug",
        "Checkout fails",
        "on big carts",
    )
    # a person edits it in Redmine (not the sync user): the change comes back to ACME
    with redmine.admin() as http:
        http.put(f"/issues/{issue.id}.json", json={"issue": {"subject": "Checkout fails for big carts"}})
    _until(home, lambda: summary(home, acme_id) == "Checkout fails for big carts")
    # an edit here goes there, and nothing echoes back
    home.tracker.update_issue(acme_id, {"description": "over 100 items"}, as_user="alice")
    _until(home, lambda: remote_issue().fields["description"] == "over 100 items")
    Engine(home).run_once()
    assert summary(home, acme_id) == "Checkout fails for big carts"
    sent = [m for m in home.messages(key) if m.direction == "out" and m.type == "ISSUE"]
    assert len(sent) == 3, [(m.issue_key, m.folder) for m in sent]  # the create and one edit each way
    assert all(m.folder == "SENT" for m in sent)
    problems = [m for m in home.messages(key) if m.folder in ("ERROR", "REJECTED", "SEND_ERROR")]
    assert problems == []


def summary(home: Installation, issue_id: str) -> Any:
    issue = home.tracker.read_issue(issue_id)
    return issue.fields["summary"] if issue else None


def test_the_accounts_writes_are_echoes_whatever_the_synchronization_user_is_called(
    redmine: RedmineServer,  # noqa: F811
    home: Installation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, key, project = link(redmine, home, capsys, monkeypatch, user="backbone")
    acme_id = home.tracker.create_issue(
        "ACME", "Bug", {"summary": "Written by sync-bot there"}, as_user="alice"
    )
    with redmine.admin() as http:

        def found() -> list[Any]:
            answer = http.get("/issues.json", params={"project_id": project, "status_id": "*"})
            return list(answer.json()["issues"])

        _until(home, lambda: len(found()) == 1)
        for _ in range(5):  # Redmine shows sync-bot's create: it must not come back as a change
            Engine(home).run_once()
            time.sleep(0.2)
        http.put(f"/issues/{found()[0]['id']}.json", json={"issue": {"subject": "Renamed by admin"}})
    _until(home, lambda: summary(home, acme_id) == "Renamed by admin")
    sent = [m for m in home.messages(key) if m.direction == "out" and m.type == "ISSUE"]
    assert len(sent) == 2, [(m.issue_key, m.folder) for m in sent]  # the create, the admin's edit
