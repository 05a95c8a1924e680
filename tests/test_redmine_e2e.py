"""End to end across two installations: a real Redmine on Acme's side, the embedded tracker on
Globex's, paired over a real exchange folder with OpenPGP on. Every kind of change travels both
ways (create, mapped values, transitions, comments, attachments, sub-tasks); nothing echoes and
nothing ends in ERROR or REJECTED."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.runtime.demo import settle
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.trackers.base import IssueData
from engine.vocab import Folder, Protocol, SyncStatus
from tests import ledger
from tests.redmine_server import SYNC_ADMIN_LOGIN, RedmineServer, redmine  # noqa: F401 - the session fixture

SYNC_USER = "sync-bot"  # Globex's, in the embedded tracker
REDMINE_SYNC_USER = SYNC_ADMIN_LOGIN  # Acme's: an administrator, who may read field definitions
TRACKER = "redmine"
GLOBEX = "GLOBEX"

# Acme's side: Redmine's own names. Priorities and severities differ from Globex's and are mapped.
ACME_CONFIG = """
version = 1
comments = "both"
attachments = "both"
subtasks = true
links = true

[issue_types]
Bug = "defect"
Feature = "story"
Support = "subtask"

[statuses]
New = "open"
"In Progress" = "in-progress"
Resolved = "review"
Closed = "closed"

[[fields]]
id = "title"
local = "summary"
kind = "text"

[[fields]]
id = "details"
local = "description"
kind = "text"

[[fields]]
id = "urgency"
local = "priority"
kind = "select"
values = { Immediate = "u1", Urgent = "u2", High = "u3", Normal = "u4", Low = "u5" }

[[fields]]
id = "impact"
local = "Severity"
kind = "select"
values = { Critical = "i1", High = "i2", Low = "i3" }
"""

GLOBEX_CONFIG = """
version = 1
comments = "both"
attachments = "both"
subtasks = true
links = true

[issue_types]
Bug = "defect"
Story = "story"
Sub-task = "subtask"

[statuses]
"To Do" = "open"
"In Progress" = "in-progress"
"In Review" = "review"
Done = "closed"

[[fields]]
id = "title"
local = "summary"
kind = "text"

[[fields]]
id = "details"
local = "description"
kind = "text"

[[fields]]
id = "urgency"
local = "priority"
kind = "select"
values = { Highest = "u1", High = "u2", Medium = "u3", Low = "u4", Lowest = "u5" }

[[fields]]
id = "impact"
local = "Impact"
kind = "select"
values = { Blocker = "i1", Significant = "i2", Cosmetic = "i3" }
"""


@dataclass
class RedminePair:
    """Acme (primary, a Redmine project) and Globex (secondary, embedded GLOBEX), RUNNING."""

    root: Path
    acme: Installation
    globex: Installation
    key: str
    project: str
    server: RedmineServer

    def close(self) -> None:
        self.acme.close()
        self.globex.close()

    def settle(self, until: Callable[[], bool] | None = None, timeout: float = 60.0) -> None:
        """Run both engines (Acme's polls Redmine) until `until` holds and nothing is left to do."""
        deadline = time.monotonic() + timeout
        while True:
            settle((Engine(self.acme), Engine(self.globex)), until=until, timeout=timeout)
            if until is None or until():
                return
            assert time.monotonic() < deadline, "not synced in time"

    def redmine(self) -> httpx.Client:
        """A person (the administrator) working in Redmine."""
        return self.server.admin()


def pair_with_redmine(root: Path, server: RedmineServer, *, encryption: bool = True) -> RedminePair:
    """Pair a fresh Redmine project (Acme) with an embedded project (Globex), configure, start."""
    project = server.new_project(f"e{uuid.uuid4().hex[:10]}")
    acme, globex = Installation(root / "acme"), Installation(root / "globex")
    exchange = root / "exchange"
    (exchange / "acme" / Folder.SEND).mkdir(parents=True)
    (exchange / "acme" / Folder.RECEIVE).mkdir()
    (exchange / "globex").mkdir()
    (exchange / "globex" / Folder.SEND).symlink_to(f"../acme/{Folder.RECEIVE}")
    (exchange / "globex" / Folder.RECEIVE).symlink_to(f"../acme/{Folder.SEND}")
    sync_marker, write_marker = server.marker_field_ids
    acme.trackers.add(
        TRACKER,
        "redmine",
        server.url,
        auth="apikey",
        user=REDMINE_SYNC_USER,
        secret=server.sync_admin_key,
        poll_interval=0.1,
        options={
            "sync_marker_field_id": sync_marker,
            "write_marker_field_id": write_marker,
            "text_formatting": "markdown",  # as the fixture's Redmine is set
        },
    )
    globex.tracker.create_project(GLOBEX, "Globex Support")
    globex.tracker.add_custom_field(GLOBEX, "Impact", "select", ["Blocker", "Significant", "Cosmetic"])
    info, handshake = acme.create_primary(
        project=project,
        user=REDMINE_SYNC_USER,
        protocol=Protocol.FILE,
        name="Acme Redmine <-> Globex",
        exchange=exchange / "acme",
        partner_project=GLOBEX,
        handshake_out=root / "handshake.json",
        encryption=encryption,
        tracker=TRACKER,
    )
    key = info.key
    globex.create_secondary(handshake=handshake, project=GLOBEX, user=SYNC_USER, exchange=exchange / "globex")
    globex.accept(key)
    pair = RedminePair(root, acme, globex, key, project, server)

    def status(inst: Installation) -> str:
        return inst.sync_info(key).status

    pair.settle(lambda: status(acme) == status(globex) == SyncStatus.STOPPED)
    acme.config_import_text(key, ACME_CONFIG, "acme.toml")
    acme.publish_config(key, "Defects, stories and their sub-tasks; urgency and impact.")
    pair.settle(lambda: status(globex) == SyncStatus.UPDATE_REQUIRED)
    globex.config_import_text(key, GLOBEX_CONFIG, "globex.toml")
    globex.publish_config(key)
    pair.settle(lambda: status(acme) == SyncStatus.STOPPED)
    acme.start([key])
    globex.start([key])
    return pair


@pytest.fixture
def rpair(tmp_path: Path, redmine: RedmineServer) -> Iterator[RedminePair]:  # noqa: F811
    pair = pair_with_redmine(tmp_path, redmine)
    yield pair
    pair.close()


def globex_issue(pair: RedminePair, summary: str) -> IssueData | None:
    found = [i for i in pair.globex.tracker.list_issues(GLOBEX) if i.fields["summary"] == summary]
    assert len(found) <= 1, f"{len(found)} Globex issues named {summary!r}"
    return pair.globex.tracker.read_issue(found[0].id) if found else None


def redmine_issue(pair: RedminePair, subject: str) -> IssueData | None:
    with pair.redmine() as http:
        listed = http.get(
            "/issues.json", params={"project_id": pair.project, "status_id": "*", "limit": 100}
        ).json()["issues"]
    found = [i for i in listed if i["subject"] == subject]
    assert len(found) <= 1, f"{len(found)} Redmine issues named {subject!r}"
    return pair.acme.trackers.get(TRACKER).read_issue(str(found[0]["id"])) if found else None


def sent_ops(inst: Installation, key: str) -> Counter[str]:
    """How many issue messages of each operation `inst` sent."""
    return Counter(
        str(r.body.get("op")) for r in ledger.rows(inst, key) if r.direction == "out" and r.type == "ISSUE"
    )


def problems(inst: Installation, key: str) -> list[tuple[str, str, str]]:
    bad = (Folder.ERROR, Folder.REJECTED, Folder.SEND_ERROR, Folder.MISSING, Folder.WAITING, Folder.OFFLINE)
    return [(m.folder, m.reason_code, m.reason_text) for m in inst.messages(key) if m.folder in bad]


def upload(http: httpx.Client, name: str, content: bytes) -> dict[str, Any]:
    answer = http.post(
        "/uploads.json",
        params={"filename": name},
        content=content,
        headers={"Content-Type": "application/octet-stream"},
    )
    answer.raise_for_status()
    return {"token": answer.json()["upload"]["token"], "filename": name, "content_type": "text/plain"}


def test_redmine_to_embedded_and_back_encrypted(rpair: RedminePair) -> None:
    pair = rpair
    # -- Redmine -> Globex: a person creates, edits, moves, comments, attaches and adds a sub-task
    with pair.redmine() as http:
        answer = http.post(
            "/issues.json",
            json={
                "issue": {
                    "project_id": pair.project,
                    "tracker_id": 1,  # Bug
                    "subject": "Checkout fails",
                    "description": "On carts over 100 items",
                    "priority_id": _priority(http, "Urgent"),
                    "custom_fields": [{"id": _field(http, "Severity"), "value": "Critical"}],
                }
            },
        )
        answer.raise_for_status()
        bug = str(answer.json()["issue"]["id"])
    pair.settle(lambda: globex_issue(pair, "Checkout fails") is not None)
    mirrored = globex_issue(pair, "Checkout fails")
    assert mirrored is not None
    assert (mirrored.issue_type, mirrored.status) == ("Bug", "To Do")
    assert mirrored.fields["description"] == "On carts over 100 items"
    assert (mirrored.fields["priority"], mirrored.fields["Impact"]) == ("High", "Blocker")

    with pair.redmine() as http:
        edit = {
            "priority_id": _priority(http, "Low"),
            "custom_fields": [{"id": _field(http, "Severity"), "value": "High"}],
        }
        http.put(f"/issues/{bug}.json", json={"issue": edit}).raise_for_status()
        http.put(
            f"/issues/{bug}.json", json={"issue": {"status_id": _status(http, "In Progress")}}
        ).raise_for_status()
        http.put(f"/issues/{bug}.json", json={"issue": {"notes": "Reproduced on staging"}}).raise_for_status()
        http.put(
            f"/issues/{bug}.json", json={"issue": {"uploads": [upload(http, "trace.txt", b"stack trace\n")]}}
        ).raise_for_status()
        http.post(
            "/issues.json",
            json={
                "issue": {
                    "project_id": pair.project,
                    "tracker_id": 3,
                    "subject": "Add a test",
                    "parent_issue_id": int(bug),
                }
            },
        ).raise_for_status()

    def arrived() -> bool:
        issue = globex_issue(pair, "Checkout fails")
        return (
            issue is not None
            and issue.status == "In Progress"
            and bool(issue.comments)
            and bool(issue.attachments)
            and globex_issue(pair, "Add a test") is not None
        )

    pair.settle(arrived)
    mirrored = globex_issue(pair, "Checkout fails")
    assert mirrored is not None
    assert (mirrored.fields["priority"], mirrored.fields["Impact"]) == ("Lowest", "Significant")
    assert [c.body for c in mirrored.comments] == ["admin wrote:\nReproduced on staging"]
    assert [(a.filename, a.size) for a in mirrored.attachments] == [("trace.txt", 12)]
    assert pair.globex.tracker.read_attachment(mirrored.attachments[0].id)[1] == b"stack trace\n"
    sub = globex_issue(pair, "Add a test")
    assert sub is not None and (sub.issue_type, sub.parent_id) == ("Sub-task", mirrored.id)

    # -- Globex -> Redmine: a person there does the same to an issue of its own
    g = pair.globex.tracker
    story = g.create_issue(
        GLOBEX,
        "Story",
        {"summary": "Dark mode", "description": "For the portal", "priority": "Medium", "Impact": "Cosmetic"},
        as_user="carol",
    )
    pair.settle(lambda: redmine_issue(pair, "Dark mode") is not None)
    remote = redmine_issue(pair, "Dark mode")
    assert remote is not None and remote.marker is not None
    assert (remote.issue_type, remote.status, remote.fields["description"]) == (
        "Feature",
        "New",
        "For the portal",
    )
    assert (remote.fields["priority"], remote.fields["Severity"]) == ("High", "Low")
    g.update_issue(story, {"priority": "Highest", "Impact": "Blocker"}, as_user="carol")
    g.transition(story, "In Review", as_user="carol")
    g.add_comment(story, "Mock-ups are ready", as_user="carol")
    g.add_attachment(story, "mock.txt", b"dark\n", as_user="carol", media_type="text/plain")
    g.create_issue(GLOBEX, "Sub-task", {"summary": "Pick colours"}, as_user="carol", parent_id=story)

    def landed() -> bool:
        issue = redmine_issue(pair, "Dark mode")
        return (
            issue is not None
            and issue.status == "Resolved"
            and bool(issue.comments)
            and bool(issue.attachments)
            and redmine_issue(pair, "Pick colours") is not None
        )

    pair.settle(landed)
    remote = redmine_issue(pair, "Dark mode")
    assert remote is not None
    assert (remote.fields["priority"], remote.fields["Severity"]) == ("Immediate", "Critical")
    assert [(c.author, c.body) for c in remote.comments] == [
        (REDMINE_SYNC_USER, "carol wrote:\nMock-ups are ready")
    ]
    assert [(a.filename, a.size, a.author) for a in remote.attachments] == [
        ("mock.txt", 5, REDMINE_SYNC_USER)
    ]
    assert pair.acme.trackers.get(TRACKER).read_attachment(remote.attachments[0].id)[1] == b"dark\n"
    child = redmine_issue(pair, "Pick colours")
    assert child is not None and (child.issue_type, child.parent_id) == ("Support", remote.id)

    # a few more passes (Redmine polled again): nothing comes back, nothing is stuck
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        pair.settle()
    acme_ops, globex_ops = sent_ops(pair.acme, pair.key), sent_ops(pair.globex, pair.key)
    expected = Counter({"create": 2, "update": 2, "comment": 1, "attachment": 1})
    assert (acme_ops, globex_ops) == (expected, expected)
    assert problems(pair.acme, pair.key) == problems(pair.globex, pair.key) == []
    # the values stayed as they were set (no write bounced back and forth)
    mirrored = globex_issue(pair, "Checkout fails")
    assert mirrored is not None and mirrored.fields["priority"] == "Lowest"
    remote = redmine_issue(pair, "Dark mode")
    assert remote is not None and remote.status == "Resolved" and len(remote.comments) == 1


def _named(http: httpx.Client, path: str, key: str, name: str) -> int:
    items = http.get(path).json()[key]
    return int(next(item["id"] for item in items if item["name"] == name))


def _priority(http: httpx.Client, name: str) -> int:
    return _named(http, "/enumerations/issue_priorities.json", "issue_priorities", name)


def _status(http: httpx.Client, name: str) -> int:
    return _named(http, "/issue_statuses.json", "issue_statuses", name)


def _field(http: httpx.Client, name: str) -> int:
    return _named(http, "/custom_fields.json", "custom_fields", name)
