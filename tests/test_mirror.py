"""The change mirror of a remote tracker: each change kept once, in order, with its cursor."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.service.installation import Installation
from engine.trackers.mirror import ChangeMirror, RemoteChangeIn

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_changes_are_kept_once_in_order_with_the_cursor(home: Installation) -> None:
    mirror = ChangeMirror(home.db, "redmine-1")
    first = [
        RemoteChangeIn("create:7", "7", AT, "alice", "create"),
        RemoteChangeIn("journal:1", "7", AT, "alice", "update", {"fields": {"summary": ["a", "b"]}}),
    ]
    assert mirror.record("ACME", first, {"updated_on": "2026-12-01T12:00:00Z"}) == 2
    # an overlapping window reads journal:1 again, with a new one after it
    again = [first[1], RemoteChangeIn("journal:2", "7", AT, "sync-bot", "comment", {"comment": "5"})]
    assert mirror.record("ACME", again, {"updated_on": "2026-12-01T12:00:05Z"}) == 1
    changes = mirror.since("ACME", 0, 100)
    assert [c.op for c in changes] == ["create", "update", "comment"]
    assert changes[1].data == {"fields": {"summary": ["a", "b"]}} and changes[2].author == "sync-bot"
    assert mirror.since("ACME", changes[1].id, 100) == changes[2:]
    assert mirror.since("OTHER", 0, 100) == [] and ChangeMirror(home.db, "jira-1").since("ACME", 0, 9) == []
    assert mirror.cursor("ACME") == {"updated_on": "2026-12-01T12:00:05Z"} and mirror.cursor("OTHER") == {}
    home.close()
    reopened = Installation(home.paths.root)  # both cursors survive a restart
    try:
        mirror = ChangeMirror(reopened.db, "redmine-1")
        assert len(mirror.since("ACME", 0, 100)) == 3 and mirror.cursor("ACME")["updated_on"].endswith("05Z")
    finally:
        reopened.close()
