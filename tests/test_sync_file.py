"""End to end over a real exchange folder: two installations, real SQLite files and folders."""

from __future__ import annotations

from engine.runtime.demo import Demo
from engine.vocab import Folder

from .conftest import issue_by_summary, sync_all


def test_issue_with_subtask_comment_attachment_and_status_reaches_partner(pair: Demo) -> None:
    t = pair.acme.tracker
    bug = t.create_issue(
        "ACME",
        "Bug",
        {"summary": "Login broken", "priority": "High", "Customer": "Initech", "Severity": "Critical"},
        as_user="alice",
    )
    t.create_issue("ACME", "Sub-task", {"summary": "Write test"}, as_user="alice", parent_id=bug)
    t.add_comment(bug, "Seen on prod", as_user="bob")
    t.add_attachment(bug, "trace.txt", b"stack trace", as_user="alice")
    t.transition(bug, "In Review", as_user="alice")
    sync_all(pair)

    mirrored = issue_by_summary(pair.globex, "GLOBEX", "Login broken")
    assert mirrored is not None
    assert mirrored.issue_type == "Bug"
    assert mirrored.status == "In Review"
    assert mirrored.fields["priority"] == "High"
    assert mirrored.fields["Requested by"] == "Initech"
    assert mirrored.fields["Impact"] == "Blocker"
    assert [c.body for c in mirrored.comments] == ["bob wrote:\nSeen on prod"]
    assert [(a.filename, a.size) for a in mirrored.attachments] == [("trace.txt", 11)]
    sub = issue_by_summary(pair.globex, "GLOBEX", "Write test")
    assert sub is not None and sub.parent_id == mirrored.id
    sent_folder = pair.acme.paths.data / pair.key / "ACME-1" / "SENT"
    for message in pair.acme.messages(pair.key, "SENT"):  # sizes as their files have them
        assert message.size == (sent_folder / message.file).stat().st_size > 0


def test_changes_flow_back_from_the_secondary(pair: Demo) -> None:
    acme_id = pair.acme.tracker.create_issue("ACME", "Task", {"summary": "Shared"}, as_user="alice")
    sync_all(pair)
    mirrored = issue_by_summary(pair.globex, "GLOBEX", "Shared")
    assert mirrored is not None
    pair.globex.tracker.update_issue(
        mirrored.id, {"summary": "Shared, renamed", "priority": "Low"}, as_user="carol"
    )
    pair.globex.tracker.add_comment(mirrored.id, "from globex", as_user="carol")
    sync_all(pair)
    back = pair.acme.tracker.read_issue(acme_id)
    assert back is not None
    assert back.fields["summary"] == "Shared, renamed"
    assert back.fields["priority"] == "Low"
    assert [c.body for c in back.comments] == ["carol wrote:\nfrom globex"]


def test_one_way_field_is_not_sent_back(pair: Demo) -> None:
    acme_id = pair.acme.tracker.create_issue(
        "ACME", "Task", {"summary": "One way", "Customer": "A"}, as_user="alice"
    )
    sync_all(pair)
    mirrored = issue_by_summary(pair.globex, "GLOBEX", "One way")
    assert mirrored is not None and mirrored.fields["Requested by"] == "A"
    pair.globex.tracker.update_issue(mirrored.id, {"Requested by": "B"}, as_user="carol")
    sync_all(pair)
    original = pair.acme.tracker.read_issue(acme_id)
    assert original is not None and original.fields["Customer"] == "A"


def test_applying_partner_messages_sends_nothing_back(pair: Demo) -> None:
    """G12: no echo, while a genuine edit in the same window still syncs."""
    for n in range(5):
        pair.acme.tracker.create_issue("ACME", "Task", {"summary": f"echo {n}"}, as_user="alice")
    sync_all(pair)
    out = [m for m in pair.globex.messages(pair.key) if m.direction == "out" and m.type == "ISSUE"]
    assert out == []
    mirrored = issue_by_summary(pair.globex, "GLOBEX", "echo 3")
    assert mirrored is not None
    pair.globex.tracker.update_issue(mirrored.id, {"description": "genuine"}, as_user="carol")
    sync_all(pair)
    out = [m for m in pair.globex.messages(pair.key) if m.direction == "out" and m.type == "ISSUE"]
    assert len(out) == 1
    assert issue_by_summary(pair.acme, "ACME", "echo 3").fields["description"] == "genuine"


def test_link_between_synced_issues(pair: Demo) -> None:
    t = pair.acme.tracker
    a = t.create_issue("ACME", "Task", {"summary": "link a"}, as_user="alice")
    b = t.create_issue("ACME", "Task", {"summary": "link b"}, as_user="alice")
    t.add_link(a, b, "blocks", as_user="alice")
    sync_all(pair)
    mirrored_a = issue_by_summary(pair.globex, "GLOBEX", "link a")
    mirrored_b = issue_by_summary(pair.globex, "GLOBEX", "link b")
    assert mirrored_a is not None and mirrored_b is not None
    assert mirrored_a.links == [("blocks", mirrored_b.id)]


def test_stopped_synchronization_holds_issue_messages_until_started(pair: Demo) -> None:
    pair.globex.stop([pair.key])
    pair.acme.tracker.create_issue("ACME", "Task", {"summary": "while stopped"}, as_user="alice")
    sync_all(pair)
    assert issue_by_summary(pair.globex, "GLOBEX", "while stopped") is None
    assert pair.globex.sync_info(pair.key).folder_counts.get(Folder.RECEIVE) == 1
    pair.globex.start([pair.key])
    sync_all(pair)
    assert issue_by_summary(pair.globex, "GLOBEX", "while stopped") is not None


def test_local_synchronization_between_two_projects(home) -> None:  # type: ignore[no-untyped-def]
    from engine.runtime.engine import Engine

    home.tracker.create_project("ALPHA", "Alpha")
    home.tracker.create_project("BETA", "Beta")
    info = home.create_local(project="ALPHA", partner_project="BETA", user="sync-bot", name="A <-> B")
    assert info.status == "STOPPED" and info.protocol == "local"
    home.start([info.key])
    issue = home.tracker.create_issue("ALPHA", "Story", {"summary": "local one"}, as_user="alice")
    home.tracker.add_comment(issue, "hello", as_user="alice")
    Engine(home).run_once()
    copies = [i for i in home.tracker.list_issues("BETA") if i.fields["summary"] == "local one"]
    assert len(copies) == 1
    beta = home.tracker.read_issue(copies[0].id)
    assert [c.body for c in beta.comments] == ["alice wrote:\nhello"]
    home.tracker.update_issue(copies[0].id, {"summary": "local one, edited"}, as_user="bob")
    Engine(home).run_once()
    assert home.tracker.read_issue(issue).fields["summary"] == "local one, edited"
