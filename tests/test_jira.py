"""The Jira connector against the fake Jira (v2 and v3), every exchange checked against the
published OpenAPI: writes and their markers, change detection across polls, errors, ADF."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from engine.errors import TrackerAuthFailed, TrackerOffline, TrackerRefused
from engine.service.installation import Installation
from engine.trackers.jira import JiraTracker, adf
from engine.trackers.mirror import ChangeMirror
from tests.fake_jira import FakeJira
from tests.fake_jira_state import SITE
from tests.jira_contract import check_request, require_contract


@pytest.fixture(params=[3, 2], ids=["cloud-v3", "server-v2"])
def fake(request: pytest.FixtureRequest) -> FakeJira:
    return FakeJira(request.param, page_size=2)  # small pages: every list is read over several


@pytest.fixture
def jira(fake: FakeJira, home: Installation) -> Iterator[JiraTracker]:
    tracker = JiraTracker(
        fake.settings(poll_interval=0.001), ChangeMirror(home.db, "jira-1"), transport=fake.transport
    )
    yield tracker
    tracker.close()


def sync_user(fake: FakeJira) -> str:
    """The name the sync account goes by: its Cloud login (an e-mail address) up to the "@", or
    its Server/DC login."""
    return "sync-bot"


def test_create_read_update_comment_attach_link(fake: FakeJira, jira: JiraTracker) -> None:
    issue_id = jira.create_issue(
        "ACME",
        "Bug",
        {
            "summary": "Login fails",
            "description": "Steps:\n1. open\n\nThen it fails.",
            "labels": ["web"],
            "priority": "High",
            "Severity": "Major",
            "Story points": 3.0,
            "assignee": "alice@example.org" if fake.version == 3 else "alice",
        },
        as_user="x",
        marker="pair-1",
    )
    issue = jira.read_issue(issue_id)
    assert issue is not None and issue.key == "ACME-1" and issue.marker == "pair-1"
    assert issue.fields["description"] == "Steps:\n1. open\n\nThen it fails." and issue.status == "To Do"
    assert issue.fields["Severity"] == "Major" and issue.fields["labels"] == ["web"]
    assert issue.fields["assignee"] == ("alice@example.org" if fake.version == 3 else "alice")
    assert issue.fields["reporter"] == sync_user(fake)
    assert jira.update_issue(issue_id, {"summary": "Login fails", "priority": "Low"}, as_user="x") == [
        "priority"
    ]
    before = len(fake.log)
    assert jira.update_issue(issue_id, {"priority": "Low"}, as_user="x") == []
    assert [m for m, _ in fake.log[before:]] == ["GET"]  # compare first: nothing written
    comment = jira.add_comment(issue_id, "first line\nsecond", as_user="x", marker="msg-1")
    attachment = jira.add_attachment(issue_id, "log.txt", b"boom", as_user="x")
    other = jira.create_issue("ACME", "Task", {"summary": "Other"}, as_user="x")
    link = jira.add_link(issue_id, other, "relates", as_user="x")
    issue = jira.read_issue(issue_id)
    assert issue is not None
    assert [(c.id, c.body) for c in issue.comments] == [(comment, "first line\nsecond")]
    assert [(a.id, a.filename, a.size) for a in issue.attachments] == [(attachment, "log.txt", 4)]
    assert issue.links == [("relates", other)]
    info, content = jira.read_attachment(attachment)
    assert content == b"boom" and info.filename == "log.txt"
    assert jira.issue_keys([issue_id, other, "999"]) == {issue_id: "ACME-1", other: "ACME-2"}
    assert jira.issue_key_to_id("ACME-2") == other and jira.read_issue("424242") is None
    # repeated writes (as after a crash) find the first one instead of writing again
    assert jira.find_by_marker("ACME", "pair-1") == issue_id and jira.find_by_marker("ACME", "nope") is None
    assert (
        jira.create_issue("ACME", "Bug", {"summary": "Login fails"}, as_user="x", marker="pair-1") == issue_id
    )
    assert jira.add_comment(issue_id, "first line\nsecond", as_user="x", marker="msg-1") == comment
    assert jira.add_attachment(issue_id, "log.txt", b"boom", as_user="x") == attachment
    assert jira.add_link(issue_id, other, "relates", as_user="x") == link
    stored = fake.issues[issue_id]
    assert len(stored.comments) == 1 and len(stored.attachments) == 1 and len(stored.links) == 1
    assert len(fake.issues) == 2


def test_comment_marker_without_expanded_properties(fake: FakeJira, jira: JiraTracker) -> None:
    fake.expand_comment_properties = False  # a Jira that ignores expand=properties on comments
    issue_id = jira.create_issue("ACME", "Task", {"summary": "S"}, as_user="x")
    first = jira.add_comment(issue_id, "hello", as_user="x", marker="msg-9")
    assert jira.add_comment(issue_id, "hello", as_user="x", marker="msg-9") == first
    assert fake.requests_to(f"/comment/{first}/properties") == 1


def test_transition_takes_the_shortest_path(fake: FakeJira, jira: JiraTracker) -> None:
    issue_id = jira.create_issue("ACME", "Task", {"summary": "S"}, as_user="x")
    assert jira.transition(issue_id, "Done", as_user="x") is True
    assert fake.issues[issue_id].status == "Done"
    assert [i["items"][0]["toString"] for i in fake.issues[issue_id].changelog] == [
        "In Progress",
        "In Review",
        "Done",
    ]
    assert jira.transition(issue_id, "Done", as_user="x") is False
    assert jira.transition(issue_id, "In Review", as_user="x") is True  # Done -> To Do -> ... -> In Review
    assert fake.issues[issue_id].status == "In Review"
    with pytest.raises(TrackerRefused, match="no workflow path"):
        jira.transition(issue_id, "Nowhere", as_user="x")
    created = jira.create_issue("ACME", "Task", {"summary": "T"}, as_user="x", status="In Progress")
    assert fake.issues[created].status == "In Progress"
    assert jira.update_issue(created, {"status": "In Review", "summary": "T"}, as_user="x") == ["status"]


def test_detection_returns_each_change_once_in_order(fake: FakeJira, jira: JiraTracker) -> None:
    alice, me = fake.alice, sync_user(fake)
    alice_name = "alice@example.org" if fake.version == 3 else "alice"
    first = fake.create_as(alice, "One")
    fake.edit_as(alice, first, summary="One!", labels=["a", "b"])
    changes = jira.changes_since("ACME", 0, 100)
    assert [(c.op, c.author) for c in changes] == [("create", alice_name), ("update", alice_name)]
    assert changes[1].data == {"fields": {"summary": ["One", "One!"], "labels": [[], ["a", "b"]]}}
    cursor = changes[-1].id
    # more changes in the same minute, on that issue and on new ones (the window overlaps)
    fake.move_as(alice, first, "In Progress")
    jira.add_comment(first.id, "from the sync", as_user="x")
    for n in range(3):
        fake.create_as(alice, f"More {n}")
    time.sleep(0.002)
    later = jira.changes_since("ACME", cursor, 100)
    assert [c.op for c in later] == ["transition", "comment", "create", "create", "create"]
    assert later[0].data == {"fields": {"status": ["To Do", "In Progress"]}}
    assert later[1].author == me  # the sync user's own write: an echo
    assert jira.changes_since("ACME", later[-1].id, 100) == []  # read again, recorded once
    fake.tick(600)  # ten minutes on: the window moves, old changes stay out
    fake.edit_as(alice, first, customfield_10010={"value": "Critical"}, customfield_10011=5.0)
    time.sleep(0.002)
    searches = fake.requests_to("/search")
    newest = jira.changes_since("ACME", later[-1].id, 100)
    assert [(c.op, c.data) for c in newest] == [
        ("update", {"fields": {"Severity": [None, "Critical"], "Story points": [None, 5.0]}})
    ]
    assert fake.requests_to("/search") == searches + 2  # one search (4 issues in the window, pages of 2)
    ids = [c.id for c in jira.changes_since("ACME", 0, 100)]
    assert ids == sorted(ids) and len(ids) == 8


def test_attachments_and_links_are_detected(fake: FakeJira, jira: JiraTracker) -> None:
    one = jira.create_issue("ACME", "Task", {"summary": "A"}, as_user="x")
    two = jira.create_issue("ACME", "Task", {"summary": "B"}, as_user="x")
    attachment = jira.add_attachment(one, "a.bin", b"\x00\x01", as_user="x")
    jira.add_link(one, two, "blocks", as_user="x")
    changes = jira.changes_since("ACME", 0, 100)
    assert [c.op for c in changes] == ["create", "create", "attach", "link"]
    assert changes[2].data == {"attachment": attachment}
    assert changes[3].data["target"] == two and changes[3].data["kind"] == "blocks"
    assert {c.author for c in changes} == {sync_user(fake)}


def test_poll_waits_for_its_interval(fake: FakeJira, home: Installation) -> None:
    tracker = JiraTracker(
        fake.settings(poll_interval=60), ChangeMirror(home.db, "jira-1"), transport=fake.transport
    )
    fake.create_as(fake.alice, "One")
    assert len(tracker.changes_since("ACME", 0, 100)) == 1
    fake.create_as(fake.alice, "Two")
    assert len(tracker.changes_since("ACME", 0, 100)) == 1  # not due: read from the mirror only
    assert tracker.poll_now("ACME") == 1


def test_retry_after_on_429_then_success(fake: FakeJira, jira: JiraTracker) -> None:
    fake.fail(429, retry_after="1")
    started = time.monotonic()
    assert jira.projects() == [("ACME", "Acme")]
    assert time.monotonic() - started >= 1.0


def test_5xx_is_offline_and_auth_failure_is_named(
    fake: FakeJira, jira: JiraTracker, home: Installation
) -> None:
    fake.fail(503, times=4, retry_after="0")
    with pytest.raises(TrackerOffline):
        jira.statuses("ACME")
    assert jira.statuses("ACME") == ["To Do", "In Progress", "In Review", "Done"]
    fake.fail(500, times=4, retry_after="0")
    assert jira.is_online() is False
    wrong = JiraTracker(
        fake.settings(secret="wrong"), ChangeMirror(home.db, "jira-1"), transport=fake.transport
    )
    with pytest.raises(TrackerAuthFailed):
        wrong.changes_since("ACME", 0, 10)
    assert wrong.is_online() is True  # reachable: whose credentials these are is signed_in_as's
    with pytest.raises(TrackerAuthFailed):
        wrong.signed_in_as()
    assert jira.signed_in_as() == (fake.sync.email if fake.version == 3 else fake.sync.name)


def test_refusal_carries_jiras_reason(fake: FakeJira, jira: JiraTracker) -> None:
    with pytest.raises(TrackerRefused, match="summary: You must specify a summary"):
        jira.create_issue("ACME", "Task", {"summary": ""}, as_user="x")
    issue_id = jira.create_issue("ACME", "Task", {"summary": "S"}, as_user="x")
    with pytest.raises(TrackerRefused, match="Option value 'Huge' is not valid"):
        jira.update_issue(issue_id, {"Severity": "Huge"}, as_user="x")
    with pytest.raises(TrackerRefused, match="unknown field"):
        jira.update_issue(issue_id, {"Nonexistent": 1}, as_user="x")


def test_schema_reads(fake: FakeJira, jira: JiraTracker) -> None:
    assert jira.issue_types("ACME") == ["Bug", "Task", "Story", "Sub-task"]
    kinds = jira.field_names("ACME")
    assert kinds["Severity"] == "select" and kinds["Story points"] == "number" and kinds["summary"] == "text"
    assert jira.field_options("ACME", "Severity") == ["Minor", "Major", "Critical"]
    assert jira.field_options("ACME", "priority")[0] == "Highest" and jira.field_options("ACME", "x") == []
    assert jira.user_emails()["alice@example.org" if fake.version == 3 else "alice"] == "alice@example.org"
    assert jira.missing_permissions("ACME", sync_user(fake)) == []
    fake.permissions -= {"EDIT_ISSUES", "TRANSITION_ISSUES"}
    assert jira.missing_permissions("ACME", sync_user(fake)) == ["edit issues", "transition issues"]
    parent = jira.create_issue("ACME", "Task", {"summary": "P"}, as_user="x")
    child = jira.create_issue("ACME", "Sub-task", {"summary": "C"}, as_user="x", parent_id=parent)
    read = jira.read_issue(child)
    assert read is not None and read.parent_id == parent and read.issue_type == "Sub-task"


def test_adf_round_trip_and_degradation() -> None:
    text = "First paragraph\nwith a break\n\nSecond"
    doc = adf.from_text(text)
    assert doc["content"][0]["content"][1] == {"type": "hardBreak"}
    assert adf.to_text(doc) == text and adf.to_text(None) == ""
    rich = {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "heading", "attrs": {"level": 1}, "content": [{"type": "text", "text": "Title"}]},
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {
                                "type": "paragraph",
                                "content": [{"type": "text", "text": "bold", "marks": [{"type": "strong"}]}],
                            }
                        ],
                    },
                    {
                        "type": "listItem",
                        "content": [
                            {
                                "type": "paragraph",
                                "content": [{"type": "mention", "attrs": {"id": "1", "text": "@Alice"}}],
                            }
                        ],
                    },
                ],
            },
            {
                "type": "orderedList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "one"}]}],
                    }
                ],
            },
            {"type": "codeBlock", "content": [{"type": "text", "text": "x = 1"}]},
        ],
    }
    assert adf.to_text(rich) == "Title\n\n- bold\n- @Alice\n\n1. one\n\nx = 1"


@pytest.mark.parametrize(
    "bad",
    [
        "plain text",
        {"type": "paragraph", "version": 1, "content": []},
        {"type": "doc", "version": 2, "content": []},
        {"type": "doc", "version": 1, "content": "x"},
        {"type": "doc", "version": 1, "content": [{"content": []}]},
        {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text"}]}]},
    ],
)
def test_malformed_adf_is_refused(bad: object) -> None:
    with pytest.raises(adf.AdfError):
        adf.to_text(bad)


def test_malformed_adf_from_jira_is_refused(home: Installation) -> None:
    fake = FakeJira(3)
    jira = JiraTracker(fake.settings(), ChangeMirror(home.db, "jira-1"), transport=fake.transport)
    issue = fake.create_as(fake.alice, "One")
    issue.values["description"] = "ok"
    original = fake._rich
    fake._rich = lambda text: {"type": "doc", "version": 1, "content": [{"type": "text"}]}  # type: ignore[method-assign]
    try:
        with pytest.raises(TrackerRefused, match="text node"):
            jira.read_issue(issue.id)
    finally:
        fake._rich = original  # type: ignore[method-assign]


def test_v3_authors_are_named_the_same_way_each_time(home: Installation) -> None:
    fake = FakeJira(3)
    hidden = fake.add_user("557058:bob", "bob", "Bob Brown", None, "pw")  # his profile hides his address
    jira = JiraTracker(
        fake.settings(auth="pat", secret="pat-s3cret"),
        ChangeMirror(home.db, "jira-1"),
        transport=fake.transport,
    )
    issue = fake.create_as(hidden, "By Bob")
    fake.edit_as(fake.alice, issue, assignee={"accountId": hidden.account_id})
    changes = jira.changes_since("ACME", 0, 100)
    assert [c.author for c in changes] == ["Bob Brown", "alice@example.org"]
    assert changes[1].data == {"fields": {"assignee": [None, "Bob Brown"]}}
    assert jira.update_issue(issue.id, {"assignee": "Bob Brown"}, as_user="x") == []
    assert jira.update_issue(issue.id, {"assignee": "sync-bot"}, as_user="x") == ["assignee"]
    assert fake.issues[issue.id].values["assignee"] is fake.sync


def test_the_published_contract_checks_the_fake() -> None:
    """Where Atlassian's description is beside the clone every exchange with the fake is checked
    against it (elsewhere the tests run unchecked); the check itself refuses what is not Jira's."""
    require_contract()
    with pytest.raises(Exception, match="(?i)path"):
        check_request(httpx.Request("GET", f"{SITE}/rest/api/3/no-such-operation"), 3)
    check_request(httpx.Request("GET", f"{SITE}/rest/api/3/myself"), 3)
