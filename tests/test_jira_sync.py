"""Jira through the whole pipeline: the fake Jira served over real HTTP (`fake_jira_server.py`),
added with `backbone tracker add --kind jira --url http://127.0.0.1:PORT` like a real site, in a
local synchronization with the embedded tracker (v3 and v2) and with a real Redmine (v3): creates,
value-mapped fields, transitions, comments, attachments, sub-tasks and links both ways, no echoes,
nothing in ERROR or REJECTED; and what a synced change costs in HTTP requests."""

from __future__ import annotations

import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import tomli_w

from backbone_tui.cli import main
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.trackers.base import IssueData
from engine.trackers.jira import adf
from engine.vocab import Folder
from tests.fake_jira import FakeJira
from tests.fake_jira_server import FakeJiraServer
from tests.fake_jira_state import FakeIssue
from tests.redmine_server import RedmineServer, redmine  # noqa: F401 - the session fixture

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
    partner_project: str = JIRA_PROJECT,
    partner_tracker: str = "jira",
) -> str:
    """`sync create --role local` between `project` in `tracker` and the partner project, started;
    its key."""
    root = str(home.paths.root)
    code, out, err = cli(
        capsys,
        "--home", root, "sync", "create", "--role", "local", "--project", project, "--tracker", tracker,
        "--partner-project", partner_project, "--partner-tracker", partner_tracker, "--user", SYNC,
        "--name", f"{project} <-> {partner_project}",
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
    key = create_local(home, capsys, "ACME", "embedded")
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
    return adf.from_text(text) if fake.version == 3 else text


def summary(home: Installation, issue_id: str) -> Any:
    issue = home.tracker.read_issue(issue_id)
    return issue.fields["summary"] if issue else None


@pytest.mark.parametrize("site", [3], indirect=True, ids=["cloud-v3"])
def test_everything_travels_both_ways_without_echoes(with_embedded: Linked) -> None:
    """Sub-tasks, the workflow, comments, attachments and links, from each side to the other."""
    home, key, server = with_embedded.home, with_embedded.key, with_embedded.server
    t = home.tracker
    parent = t.create_issue("ACME", "Task", {"summary": "Parent", "priority": "Low"}, as_user="carol")
    child = t.create_issue("ACME", "Sub-task", {"summary": "Child"}, as_user="carol", parent_id=parent)
    other = t.create_issue("ACME", "Bug", {"summary": "Other"}, as_user="carol")
    t.transition(parent, "Done", as_user="carol")  # one step here, three along Jira's workflow
    t.add_comment(parent, "first comment\nwith two lines", as_user="carol")
    t.add_attachment(parent, "trace.txt", b"stack trace\n", as_user="carol")
    t.add_link(parent, other, "blocks", as_user="carol")

    def jira_parent_complete() -> bool:
        issue = only_issue(server, "Parent")
        return bool(issue and issue.status == "Done" and issue.comments and issue.attachments and issue.links)

    until(home, jira_parent_complete, "the parent with its comment, attachment and link")
    until(home, lambda: only_issue(server, "Child") is not None, "the sub-task")
    j_parent, j_child, j_other = (only_issue(server, s) for s in ("Parent", "Child", "Other"))
    assert j_parent is not None and j_child is not None and j_other is not None
    assert j_child.issue_type == "Sub-task" and j_child.parent_id == j_parent.id
    assert [c["body"] for c in j_parent.comments] == ["carol wrote:\nfirst comment\nwith two lines"]
    assert [(a["filename"], a["size"]) for a in j_parent.attachments] == [("trace.txt", 12)]
    with server.state() as fake:
        assert fake.attachment_bytes[j_parent.attachments[0]["id"]] == b"stack trace\n"
        assert [(x["type"]["name"], x["target"], x["outward"]) for x in j_parent.links] == [
            ("Blocks", j_other.id, True)
        ]
        # a person works in Jira: a sub-task, a comment, a file, a link and a transition
        alice = fake.alice
        body = {
            "project": {"key": JIRA_PROJECT},
            "issuetype": {"name": "Sub-task"},
            "summary": "Jira child",
            "parent": {"id": j_other.id},
        }
        fake._create(alice, {"fields": body})
        fake.comment_as(alice, j_other, "seen in Jira")
        fake.attach_as(alice, j_other, "screen.png", b"\x89PNG...", "image/png")
        fake.link_as(alice, j_other, j_child, "Relates")
        fake.move_as(alice, j_other, "In Progress")

    def acme_other_complete() -> bool:
        issue = t.read_issue(other)
        return bool(
            issue and issue.status == "In Progress" and issue.comments and issue.attachments and issue.links
        )

    until(home, acme_other_complete, "Jira's comment, attachment, link and transition")
    until(home, lambda: embedded_issue(home, "ACME", "Jira child") is not None, "Jira's sub-task")
    acme_other = t.read_issue(other)
    assert acme_other is not None
    assert [c.body for c in acme_other.comments] == ["alice@example.org wrote:\nseen in Jira"]
    assert [(a.filename, a.size) for a in acme_other.attachments] == [("screen.png", 7)]
    assert acme_other.links == [("relates", child)]
    jira_child = embedded_issue(home, "ACME", "Jira child")
    assert jira_child is not None and jira_child.parent_id == other and jira_child.issue_type == "Sub-task"
    # settled: more passes send nothing more, and nothing came back as an echo
    sent = len(outgoing(home, key))
    for _ in range(4):
        Engine(home).run_once()
        time.sleep(0.15)
    assert len(outgoing(home, key)) == sent
    assert problems(home, key) == []
    assert all(m.folder == Folder.SENT for m in outgoing(home, key))
    acme_parent = t.read_issue(parent)
    assert acme_parent is not None and len(acme_parent.comments) == 1 and len(acme_parent.attachments) == 1
    assert len(acme_other.comments) == 1 and len(j_other.comments) == 1 and len(j_other.attachments) == 1
    assert len(server.fake.issues) == 4 and len(t.list_issues("ACME")) == 4


POLL_ROUTES = {"GET /search/jql", "GET /issue/{id}/changelog", "GET /issue/{id}/comment"}


@pytest.mark.parametrize("site", [3], indirect=True, ids=["cloud-v3"])
def test_http_requests_per_field_update_and_per_poll(with_embedded: Linked) -> None:
    """A field update applied to Jira costs at most 3 requests (beside the polls); a poll that
    finds N changed issues costs one search and each changed issue's changelog page."""
    home, server, t = with_embedded.home, with_embedded.server, with_embedded.home.tracker
    acme_ids = [t.create_issue("ACME", "Task", {"summary": f"issue {n}"}, as_user="carol") for n in range(5)]
    until(home, lambda: len(server.fake.issues) == 5, "the creates")
    for _ in range(3):
        Engine(home).run_once()
        time.sleep(0.15)
    with server.state() as fake:
        start = len(fake.log)
    t.update_issue(acme_ids[0], {"summary": "issue 0, renamed", "priority": "High"}, as_user="carol")
    until(home, lambda: only_issue(server, "issue 0, renamed") is not None, "the update")
    with server.state() as fake:
        counts = fake.route_counts(start)
    applying = {route: n for route, n in counts.items() if route not in POLL_ROUTES}
    assert sum(applying.values()) <= 3, applying
    assert applying.get("PUT /issue/{id}") == 1, applying
    # five issues edited in Jira: the next poll searches once and reads five changelogs
    with server.state() as fake:
        for issue in list(fake.issues.values()):
            fake.edit_as(fake.alice, issue, labels=["seen"])
        start = len(fake.log)
    jira = home.trackers.get("jira")
    assert jira.poll_now(JIRA_PROJECT) >= 5  # type: ignore[attr-defined]  # (and the update's echo)
    with server.state() as fake:
        assert fake.route_counts(start) == {"GET /search/jql": 1, "GET /issue/{id}/changelog": 5}


# -- Jira <-> Redmine -----------------------------------------------------------------------------


@pytest.fixture
def with_redmine(
    site_v3: FakeJiraServer,
    redmine: RedmineServer,  # noqa: F811
    home: Installation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Linked, str]:
    """Jira's JIRA and a fresh Redmine project in one home, a local synchronization between
    them (RUNNING, the default configuration); (it, the Redmine project)."""
    project = redmine.new_project(f"j{uuid.uuid4().hex[:10]}")
    root = str(home.paths.root)
    add_jira(home, site_v3, capsys, monkeypatch)
    monkeypatch.setenv("BACKBONE_TRACKER_REDMINE_SECRET", redmine.sync_key)
    sync_marker, write_marker = redmine.marker_field_ids
    code, _, err = cli(
        capsys,
        "--home", root, "tracker", "add", "redmine", "--kind", "redmine", "--url", redmine.url,
        "--user", SYNC, "--poll-interval", "0.1",
        "--option", f"sync_marker_field_id={sync_marker}",
        "--option", f"write_marker_field_id={write_marker}",
        "--option", "relation_sweep=2",  # relations added in Redmine are found within seconds
    )  # fmt: skip
    assert code == 0, err
    key = create_local(home, capsys, JIRA_PROJECT, "jira", project, "redmine")
    return Linked(home, key, site_v3), project


def publish_mappings(home: Installation, key: str, redmine_project: str) -> None:
    """Version 2 of the configuration: Jira's Task, Sub-task, To Do, Done, Highest and Medium
    mapped (the primary side), each bound to Redmine's own names (the other side).

    Not Jira's Severity to Redmine's: the Redmine connector, signed in as a sync user who is no
    administrator, offers no custom field of a project (nor a select field's options) to bind."""
    jira = tomllib.loads(home.config_export(key, JIRA_PROJECT))
    jira["issue_types"].update({"Task": "t-task", "Sub-task": "t-sub"})
    jira["statuses"].update({"To Do": "s-todo", "Done": "s-done"})
    priority = next(f for f in jira["fields"] if f["local"] == "priority")
    priority["values"].update({"Highest": "v-top", "Medium": "v-mid"})
    home.config_import_text(key, tomli_w.dumps(jira), "jira.toml", JIRA_PROJECT)
    home.stop([key])
    home.publish_config(key, "types, statuses and priorities", JIRA_PROJECT, start=True)
    Engine(home).run_once()
    bound = tomllib.loads(home.config_export(key, redmine_project))
    bound["issue_types"].update({"Feature": "t-task", "Support": "t-sub"})
    bound["statuses"].update({"New": "s-todo", "Closed": "s-done"})
    priority = next(f for f in bound["fields"] if f["local"] == "priority")
    priority["values"].update({"Immediate": "v-top", "Normal": "v-mid"})
    home.config_import_text(key, tomli_w.dumps(bound), "redmine.toml", redmine_project)
    home.publish_config(key, "", redmine_project)
    Engine(home).run_once()
    assert home.sync_info(key).status == "RUNNING"


class RedmineAdmin:
    """A person working in the Redmine project (the administrator, not the sync user)."""

    def __init__(self, server: RedmineServer, project: str) -> None:
        self.project = project
        self.http = server.admin()
        self.ids = {
            "trackers": self._names("/trackers.json", "trackers"),
            "priorities": self._names("/enumerations/issue_priorities.json", "issue_priorities"),
            "statuses": self._names("/issue_statuses.json", "issue_statuses"),
        }

    def _names(self, path: str, key: str) -> dict[str, int]:
        answer = self.http.get(path)
        answer.raise_for_status()
        return {str(row["name"]): int(row["id"]) for row in answer.json()[key]}

    def create(self, subject: str, tracker: str, priority: str, parent: str | None = None) -> str:
        body: dict[str, Any] = {
            "project_id": self.project,
            "tracker_id": self.ids["trackers"][tracker],
            "subject": subject,
            "priority_id": self.ids["priorities"][priority],
        }
        if parent:
            body["parent_issue_id"] = int(parent)
        answer = self.http.post("/issues.json", json={"issue": body})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["issue"]["id"])

    def update(self, issue_id: str, **issue: Any) -> None:
        answer = self.http.put(f"/issues/{issue_id}.json", json={"issue": issue})
        assert answer.status_code in (200, 204), answer.text

    def status(self, name: str) -> int:
        return self.ids["statuses"][name]

    def attach(self, issue_id: str, filename: str, content: bytes) -> None:
        upload = self.http.post(
            "/uploads.json", content=content, headers={"Content-Type": "application/octet-stream"}
        )
        assert upload.status_code == 201, upload.text
        token = upload.json()["upload"]["token"]
        self.update(issue_id, uploads=[{"token": token, "filename": filename}])

    def relate(self, issue_id: str, target: str, kind: str) -> None:
        answer = self.http.post(
            f"/issues/{issue_id}/relations.json",
            json={"relation": {"issue_to_id": int(target), "relation_type": kind}},
        )
        assert answer.status_code == 201, answer.text

    def issues(self) -> dict[str, str]:
        """Subject -> id of the project's issues (any status)."""
        answer = self.http.get(
            "/issues.json", params={"project_id": self.project, "status_id": "*", "limit": 100}
        )
        return {str(row["subject"]): str(row["id"]) for row in answer.json()["issues"]}


def test_jira_and_redmine_sync_everything_both_ways(
    with_redmine: tuple[Linked, str],
    redmine: RedmineServer,  # noqa: F811
) -> None:
    linked, project = with_redmine
    home, key, server = linked.home, linked.key, linked.server
    publish_mappings(home, key, project)
    remote = home.trackers.get("redmine")
    person = RedmineAdmin(redmine, project)

    def in_redmine(subject: str) -> IssueData | None:
        issue_id = person.issues().get(subject)
        return remote.read_issue(issue_id) if issue_id else None

    # Jira -> Redmine: a create with mapped values, an edit, the workflow, a comment, a file,
    # a sub-task and a link
    with server.state() as fake:
        alice = fake.alice
        task = fake.create_as(
            alice, "From Jira", "Task", JIRA_PROJECT,
            description=adf.from_text("made in Jira"), priority={"name": "Medium"},
        )  # fmt: skip
        other = fake.create_as(alice, "Jira bug", "Bug", JIRA_PROJECT)
    until(home, lambda: in_redmine("Jira bug") is not None, "Jira's creates")
    made = in_redmine("From Jira")
    assert made is not None and made.issue_type == "Feature" and made.status == "New"
    assert made.fields["priority"] == "Normal"
    assert made.fields["description"] == "made in Jira"
    with server.state() as fake:
        fake.edit_as(alice, task, priority={"name": "Highest"})
        fake.move_as(alice, other, "Done")  # (Redmine keeps no open sub-task under a closed parent)
        fake.comment_as(alice, task, "closing this")
        fake.attach_as(alice, task, "notes.txt", b"twelve bytes")
        fake._create(
            alice,
            {
                "fields": {
                    "project": {"key": JIRA_PROJECT},
                    "issuetype": {"name": "Sub-task"},
                    "summary": "Jira sub-task",
                    "parent": {"id": task.id},
                }
            },
        )
        fake.link_as(alice, other, task, "Blocks")

    def redmine_task_complete() -> bool:
        issue = in_redmine("From Jira")
        closed = in_redmine("Jira bug")
        return bool(issue and closed and closed.status == "Closed" and issue.comments and issue.attachments)

    until(home, redmine_task_complete, "Jira's edit, transition, comment and attachment")
    until(home, lambda: in_redmine("Jira sub-task") is not None, "Jira's sub-task")
    made = in_redmine("From Jira")
    assert made is not None
    assert made.fields["priority"] == "Immediate"
    assert [c.body for c in made.comments] == ["alice@example.org wrote:\nclosing this"]
    assert [(a.filename, a.size) for a in made.attachments] == [("notes.txt", 12)]
    child = in_redmine("Jira sub-task")
    assert child is not None and child.parent_id == made.id and child.issue_type == "Support"
    until(home, lambda: bool(remote.read_issue(person.issues()["Jira bug"]).links), "Jira's link")  # type: ignore[union-attr]
    bug = in_redmine("Jira bug")
    assert bug is not None and bug.links == [("blocks", made.id)]

    # Redmine -> Jira
    feature = person.create("From Redmine", "Feature", "Immediate")
    until(home, lambda: only_issue(server, "From Redmine") is not None, "Redmine's create")
    j_feature = only_issue(server, "From Redmine")
    assert j_feature is not None and j_feature.issue_type == "Task"
    assert j_feature.values["priority"] == "Highest"
    person.update(feature, status_id=person.status("In Progress"), notes="working on it")
    person.attach(feature, "shot.png", b"\x89PNG-ish")
    person.create("Redmine child", "Support", "Normal", parent=feature)
    person.relate(feature, person.issues()["Jira bug"], "relates")

    def jira_feature_complete() -> bool:
        with server.state():
            return bool(
                j_feature.status == "In Progress" and j_feature.comments and j_feature.attachments
                and j_feature.links
            )  # fmt: skip

    until(home, jira_feature_complete, "Redmine's transition, comment, attachment and link")
    until(home, lambda: only_issue(server, "Redmine child") is not None, "Redmine's sub-task")
    assert [c["body"] for c in j_feature.comments] == ["admin wrote:\nworking on it"]
    assert [(a["filename"], a["size"]) for a in j_feature.attachments] == [("shot.png", 8)]
    j_child = only_issue(server, "Redmine child")
    assert j_child is not None and j_child.issue_type == "Sub-task" and j_child.parent_id == j_feature.id
    assert j_child.values["priority"] == "Medium"
    # settled: nothing more is sent, nothing came back, nothing failed
    sent = len(outgoing(home, key))
    for _ in range(4):
        Engine(home).run_once()
        time.sleep(0.15)
    assert len(outgoing(home, key)) == sent
    assert problems(home, key) == []
    assert all(m.folder == Folder.SENT for m in outgoing(home, key))
    assert len(server.fake.issues) == 5 and len(person.issues()) == 5
    assert len(task.comments) == 1 and len(task.attachments) == 1 and len(j_feature.comments) == 1
