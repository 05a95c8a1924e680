"""The configuration editor's model (engine.service.editor): a draft as rows and back, on both
sides of a real pair; what it refuses is refused like `config import`."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import BackboneError
from engine.runtime.demo import Demo, request_pair, settle
from engine.runtime.engine import Engine
from engine.service import editor
from engine.vocab import SyncStatus

from .conftest import issue_by_summary


def test_the_primary_adds_changes_and_removes_mappings(paired: Demo) -> None:
    acme, key = paired.acme, paired.key
    model = editor.load(acme, key)
    assert model.can_add and not model.dirty and model.version == 1
    editor.save(acme, model)  # unchanged: the same terms
    assert acme.config_diff(key) == []
    assert "assignee" in model.unbound_locals("field")
    owner = model.new_row("field", "assignee")
    owner.label = "Owner"
    model.fields = [f for f in model.fields if f.id != "due"]
    urgency = next(f for f in model.fields if f.id == "urgency")
    assert urgency.values["Highest"] == "u1" and urgency.kind == "select"
    urgency.direction = "to_partner"
    editor.save(acme, model)
    changes = {(c.how, c.id) for c in acme.config_diff(key)}
    assert changes == {("added", owner.id), ("removed", "due"), ("changed", "urgency")}
    assert acme.sync_info(key).draft_edited and not paired.globex.sync_info(key).draft_edited
    again = editor.load(acme, key)
    assert again.dirty and next(f for f in again.fields if f.id == owner.id).label == "Owner"
    bad = editor.load(acme, key)
    bad.fields[0].local = "no such field"
    with pytest.raises(BackboneError, match="no such field"):
        editor.save(acme, bad)
    assert editor.load(acme, key).fields[0].local != "no such field"  # the draft stays as it was


def test_the_secondary_binds_the_partners_ids_only(paired: Demo) -> None:
    acme, globex, key = paired.acme, paired.globex, paired.key
    model = editor.load(acme, key)
    model.new_row("field", "assignee")
    editor.save(acme, model)
    acme.publish_config(key, "Owners too")
    Engine(acme).run_once()
    Engine(globex).run_once()
    assert globex.sync_info(key).status == SyncStatus.UPDATE_REQUIRED
    bind = editor.load(globex, key)
    assert not bind.can_add and bind.pending == 2
    new = next(f for f in bind.fields if not f.local)
    assert (
        new.kind == "user"
        and new.direction == "off"
        and new.within == ("both", "to_partner", "from_partner", "off")
    )
    customer = next(f for f in bind.fields if f.id == "customer")
    assert customer.within == ("from_partner", "off")
    assert "assignee" in bind.choices.fields and "Impact" in bind.choices.options
    new.local, new.direction = "assignee", "both"
    editor.save(globex, bind)
    globex.publish_config(key)
    assert globex.sync_info(key).config_version == 2


def test_labels_written_by_the_primary_let_the_secondary_bind_by_them(tmp_path: Path) -> None:
    """From the generated draft (ids only): the primary labels everything with its names, the
    secondary binds what its own names match, publishes, and both can start."""
    demo = request_pair(tmp_path / "demo", encryption=False)
    try:
        acme, globex, key = demo.acme, demo.globex, demo.key
        globex.accept(key)
        settle((Engine(acme), Engine(globex)), until=lambda: acme.sync_info(key).status == SyncStatus.STOPPED)
        model = editor.load(acme, key)
        assert all(r.id.startswith("t-") and not r.label for r in model.issue_types)
        assert model.label_with_local_names() > 8
        editor.save(acme, model)
        acme.publish_config(key, "Everything, labelled")
        settle((Engine(acme), Engine(globex)), until=lambda: globex.sync_info(key).pending_version == 1)
        bind = editor.load(globex, key)
        assert bind.bind_by_labels() >= 10
        assert {r.local for r in bind.issue_types} == {"Bug", "Task", "Story", "Sub-task"}
        summary = next(f for f in bind.fields if f.label == "summary")
        assert (summary.local, summary.direction) == ("summary", "both")
        priority = next(f for f in bind.fields if f.label == "priority")
        assert set(priority.values) == {"Highest", "High", "Medium", "Low", "Lowest"}
        assert not any(f.local == "Severity" for f in bind.fields)  # Globex has no such field
        editor.save(globex, bind)
        globex.publish_config(key)
        settle((Engine(acme), Engine(globex)), until=lambda: acme.sync_info(key).config_version == 1)
        acme.start([key])
        globex.start([key])
        acme.tracker.create_issue(
            "ACME", "Bug", {"summary": "bound by labels", "priority": "High"}, as_user="a"
        )
        settle((Engine(acme), Engine(globex)))
        copy = issue_by_summary(globex, "GLOBEX", "bound by labels")
        assert copy is not None and (copy.issue_type, copy.fields["priority"]) == ("Bug", "High")
    finally:
        demo.close()
