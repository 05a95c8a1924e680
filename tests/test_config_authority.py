"""Configuration authority (SPEC section 4): the primary publishes its terms, the secondary binds
them within those terms and acknowledges; neither side's names ever travel."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from backbone_tui.cli import main
from engine.config.mapping import parse_config
from engine.domain.envelope import Envelope
from engine.errors import BackboneError
from engine.runtime.demo import Demo, add_sample_issues
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.store.models import Message
from engine.vocab import Folder, SyncStatus

from .conftest import issue_by_summary, sync_all
from .test_bad_input import OLD, create_body, drop, envelope

# every local name of both demo projects: issue types, statuses, fields, select values
ACME_NAMES = ["Bug", "Task", "Story", "Sub-task", "To Do", "In Progress", "In Review", "Done"]
ACME_NAMES += ["summary", "description", "priority", "labels", "due_date", "Customer", "Severity"]
ACME_NAMES += ["Highest", "Medium", "Lowest", "Critical", "Major", "Minor"]
GLOBEX_NAMES = ["Requested by", "Impact", "Blocker", "Significant", "Cosmetic"]


def to_acme(demo: Demo, message_type: str, body: dict[str, Any], **overrides: Any) -> None:
    """A message from Globex dropped into Acme's RECEIVE, as if Globex had sent it."""
    fields: dict[str, Any] = dict(
        sync=demo.key,
        sender=demo.globex.id,
        recipient=demo.acme.id,
        id=str(uuid.uuid4()),
        type=message_type,
        created="2026-11-23T10:00:00.000000+00:00",
        config=1,
        issue=None,
        epoch=0,
        seq=0,
        body=body,
    )
    fields.update(overrides)
    path = demo.root / "exchange" / "acme" / Folder.RECEIVE / f"{uuid.uuid4().hex}.bac"
    path.write_bytes(Envelope(**fields).to_json().encode())
    os.utime(path, (OLD, OLD))


def acme_reasons(demo: Demo) -> list[tuple[str, str, str]]:
    return [(m.type, m.folder, m.reason_code) for m in demo.acme.messages(demo.key) if m.direction == "in"]


def test_no_local_name_travels_in_any_message(paired_gpg: Demo) -> None:
    add_sample_issues(paired_gpg.acme, paired_gpg.globex, paired_gpg.root)
    sync_all(paired_gpg)
    assert issue_by_summary(
        paired_gpg.globex, "GLOBEX", "Checkout fails with HTTP 500 for carts over 100 items"
    )
    payloads = []
    for inst in (paired_gpg.acme, paired_gpg.globex):
        with inst.db.session() as s:  # the decrypted envelope of every message, in and out
            payloads += [json.dumps(json.loads(p)["body"]) for p in s.exec(select(Message.payload)) if p]
    # value kinds travel (`labels` is one), and the CONFIG's own `labels` table (empty here)
    payloads = [re.sub(r'"kind": "[a-z]+"|"labels": \{\}', "", p) for p in payloads]
    assert len(payloads) > 10 and any('"CONFIG"' in p or "terms" in p for p in payloads)
    leaked = {
        name
        for payload in payloads
        for name in ACME_NAMES + GLOBEX_NAMES
        if re.search(rf'"{re.escape(name)}"', payload)
    }
    assert leaked == set()


def test_the_secondary_cannot_add_or_widen_and_a_config_from_it_is_rejected(paired: Demo) -> None:
    globex, key = paired.globex, paired.key
    template = globex.config_export(key)
    config = parse_config(template, "t")
    extra = template + '\n[[fields]]\nid = "mine"\nlocal = "assignee"\nkind = "user"\n'
    with pytest.raises(BackboneError, match="'mine': the primary did not define it"):
        globex.config_import_text(key, extra, "extra.toml")
    assert config.field_by_id("customer").direction == "from_partner"
    wider = template.replace('direction = "from_partner"', 'direction = "both"')
    with pytest.raises(BackboneError, match="'customer': direction 'both' is wider"):
        globex.config_import_text(key, wider, "wider.toml")
    with pytest.raises(BackboneError, match="no new version from the primary to bind, and no draft"):
        globex.publish_config(key)
    # within the terms it may rebind and narrow at any time: the change is in force at once
    globex.config_import_text(
        key, template.replace('direction = "from_partner"', 'direction = "off"'), "n.toml"
    )
    assert globex.publish_config(key).status == SyncStatus.RUNNING
    assert parse_config(globex.config_export(key), "t").field_by_id("customer").direction == "off"
    to_acme(paired, "CONFIG", {"version": 9, "message": "mine now", "terms": {}})
    to_acme(paired, "CONFIG_ACK", {"version": 7, "narrowed": {}})
    to_acme(paired, "CONFIG_PROPOSAL", {"version": 1, "message": "less", "narrowed": {"due": "off"}})
    to_acme(paired, "CONFIG_ACCEPT", {"version": 2, "base": 1})
    Engine(paired.acme).run_once()
    assert sorted(r for r in acme_reasons(paired) if r[1] != Folder.PROCESSED) == [
        ("CONFIG", Folder.REJECTED, "UNEXPECTED_MESSAGE"),
        ("CONFIG_ACCEPT", Folder.REJECTED, "CONFIG_VERSION_UNKNOWN"),
        ("CONFIG_ACK", Folder.REJECTED, "CONFIG_VERSION_UNKNOWN"),
        ("CONFIG_PROPOSAL", Folder.REJECTED, "UNEXPECTED_MESSAGE"),  # not in review mode
    ]
    assert paired.acme.sync_info(key).status == SyncStatus.RUNNING


def test_a_new_version_adds_and_removes_fields_and_nothing_waits_in_vain(paired: Demo) -> None:
    acme, globex, key = paired.acme, paired.globex, paired.key
    draft = acme.config_export(key)
    assert 'id = "due"' in draft
    draft = draft.replace(
        'id = "due"\nlocal = "due_date"\nkind = "date"', 'id = "owner"\nlocal = "assignee"\nkind = "user"'
    )
    acme.config_import_text(key, draft, "v2.toml")
    assert [c.line() for c in acme.config_diff(key)] == [
        "added    field owner: user, both",
        "removed  field due",
    ]
    with pytest.raises(BackboneError, match="--message|message for the partner"):
        acme.publish_config(key, "  ")
    assert (
        acme.publish_config(key, "The owner instead of the due date").status == SyncStatus.WAITING_FOR_PARTNER
    )
    with pytest.raises(BackboneError, match="WAITING FOR PARTNER"):
        acme.start([key])
    # a change made meanwhile waits in the change log, and travels once the version is in force
    bug = acme.tracker.create_issue("ACME", "Task", {"summary": "made while pending"}, as_user="alice")
    sync_all(paired)
    assert globex.sync_info(key).status == SyncStatus.UPDATE_REQUIRED
    assert issue_by_summary(globex, "GLOBEX", "made while pending") is None
    incoming = globex.config_incoming(key)
    assert incoming is not None and (incoming.version, incoming.in_force) == (2, 1)
    assert [c.line() for c in incoming.changes] == ["added    field owner: user, both", "removed  field due"]
    template = globex.config_export(key)
    assert 'id = "owner"\nlocal = ""' in template and 'id = "due"' not in template
    with pytest.raises(BackboneError, match="UPDATE REQUIRED"):
        globex.start([key])
    bound = template.replace(
        'id = "owner"\nlocal = ""\nkind = "user"\ndirection = "off"',
        'id = "owner"\nlocal = "assignee"\nkind = "user"\ndirection = "both"',
    )
    globex.config_import_text(key, bound, "bind.toml")
    globex.publish_config(key, start=True)
    sync_all(paired)
    assert acme.sync_info(key).status == SyncStatus.STOPPED
    assert [v.version for v in acme.config_history(key)] == [1, 2]
    changes = [c.line() for c in globex.config_diff(key, from_version=1, to_version=2)]
    assert changes == ["added    field owner: user, both", "removed  field due"]
    with pytest.raises(BackboneError, match="version 9 was never in force here"):
        acme.config_diff(key, from_version=1, to_version=9)
    acme.start([key])
    acme.tracker.update_issue(bug, {"assignee": "carol"}, as_user="alice")
    sync_all(paired)
    copy = issue_by_summary(globex, "GLOBEX", "made while pending")
    assert copy is not None and copy.fields["assignee"] == "carol"
    # a message built under version 1 still applies; the mapping version 2 removed is ignored
    pair = uuid.uuid4().hex
    drop(
        paired,
        "old.bac",
        envelope(paired, create_body("built under v1", due="2026-12-24"), pair=pair, config=1),
    )
    Engine(globex).run_once()
    old = issue_by_summary(globex, "GLOBEX", "built under v1")
    assert old is not None and old.fields.get("due_date") is None
    assert any(
        kind == "ignored" and "field due" in text for _, kind, p, text in globex.history(key) if p == pair
    )


def test_a_local_synchronization_of_projects_with_different_fields(tmp_path: Path) -> None:
    inst = Installation(tmp_path / "h")
    try:
        inst.tracker.create_project("ACME", "Acme")
        inst.tracker.create_project("BETA", "Beta")
        inst.tracker.add_custom_field("ACME", "Severity", "select", ["Critical", "Major"])
        inst.tracker.add_custom_field("BETA", "Impact", "select", ["Blocker", "Significant"])
        key = inst.create_local(project="ACME", partner_project="BETA", user="bot", name="A-B").key
        inst.start([key])  # version 1: what both have under the same names
        first = inst.tracker.create_issue(
            "ACME", "Bug", {"summary": "one", "Severity": "Major"}, as_user="al"
        )
        Engine(inst).run_once()
        beta = [i for i in inst.tracker.list_issues("BETA") if i.fields["summary"] == "one"]
        assert len(beta) == 1 and beta[0].fields.get("Impact") is None
        assert inst.list_syncs()[0].folder_counts.get(Folder.ERROR, 0) == 0
        # the primary side maps its Severity; the other side binds it to Impact
        draft = inst.config_export(key, "ACME") + (
            '\n[[fields]]\nid = "sev"\nlocal = "Severity"\nkind = "select"\n'
            'values = { Critical = "s1", Major = "s2" }\n'
        )
        inst.config_import_text(key, draft, "acme.toml", "ACME")
        inst.stop([key])
        inst.publish_config(key, "Severity is shared", "ACME", start=True)
        Engine(inst).run_once()
        assert inst.sync_info(key).status == SyncStatus.UPDATE_REQUIRED
        template = inst.config_export(key, "BETA")
        bound = template.replace(
            'id = "sev"\nlocal = ""\nkind = "select"\ndirection = "off"',
            'id = "sev"\nlocal = "Impact"\nkind = "select"\ndirection = "both"\n'
            'values = { Blocker = "s1", Significant = "s2" }',
        )
        inst.config_import_text(key, bound, "beta.toml", "BETA")
        inst.publish_config(key, "", "BETA")
        Engine(inst).run_once()
        assert inst.sync_info(key).status == SyncStatus.RUNNING
        inst.tracker.update_issue(first, {"Severity": "Critical"}, as_user="al")
        Engine(inst).run_once()
        beta = [i for i in inst.tracker.list_issues("BETA") if i.fields["summary"] == "one"]
        assert beta[0].fields.get("Impact") == "Blocker"
    finally:
        inst.close()


def test_a_mapping_added_to_paired_issues_is_filled_by_a_resync(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    acme, globex, key = paired.acme, paired.globex, paired.key
    first = acme.tracker.create_issue(
        "ACME", "Task", {"summary": "paired before", "assignee": "dave"}, as_user="al"
    )
    sync_all(paired)
    copy = issue_by_summary(globex, "GLOBEX", "paired before")
    assert copy is not None and copy.fields.get("assignee") is None
    acme.config_import_text(key, acme.config_export(key) + OWNER, "v2.toml")
    acme.publish_config(key, "owners too")
    sync_all(paired)
    template = globex.config_export(key)
    globex.config_import_text(key, template.replace(UNBOUND_OWNER, BOUND_OWNER), "bind.toml")
    globex.publish_config(key, start=True)
    sync_all(paired)
    acme.start([key])
    sync_all(paired)
    copy = issue_by_summary(globex, "GLOBEX", "paired before")
    assert copy is not None and copy.fields["assignee"] == "dave"
    resyncs = [m for m in globex.messages(key) if m.type == "RESYNC"]
    assert [(m.folder, m.epoch, m.seq) for m in resyncs] == [(Folder.PROCESSED, 2, 1)]
    # on demand: a snapshot of one issue puts back what the partner changed locally
    globex.tracker.update_issue(copy.id, {"summary": "changed over there"}, as_user="bob")
    globex.stop([key])
    acme_key = acme.tracker.read_issue(first)
    assert acme_key is not None
    home = str(acme.paths.root)
    acme.close()
    assert main(["--home", home, "sync", "resync", key, "--issue", acme_key.key]) == 0
    assert "1 issue(s) resynchronized" in capsys.readouterr().out
    paired.acme = Installation(home)
    globex.start([key])
    sync_all(paired)
    assert issue_by_summary(globex, "GLOBEX", "paired before") is not None


OWNER = '\n[[fields]]\nid = "owner"\nlocal = "assignee"\nkind = "user"\n'
UNBOUND_OWNER = 'id = "owner"\nlocal = ""\nkind = "user"\ndirection = "off"'
BOUND_OWNER = 'id = "owner"\nlocal = "assignee"\nkind = "user"\ndirection = "both"'


FILTERS = """
[attachment_filter.to_partner]
max_bytes = 100000
types = ["image/*", "text/plain"]
"""


def test_attachment_filters_per_direction_travel_in_the_terms(paired: Demo) -> None:
    acme, globex, key = paired.acme, paired.globex, paired.key
    acme.config_import_text(key, acme.config_export(key) + FILTERS, "filters.toml")
    acme.publish_config(key, "Only images and text, at most 100 kB")
    sync_all(paired)
    template = globex.config_export(key)
    assert "[attachment_filter.from_partner]" in template  # the primary's to_partner, mirrored
    wider = template.replace('types = ["image/*", "text/plain"]', 'types = ["application/pdf"]')
    with pytest.raises(BackboneError, match=r"types: expected some of image/\*, text/plain"):
        globex.config_import_text(key, wider, "wider.toml")
    narrower = template.replace('types = ["image/*", "text/plain"]', 'types = ["image/*"]')
    globex.config_import_text(key, narrower.replace('names = ""', 'names = "*.png"'), "narrow.toml")
    globex.publish_config(key, start=True)
    sync_all(paired)
    acme.start([key])
    issue = acme.tracker.create_issue("ACME", "Task", {"summary": "with files"}, as_user="al")
    for name, media_type, size in (
        ("diagram.png", "image/png", 10),
        ("photo.jpg", "image/jpeg", 10),  # sent, but Globex accepts only *.png
        ("notes.txt", "text/plain", 10),  # sent, but Globex narrowed the types to images
        ("report.pdf", "application/pdf", 10),  # not sent: Acme shares images and text only
        ("huge.png", "image/png", 200_000),  # not sent: too large
    ):
        acme.tracker.add_attachment(issue, name, b"x" * size, as_user="al", media_type=media_type)
    sync_all(paired)
    copy = issue_by_summary(globex, "GLOBEX", "with files")
    assert copy is not None and [a.filename for a in copy.attachments] == ["diagram.png"]
    skipped = [text for _, kind, _, text in acme.history(key) if kind == "skipped"]
    assert any("report.pdf" in t and "not one of" in t for t in skipped)
    assert any("huge.png" in t and "larger than 100000" in t for t in skipped)
    ignored = [text for _, kind, _, text in globex.history(key) if kind == "ignored"]
    assert any("photo.jpg" in t and "*.png" in t for t in ignored)
    assert any("notes.txt" in t and "image/*" in t for t in ignored)
    assert globex.list_syncs()[0].folder_counts.get(Folder.ERROR, 0) == 0


def test_a_dry_run_shows_what_the_draft_would_do_to_synced_issues(
    paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    acme, key = paired.acme, paired.key
    first = acme.tracker.create_issue("ACME", "Bug", {"summary": "a", "Severity": "Major"}, as_user="al")
    acme.tracker.create_issue("ACME", "Task", {"summary": "b"}, as_user="al")
    sync_all(paired)
    draft = acme.config_export(key).replace(
        'Critical = "i1", Major = "i2", Minor = "i3"', 'Critical = "i1", Minor = "i3"'
    )
    acme.config_import_text(key, draft + OWNER, "v2.toml")
    run = acme.config_dry_run(key)
    bug = acme.tracker.read_issue(first)
    assert bug is not None and run.pairs == 2
    assert run.unmappable == [(bug.key, "impact", "Major")]
    assert run.resync == {"owner": 2}
    assert [c.line() for c in run.changes] == [
        "changed  field impact: values removed i2",
        "added    field owner: user, both",
    ]
    home = str(acme.paths.root)
    assert main(["--home", home, "config", "dry-run", key]) == 0
    out = capsys.readouterr().out
    assert f"cannot map: {bug.key} impact = 'Major'" in out and "new mapping owner: 2 issue(s)" in out


def test_a_value_without_a_shared_id_is_not_sent_as_empty(paired: Demo) -> None:
    acme, globex, key = paired.acme, paired.globex, paired.key
    first = acme.tracker.create_issue("ACME", "Bug", {"summary": "sev", "Severity": "Critical"}, as_user="al")
    sync_all(paired)
    draft = acme.config_export(key).replace(
        'Critical = "i1", Major = "i2", Minor = "i3"', 'Critical = "i1", Minor = "i3"'
    )
    acme.config_import_text(key, draft, "v2.toml")
    acme.publish_config(key, "Major is not shared any more")
    sync_all(paired)
    template = globex.config_export(key)
    globex.config_import_text(key, template, "bind.toml")
    globex.publish_config(key, start=True)
    sync_all(paired)
    acme.start([key])
    acme.tracker.update_issue(first, {"Severity": "Major", "summary": "sev 2"}, as_user="al")
    sync_all(paired)
    copy = issue_by_summary(globex, "GLOBEX", "sev 2")
    assert copy is not None and copy.fields["Impact"] == "Blocker"  # kept, not cleared
    skipped = [text for _, kind, _, text in acme.history(key) if kind == "skipped"]
    assert any("impact: 'Major' has no shared value" in text for text in skipped)


def test_users_matched_by_email_share_the_address_never_the_name(paired: Demo) -> None:
    acme, globex, key = paired.acme, paired.globex, paired.key
    acme.tracker.add_user("alice", "Alice@Example.org")
    acme.tracker.add_user("bob", "bob@acme.example")
    globex.tracker.add_user("a.smith", "alice@example.org")  # the same person, another name
    globex.tracker.add_user("nobody", "nobody@globex.example")
    with pytest.raises(BackboneError, match="is the address of alice already"):
        acme.tracker.add_user("alice2", "alice@example.org")
    with pytest.raises(BackboneError, match="expected one address"):
        acme.tracker.add_user("carol", "carol at acme")
    owner = OWNER + 'match = "email"\n'
    with pytest.raises(BackboneError, match='match = "email" is for kind = "user"'):
        acme.config_import_text(key, acme.config_export(key) + owner.replace('"user"', '"text"'), "x.toml")
    acme.config_import_text(key, acme.config_export(key) + owner, "v2.toml")
    acme.publish_config(key, "Owners, by e-mail address")
    sync_all(paired)
    template = globex.config_export(key)
    assert 'match = "email"' in template
    by_name = template.replace(UNBOUND_OWNER + '\nmatch = "email"', BOUND_OWNER)
    with pytest.raises(BackboneError, match='match = "name", expected "email"'):
        globex.config_import_text(key, by_name, "bind.toml")
    bound = template.replace(UNBOUND_OWNER, BOUND_OWNER + '\ndefault = "nobody"')
    globex.config_import_text(key, bound, "bind.toml")
    globex.publish_config(key, start=True)
    sync_all(paired)
    acme.start([key])
    first = acme.tracker.create_issue(
        "ACME", "Task", {"summary": "owned", "assignee": "alice"}, as_user="bob"
    )
    acme.tracker.create_issue("ACME", "Task", {"summary": "stranger", "assignee": "zed"}, as_user="bob")
    sync_all(paired)
    copy = issue_by_summary(globex, "GLOBEX", "owned")
    assert copy is not None and copy.fields["assignee"] == "a.smith"
    stranger = issue_by_summary(globex, "GLOBEX", "stranger")  # no address: not shared
    assert stranger is not None and stranger.fields.get("assignee") in (None, "")
    globex.tracker.update_issue(copy.id, {"assignee": "nobody"}, as_user="a.smith")
    sync_all(paired)
    back = acme.tracker.read_issue(first)
    assert back is not None and back.fields["assignee"] == "alice"  # no Acme user: no change ...
    assert [m for m in acme.messages(key) if m.folder == Folder.ERROR]  # ... but an error naming it
    errors = [m.reason_text for m in acme.messages(key) if m.folder == Folder.ERROR]
    assert any("nobody@globex.example" in text for text in errors)
    # privacy: the addresses travel, the user names never do
    bodies = ""
    for inst in (acme, globex):
        with inst.db.session() as s:  # the envelope of every message, in and out
            bodies += "".join(json.dumps(json.loads(p)["body"]) for p in s.exec(select(Message.payload)) if p)
    assert "alice@example.org" in bodies
    for name in ('"a.smith"', '"alice"', '"bob"', '"zed"', '"nobody"'):
        assert name not in bodies


def test_a_binding_changed_within_the_same_version_is_used_at_once(paired: Demo) -> None:
    """A narrower direction put in force without a new version reaches the running pipeline."""
    acme, globex, key = paired.acme, paired.globex, paired.key
    bug = acme.tracker.create_issue("ACME", "Task", {"summary": "first words"}, as_user="alice")
    sync_all(paired)
    assert issue_by_summary(globex, "GLOBEX", "first words") is not None
    title = 'id = "title"\nlocal = "summary"\nkind = "text"\ndirection = "both"'
    template = globex.config_export(key)
    assert title in template
    globex.config_import_text(key, template.replace(title, title.replace("both", "to_partner")), "n.toml")
    globex.publish_config(key)
    assert globex.sync_info(key).config_version == 1
    acme.tracker.update_issue(bug, {"summary": "second words"}, as_user="alice")
    sync_all(paired)
    assert issue_by_summary(globex, "GLOBEX", "first words") is not None
