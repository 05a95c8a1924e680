"""Jira through the whole pipeline: the fake Jira served over real HTTP (`fake_jira_server.py`),
added with `backbone tracker add --kind jira --url http://127.0.0.1:PORT` like a real site, in a
local synchronization with the embedded tracker (v3 and v2) and with a real Redmine (v3): creates,
value-mapped fields, transitions, comments, attachments, sub-tasks and links both ways, no echoes,
nothing in ERROR or REJECTED; and what a synced change costs in HTTP requests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from backbone_tui.cli import main
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.trackers.base import IssueData
from engine.vocab import Folder
from tests.fake_jira import FakeJira
from tests.fake_jira_server import FakeJiraServer
from tests.fake_jira_state import FakeIssue
from tests.jira_contract import require_contract

JIRA_PROJECT = "JIRA"
SYNC = "sync-bot"  # the synchronization user: the Jira account's name (its login up to the "@")
PROBLEM_FOLDERS = (Folder.ERROR, Folder.REJECTED, Folder.SEND_ERROR, Folder.MISSING, Folder.OFFLINE)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(params=[3, 2], ids=["cloud-v3", "server-v2"])
def site(request: pytest.FixtureRequest) -> Iterator[FakeJiraServer]:
    """A fake Jira of that version on a loopback port, project JIRA; no request it failed."""
    yield from _serve(int(request.param))


@pytest.fixture
def site_v3() -> Iterator[FakeJiraServer]:
    yield from _serve(3)


def _serve(version: int) -> Iterator[FakeJiraServer]:
    require_contract()
    fake = FakeJira(version, real_clock=True)
    fake.add_project(JIRA_PROJECT, "Jira side")
    with FakeJiraServer(fake) as server:
        yield server
    assert server.errors == [], server.errors[0]


def login(fake: FakeJira) -> str:
    """The sync account's login: its e-mail address on Cloud, its user name on Server/DC."""
    return str(fake.sync.email if fake.version == 3 else fake.sync.name)


def add_jira(
    home: Installation,
    server: FakeJiraServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *options: str,
) -> None:
    """`backbone tracker add jira` pointing at the served fake."""
    fake = server.fake
    monkeypatch.setenv("BACKBONE_TRACKER_JIRA_SECRET", str(fake.sync.password))
    code, _, err = cli(
        capsys,
        "--home", str(home.paths.root), "tracker", "add", "jira", "--kind", "jira", "--url", server.url,
        "--api-version", str(fake.version), "--auth", "token" if fake.version == 3 else "basic",
        "--user", login(fake), "--poll-interval", "0.1", *options,
    )  # fmt: skip
    assert code == 0, err


def create_local(
    home: Installation,
    capsys: pytest.CaptureFixture[str],
    project: str,
    tracker: str,
    user: str,
    partner_tracker: str = "jira",
) -> str:
    """`sync create --role local` between `project` in `tracker` and JIRA, started; its key."""
    root = str(home.paths.root)
    code, out, err = cli(
        capsys,
        "--home", root, "sync", "create", "--role", "local", "--project", project, "--tracker", tracker,
        "--partner-project", JIRA_PROJECT, "--partner-tracker", partner_tracker, "--user", user,
        "--name", f"{project} <-> Jira",
    )  # fmt: skip
    assert code == 0, err
    key = out.split(":")[0]
    assert main(["--home", root, "sync", "start", key]) == 0
    return key


def until(home: Installation, predicate: Callable[[], Any], what: str, timeout: float = 45.0) -> None:
    """Run the engine's passes (polling the remote trackers too) until `predicate` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not synced in time: {what}"
        Engine(home).run_once()
        time.sleep(0.15)


def problems(home: Installation, key: str) -> list[tuple[str, str, str]]:
    return [
        (m.folder, m.reason_code, m.reason_text)
        for m in home.messages(key)
        if m.folder in PROBLEM_FOLDERS or m.folder == Folder.WAITING
    ]


def only_issue(server: FakeJiraServer, summary: str) -> FakeIssue | None:
    with server.state() as fake:
        found = [i for i in fake.issues.values() if i.values.get("summary") == summary]
    assert len(found) <= 1, f"{len(found)} Jira issues named {summary!r}"
    return found[0] if found else None


def embedded_issue(home: Installation, project: str, summary: str) -> IssueData | None:
    found = [i for i in home.tracker.list_issues(project) if i.fields["summary"] == summary]
    assert len(found) <= 1, f"{len(found)} {project} issues named {summary!r}"
    return home.tracker.read_issue(found[0].id) if found else None


def outgoing(home: Installation, key: str) -> list[Any]:
    return [m for m in home.messages(key) if m.direction == "out" and m.type == "ISSUE"]


# -- Jira <-> the embedded tracker ----------------------------------------------------------------


@dataclass
class Linked:
    home: Installation
    key: str
    server: FakeJiraServer

    @property
    def fake(self) -> FakeJira:
        return self.server.fake


@pytest.fixture
def with_embedded(
    site: FakeJiraServer,
    home: Installation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Linked:
    home.tracker.create_project("ACME", "Acme")
    home.tracker.add_custom_field("ACME", "Severity", "select", ["Minor", "Major", "Critical"])
    home.tracker.add_custom_field("ACME", "Story points", "number")
    add_jira(home, site, capsys, monkeypatch)
    key = create_local(home, capsys, "ACME", "embedded", SYNC)
    return Linked(home, key, site)


def test_create_and_edit_travel_both_ways_v2_and_v3(with_embedded: Linked) -> None:
    home, key, server = with_embedded.home, with_embedded.key, with_embedded.server
    alice = server.fake.alice
    acme_id = home.tracker.create_issue(
        "ACME",
        "Bug",
        {
            "summary": "Checkout fails",
            "description": "on big carts\n\nsince Monday",
            "priority": "High",
            "labels": ["web", "shop"],
            "Severity": "Major",
            "Story points": 3.0,
        },
        as_user="carol",
    )
    until(home, lambda: only_issue(server, "Checkout fails") is not None, "the create")
    jira = only_issue(server, "Checkout fails")
    assert jira is not None
    assert (jira.project, jira.issue_type, jira.status) == (JIRA_PROJECT, "Bug", "To Do")
    assert jira.values["description"] == "on big carts\n\nsince Monday"
    assert jira.values["priority"] == "High" and sorted(jira.values["labels"]) == ["shop", "web"]
    assert jira.values["customfield_10010"] == "Major" and jira.values["customfield_10011"] == 3.0
    # a person edits it in Jira: the change comes back
    with server.state() as fake:
        fake.edit_as(alice, jira, summary="Checkout fails for big carts", priority={"name": "Low"})
    until(home, lambda: summary(home, acme_id) == "Checkout fails for big carts", "Jira's edit")
    acme = home.tracker.read_issue(acme_id)
    assert acme is not None and acme.fields["priority"] == "Low"
    # an edit here goes there; nothing echoes back
    home.tracker.update_issue(acme_id, {"Severity": "Critical", "labels": ["web"]}, as_user="carol")
    until(home, lambda: jira.values.get("customfield_10010") == "Critical", "the embedded edit")
    assert jira.values["labels"] == ["web"]
    with server.state() as fake:
        fake.create_as(alice, "Made in Jira", "Task", JIRA_PROJECT, description=_rich(fake, "from Jira"))
    until(home, lambda: embedded_issue(home, "ACME", "Made in Jira") is not None, "Jira's create")
    made = embedded_issue(home, "ACME", "Made in Jira")
    assert made is not None and made.fields["description"] == "from Jira"
    for _ in range(3):
        Engine(home).run_once()
        time.sleep(0.15)
    sent = outgoing(home, key)
    assert len(sent) == 4, [(m.issue_key, m.folder) for m in sent]  # 2 creates, 1 edit each way
    assert all(m.folder == Folder.SENT for m in sent)
    assert problems(home, key) == []
    assert len(server.fake.issues) == 2 and len(home.tracker.list_issues("ACME")) == 2


def _rich(fake: FakeJira, text: str) -> Any:
    from engine.trackers.jira import adf

    return adf.from_text(text) if fake.version == 3 else text


def summary(home: Installation, issue_id: str) -> Any:
    issue = home.tracker.read_issue(issue_id)
    return issue.fields["summary"] if issue else None
