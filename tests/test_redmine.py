"""The Redmine connector against a real Redmine 5 (Debian's), one fresh project per test."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engine.errors import BackboneError, TrackerAuthFailed, TrackerOffline, TrackerRefused
from engine.service.installation import Installation
from engine.trackers.base import ChecksPermissions
from engine.trackers.mirror import ChangeMirror
from engine.trackers.redmine import RedmineClient, RedmineTracker
from engine.trackers.settings import TrackerSettings
from tests.mailserver import free_port
from tests.redmine_server import RedmineServer, redmine  # noqa: F401 - the session fixture

SYNC = "sync-bot"


def connect(
    server: RedmineServer, home: Installation, key: str | None = None, url: str | None = None, **options: Any
) -> RedmineTracker:
    """A connector as the sync user (or with `key`), its changes kept in `home`."""
    sync_marker, write_marker = server.marker_field_ids
    settings = TrackerSettings(
        "redmine",
        "redmine",
        url or server.url,
        0,
        "apikey",
        SYNC,
        key or server.sync_key,
        {
            "poll_interval": 0.001,
            "sync_marker_field_id": sync_marker,
            "write_marker_field_id": write_marker,
            **options,
        },
    )
    return RedmineTracker(settings, ChangeMirror(home.db, f"redmine-{uuid.uuid4().hex[:6]}"))


@pytest.fixture
def project(redmine: RedmineServer) -> str:  # noqa: F811
    return redmine.new_project(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def sync(redmine: RedmineServer, home: Installation) -> Iterator[RedmineTracker]:  # noqa: F811
    tracker = connect(redmine, home)
    yield tracker
    tracker.close()


@pytest.fixture
def human(redmine: RedmineServer, home: Installation) -> Iterator[RedmineTracker]:  # noqa: F811
    """The administrator, acting as a person editing in Redmine."""
    tracker = connect(redmine, home, redmine.admin_key)
    yield tracker
    tracker.close()


def test_writes_read_back_and_repeat_as_no_ops(
    sync: RedmineTracker, human: RedmineTracker, project: str
) -> None:
    fields: dict[str, Any] = {"summary": "Printer on fire", "description": "Smoke *everywhere*"}
    fields["priority"] = "High"
    fields |= {"Severity": "Critical", "Points": 3, "Customer": "ACME"}
    issue_id = sync.create_issue(project, "Bug", fields, as_user=SYNC, marker="pair-1")
    # a crash after the create: the repeated create finds the marked issue
    assert sync.create_issue(project, "Bug", fields, as_user=SYNC, marker="pair-1") == issue_id
    assert sync.find_by_marker(project, "pair-1") == issue_id and sync.find_by_marker(project, "x") is None
    issue = sync.read_issue(issue_id)
    assert issue is not None and issue.marker == "pair-1" and issue.status == "New"
    assert issue.key == f"{project.upper()}-{issue_id}" and issue.issue_type == "Bug"
    # a sync user that may not read the field definitions sees every custom value as text
    assert {k: issue.fields[k] for k in fields} == fields | {"Points": "3"}
    assert issue.fields["reporter"] == SYNC
    assert "Backbone sync marker" not in issue.fields and "Backbone write marker" not in issue.fields
    assert sync.issue_keys([issue_id, "999999"]) == {issue_id: issue.key}
    assert sync.issue_key_to_id(issue.key) == sync.issue_key_to_id(f"#{issue_id}") == issue_id
    with pytest.raises(BackboneError):
        sync.issue_key_to_id("999999")

    unchanged_summary = {"summary": "Printer on fire", "Points": 5}
    assert sync.update_issue(issue_id, unchanged_summary, as_user=SYNC) == ["Points"]
    assert sync.update_issue(issue_id, {"Points": "5", "priority": "High"}, as_user=SYNC) == []

    comment = sync.add_comment(issue_id, "Called the fire brigade", as_user=SYNC, marker="msg-1")
    assert sync.add_comment(issue_id, "Called the fire brigade", as_user=SYNC, marker="msg-1") == comment
    attachment = sync.add_attachment(issue_id, "smoke.txt", b"grey\n", as_user=SYNC, marker="msg-2")
    assert sync.add_attachment(issue_id, "smoke.txt", b"grey\n", as_user=SYNC, marker="msg-2") == attachment
    info, content = sync.read_attachment(attachment)
    assert (info.filename, info.size, info.author, content) == ("smoke.txt", 5, SYNC, b"grey\n")

    assert sync.transition(issue_id, "In Progress", as_user=SYNC) is True
    assert sync.transition(issue_id, "In Progress", as_user=SYNC) is False
    other = sync.create_issue(project, "Feature", {"summary": "Buy a printer"}, as_user=SYNC)
    sub = sync.create_issue(project, "Support", {"summary": "Ventilate"}, as_user=SYNC, parent_id=issue_id)
    link = sync.add_link(issue_id, other, "blocks", as_user=SYNC, marker="msg-3")
    assert sync.add_link(issue_id, other, "blocks", as_user=SYNC, marker="msg-3") == link

    issue = sync.read_issue(issue_id)
    assert issue is not None and issue.status == "In Progress" and issue.fields["Points"] == "5"
    assert [(c.id, c.body, c.author) for c in issue.comments] == [(comment, "Called the fire brigade", SYNC)]
    assert [a.id for a in issue.attachments] == [attachment] and issue.links == [("blocks", other)]
    blocked, child = sync.read_issue(other), sync.read_issue(sub)
    assert blocked is not None and blocked.links == [("blocked", issue_id)]
    assert child is not None and child.parent_id == issue_id
    assert sync.read_issue("999999") is None
    as_admin = human.read_issue(issue_id)
    assert as_admin is not None and as_admin.fields["Points"] == 5 and as_admin.marker == "pair-1"


def test_changes_come_once_in_order_across_polls(
    sync: RedmineTracker, human: RedmineTracker, project: str
) -> None:
    issue_id = human.create_issue(project, "Bug", {"summary": "Slow login"}, as_user="admin")
    human.update_issue(issue_id, {"summary": "Very slow login", "Severity": "High"}, as_user="admin")
    first = sync.changes_since(project, 0, 100)
    assert [(c.op, c.author) for c in first] == [("create", "admin"), ("update", "admin")]
    summary = ["Slow login", "Very slow login"]
    assert first[1].data == {"fields": {"summary": summary, "Severity": [None, "High"]}}
    assert first[0].data == {"key": f"{project.upper()}-{issue_id}"}

    # the second poll reads the same issue again (the overlap) and yields only what is new
    sync.add_comment(issue_id, "Looking into it", as_user=SYNC, marker="msg-1")
    human.transition(issue_id, "Resolved", as_user="admin")
    sync.add_attachment(issue_id, "trace.log", b"t" * 10, as_user=SYNC, marker="msg-2")
    second = sync.changes_since(project, first[-1].id, 100)
    expected = [("comment", SYNC), ("transition", "admin"), ("attach", SYNC)]
    assert [(c.op, c.author) for c in second] == expected
    assert second[1].data == {"fields": {"status": ["New", "Resolved"]}}
    issue = sync.read_issue(issue_id)
    assert issue is not None
    assert second[0].data == {"comment": issue.comments[0].id}
    assert second[2].data == {"attachment": issue.attachments[0].id}
    assert sync.changes_since(project, second[-1].id, 100) == []
    assert [c.id for c in sync.changes_since(project, 0, 100)] == [c.id for c in first + second]


def test_a_relation_added_later_is_found_by_the_sweep(
    redmine: RedmineServer,  # noqa: F811
    home: Installation,
    human: RedmineTracker,
    project: str,
) -> None:
    """Redmine journals a new relation on both issues but leaves their updated_on as it was: only
    the relation sweep finds one added after the overlap (it costs one request per 100 issues)."""
    sync = connect(redmine, home, poll_overlap=1, relation_sweep=0.5)
    try:
        first = human.create_issue(project, "Bug", {"summary": "One"}, as_user="admin")
        second = human.create_issue(project, "Bug", {"summary": "Two"}, as_user="admin")
        seen = sync.changes_since(project, 0, 100)
        assert [c.op for c in seen] == ["create", "create"]
        time.sleep(2.1)  # past the overlap: the issues are no longer read again
        assert sync.changes_since(project, seen[-1].id, 100) == []
        human.add_link(first, second, "blocks", as_user="admin")
        time.sleep(0.6)  # the sweep is due
        links = sync.changes_since(project, seen[-1].id, 100)
        assert [(c.op, c.issue_id, c.data["target"], c.data["kind"]) for c in links] == [
            ("link", first, second, "blocks")
        ]
        assert sync.changes_since(project, links[-1].id, 100) == []  # read once
    finally:
        sync.close()


def test_schema_users_and_permissions(
    redmine: RedmineServer,  # noqa: F811
    sync: RedmineTracker,
    human: RedmineTracker,
    project: str,
) -> None:
    kinds = human.field_names(project)
    assert {name: kinds[name] for name in ("Severity", "Points", "Customer", "Reviewer", "due_date")} == {
        "Severity": "select",
        "Points": "number",
        "Customer": "text",
        "Reviewer": "user",
        "due_date": "date",
    }
    assert "Backbone sync marker" not in kinds
    assert human.field_options(project, "Severity") == ["Low", "High", "Critical"]
    assert human.field_options(project, "Points") == [] and "High" in sync.field_options(project, "priority")
    assert sync.issue_types(project) == ["Bug", "Feature", "Support"]
    assert sync.statuses(project)[:2] == ["New", "In Progress"]
    assert (project, project) in sync.projects()
    assert human.user_emails()[SYNC] == "sync-bot@example.org" and sync.user_emails() == {}
    assert isinstance(sync, ChecksPermissions)
    assert sync.missing_permissions(project, SYNC) == []
    assert human.missing_permissions(project, SYNC) == []
    with httpx.Client(base_url=redmine.url, headers={"X-Redmine-API-Key": redmine.admin_key}) as admin:
        admin.post("/projects.json", json={"project": {"name": "bare", "identifier": f"{project}-bare"}})
    assert human.missing_permissions(f"{project}-bare", SYNC) == [f"{SYNC} is no member of {project}-bare"]


def test_errors_map_to_the_protocol(
    redmine: RedmineServer,  # noqa: F811
    home: Installation,
    sync: RedmineTracker,
    project: str,
) -> None:
    with pytest.raises(TrackerRefused, match="Subject cannot be blank"):
        sync.create_issue(project, "Bug", {"summary": ""}, as_user=SYNC)
    with pytest.raises(TrackerRefused, match="no issue field 'Colour'"):
        sync.create_issue(project, "Bug", {"summary": "x", "Colour": "red"}, as_user=SYNC)
    with pytest.raises(TrackerRefused, match="no tracker 'Epic'"):
        sync.create_issue(project, "Epic", {"summary": "x"}, as_user=SYNC)
    bad_key = connect(redmine, home, "0" * 40)
    with pytest.raises(TrackerAuthFailed, match="401"):
        bad_key.changes_since(project, 0, 10)
    assert bad_key.is_online()
    stopped = connect(redmine, home, url=f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(TrackerOffline, match="cannot connect") as caught:
        stopped.read_issue("1")
    assert not isinstance(caught.value, TrackerAuthFailed) and not stopped.is_online()


def test_the_client_waits_as_told_on_429_and_503() -> None:
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(503), httpx.Response(200)]
    )
    waits: list[float] = []
    client = RedmineClient(
        "http://redmine.invalid",
        "key",
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=waits.append,
    )
    assert client.get("/issues.json") == {} and waits == [2.0, 0.4] and client.request_count == 3
    down = RedmineClient(
        "http://redmine.invalid",
        "key",
        transport=httpx.MockTransport(lambda request: httpx.Response(502)),
        sleep=waits.append,
    )
    with pytest.raises(RedmineClient.Offline, match="502"):
        down.get("/issues.json")


PLAIN = (
    "Costs *5* _each_ at #1, r2 & @admin: see [[Wiki]] {{toc}} <b>x</b> &amp; http://x.org/a_b\n"
    "# not a heading\n"
    "1. not a list\n"
    "    not code\n"
    "- not an item | h1. not either \\*"
)


def _shown(page: str, start: str) -> str:
    """The text a browser shows in the element that `start` opens (tags dropped, blanks folded)."""
    found = re.search(re.escape(start) + r"(.*?)</div>", page, re.S)
    assert found is not None, f"{start} not on the page"
    text = re.sub(r"<br\s*/?>", "\n", found.group(1))
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split())


@pytest.mark.parametrize("formatting", ["textile", "markdown", "common_mark"])
def test_bodies_show_as_written_and_read_back_as_plain_text(
    redmine: RedmineServer,  # noqa: F811
    home: Installation,
    project: str,
    human: RedmineTracker,
    formatting: str,
) -> None:
    redmine.set_text_formatting(formatting)
    try:
        sync = connect(redmine, home, text_formatting=formatting)
        issue_id = sync.create_issue(
            project, "Bug", {"summary": "Bodies", "description": PLAIN}, as_user=SYNC
        )
        sync.add_comment(issue_id, PLAIN, as_user=SYNC, marker="msg-1")
        issue = sync.read_issue(issue_id)
        assert issue is not None
        assert issue.fields["description"] == issue.comments[0].body == PLAIN
        # Redmine shows the text as it was written: no markup, no links, no macros
        with redmine.web() as web:
            page = web.get(f"/issues/{issue_id}").text
        note = f'id="journal-{issue.comments[0].id}-notes" class="wiki">'
        assert _shown(page, '<div class="wiki">') == _shown(page, note) == " ".join(PLAIN.split())
        # stable: writing the same text again is no change, and nothing new is detected
        first = sync.changes_since(project, 0, 100)
        assert sync.update_issue(issue_id, {"description": PLAIN}, as_user=SYNC) == []
        assert sync.changes_since(project, first[-1].id, 100) == []
        # what a person types in Redmine's markup is read as the text it stands for
        typed = {
            "textile": 'Smoke *everywhere*, see "the docs":http://x.org and @code@\r\nh2. Next',
            "markdown": "Smoke *everywhere*, see [the docs](http://x.org) and `code`\r\n## Next",
            "common_mark": "Smoke **everywhere**, see [the docs](http://x.org) and `code`\r\n## Next",
        }[formatting]
        human.update_issue(issue_id, {"description": "-"}, as_user="admin")
        with redmine.admin() as http:
            http.put(f"/issues/{issue_id}.json", json={"issue": {"description": typed}}).raise_for_status()
        expected = "Smoke everywhere, see the docs (http://x.org) and code\nNext"
        issue = sync.read_issue(issue_id)
        assert issue is not None and issue.fields["description"] == expected
        changed = sync.changes_since(project, first[-1].id, 100)
        assert changed[-1].data["fields"]["description"][1] == expected
        assert sync.update_issue(issue_id, {"description": expected}, as_user=SYNC) == []
    finally:
        redmine.set_text_formatting("markdown")
