"""The shared terms of a synchronization: what the primary publishes, and the secondary's binding
within them (no local names in the terms; nothing added, removed or widened by the secondary)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from engine.config.mapping import (
    MappingConfig,
    TrackerSchema,
    draft_with_label_slots,
    generated_config,
    parse_config,
)
from engine.config.terms import Terms
from engine.errors import BackboneError, RejectedError
from engine.runtime.demo import default_config

ACME = parse_config(default_config("acme"), "acme.toml")
GLOBEX = parse_config(default_config("globex"), "globex.toml")
LOCAL_NAMES = ["summary", "Customer", "Severity", "Critical", "To Do", "In Progress", "Bug", "Story"]
LOCAL_NAMES += ["Sub-task", "Requested by", "Impact", "Blocker", "Highest", "priority", "due_date"]


def replace_field(config: MappingConfig, mapping_id: str, **changes: Any) -> MappingConfig:
    fields = tuple(dataclasses.replace(m, **changes) if m.id == mapping_id else m for m in config.fields)
    return dataclasses.replace(config, fields=fields)


def test_the_terms_carry_ids_and_kinds_but_no_local_name() -> None:
    terms = Terms.of(ACME)
    text = json.dumps(terms.to_body())
    assert [name for name in LOCAL_NAMES if name in text] == []
    assert terms.field("impact") is not None and terms.field("impact").values == ("i1", "i2", "i3")  # type: ignore[union-attr]
    assert Terms.from_body(json.loads(text)) == terms


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b.update(fields="x"),
        lambda b: b["fields"].append({"id": "", "kind": "text", "direction": "both", "values": []}),
        lambda b: b["fields"].append(dict(b["fields"][0])),
        lambda b: b["fields"][0].update(kind="spreadsheet"),
        lambda b: b["fields"][0].update(direction="sideways"),
        lambda b: b.update(issue_types=["x" * 65]),
        lambda b: b["settings"].pop("links"),
        lambda b: b["settings"].update(attachment_max_bytes=True),
        lambda b: b["settings"].update(comments="loud"),
    ],
)
def test_a_malformed_config_body_is_body_invalid(damage: Any) -> None:
    body = Terms.of(ACME).to_body()
    damage(body)
    with pytest.raises(RejectedError) as caught:
        Terms.from_body(body)
    assert caught.value.code == "BODY_INVALID"


def test_the_secondary_binds_within_the_terms_and_may_narrow() -> None:
    terms = Terms.of(ACME)
    terms.check_binding(GLOBEX, "globex.toml", role="secondary")
    assert terms.narrowed(GLOBEX, role="secondary") == {}
    assert terms.unbound(GLOBEX, role="secondary") == []
    quieter = replace_field(GLOBEX, "customer", direction="off")
    terms.check_binding(quieter, "globex.toml", role="secondary")
    assert terms.narrowed(quieter, role="secondary") == {"customer": "off"}


@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        (replace_field(GLOBEX, "customer", direction="both"), "'customer': direction 'both' is wider"),
        (replace_field(GLOBEX, "customer", id="extra"), "'extra': the primary did not define it"),
        (replace_field(GLOBEX, "impact", kind="text"), "'impact': kind 'text', expected 'select'"),
        (replace_field(GLOBEX, "impact", values={"Blocker": "i9"}), "value id(s) i9 are not among"),
        (dataclasses.replace(GLOBEX, fields=GLOBEX.fields[1:]), "field mapping(s) title are missing"),
        (dataclasses.replace(GLOBEX, statuses={"Done": "archived"}), "[statuses]: 'Done' is bound to"),
    ],
)
def test_the_secondary_cannot_add_remove_or_widen(binding: MappingConfig, expected: str) -> None:
    with pytest.raises(BackboneError) as caught:
        Terms.of(ACME).check_binding(binding, "globex.toml", role="secondary")
    assert expected in str(caught.value)
    assert str(caught.value).startswith("globex.toml: ")


def test_changes_between_versions_are_listed_per_mapping() -> None:
    old = Terms.of(ACME)
    fields = tuple(m for m in ACME.fields if m.id != "due")
    newer = dataclasses.replace(ACME, fields=fields, issue_types={**ACME.issue_types, "Epic": "epic"})
    newer = replace_field(newer, "customer", direction="both")
    lines = [change.line() for change in Terms.of(newer).changes_since(old)]
    assert lines == [
        "added    issue type epic",
        "changed  field customer: direction to_partner -> both",
        "removed  field due",
    ]
    assert len(old.changes_since(None)) == len(old.issue_types) + len(old.statuses) + len(old.fields)


def test_the_template_keeps_bindings_and_leaves_new_ids_to_bind() -> None:
    terms = Terms.of(ACME)
    again = parse_config(terms.template(GLOBEX, role="secondary", message="first", version=1), "t.toml")
    assert dataclasses.replace(again, fields=()) == dataclasses.replace(GLOBEX, fields=())
    assert sorted(again.fields, key=lambda m: m.id) == sorted(GLOBEX.fields, key=lambda m: m.id)
    fresh_text = terms.template(None, role="secondary", message="Sync bugs\nand tasks", version=2)
    assert "# Message: and tasks" in fresh_text
    fresh = parse_config(fresh_text, "t.toml")
    terms.check_binding(fresh, "t.toml", role="secondary")
    assert "issue type defect" in terms.unbound(fresh, role="secondary")
    assert all(m.direction == "off" and m.local == "" for m in fresh.fields)
    assert [name for name in LOCAL_NAMES if name in fresh_text] == []


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("[attachment_filter.sideways]\nmax_bytes = 1\n", "expected tables to_partner and/or from_partner"),
        ("[attachment_filter.to_partner]\ntypes = ['pdf']\n", "types: expected media types like"),
        ("[attachment_filter.to_partner]\nmax_bytes = 0\n", "max_bytes: expected a positive whole number"),
        ("[attachment_filter.from_partner]\ncolour = 'red'\n", "expected max_bytes, types and names only"),
    ],
)
def test_a_bad_attachment_filter_names_its_table(table: str, expected: str) -> None:
    with pytest.raises(BackboneError) as caught:
        parse_config(default_config("acme") + "\n" + table, "f.toml")
    assert str(caught.value).startswith("f.toml: ") and expected in str(caught.value)


def test_an_attachment_filter_checks_size_type_and_name() -> None:
    config = parse_config(
        default_config("acme")
        + '\n[attachment_filter.to_partner]\nmax_bytes = 50\ntypes = ["image/*"]\nnames = "*.PNG"\n',
        "f.toml",
    )
    sending = config.attachment_filter("to_partner")
    assert sending.refuses("a.png", "image/png", 10) == ""
    assert "larger than 50" in sending.refuses("a.png", "image/png", 51)
    assert "not one of image/*" in sending.refuses("a.png", "text/plain", 1)
    assert "does not match *.PNG" in sending.refuses("a.jpg", "image/jpeg", 1)
    assert config.attachment_filter("from_partner").max_bytes == config.attachment_max_bytes
    assert Terms.of(config).for_role("secondary").attachment_filter("from_partner") == sending


def test_labels_are_the_only_text_the_partner_reads() -> None:
    labelled = dataclasses.replace(ACME, labels={"defect": "Defect report", "i2": "Serious", "nope": "x"})
    terms = Terms.of(labelled)
    assert terms.labels == {"defect": "Defect report", "i2": "Serious"}  # only ids that exist
    assert Terms.from_body(json.loads(json.dumps(terms.to_body()))) == terms
    template = terms.template(None, role="secondary", version=2)
    assert '# "" = "defect"   <- new: put a local name (Defect report)' in template
    assert "i2 (Serious)" in template
    assert [c.line() for c in terms.changes_since(None)][0] == "added    issue type defect: Defect report"
    body = terms.to_body()
    body["labels"] = {"defect": "two\nlines"}
    with pytest.raises(RejectedError, match="labels"):
        Terms.from_body(body)


def test_a_new_primary_draft_has_a_label_slot_for_every_id() -> None:
    schema = TrackerSchema(
        ["Bug"], ["To Do"], {"summary": "text", "priority": "select"}, {"priority": ["High"]}
    )
    text = draft_with_label_slots(generated_config(schema))
    config = parse_config(text, "draft.toml")
    assert config.labels == {}  # empty slots: nothing is sent
    assert "# Bug" in text and "# priority = High" in text
    assert all(mapping_id.split("-")[0] in ("t", "s", "f", "v") for mapping_id in config.issue_types.values())
    filled = text.replace(f'{config.issue_types["Bug"]} = ""', f'{config.issue_types["Bug"]} = "Defect"')
    assert parse_config(filled, "draft.toml").labels == {config.issue_types["Bug"]: "Defect"}


def test_a_secondary_binding_change_says_what_changed() -> None:
    from engine.service.configuration import _binding_changes

    renamed = replace_field(GLOBEX, "customer", local="Requester", direction="off")
    (change,) = _binding_changes(GLOBEX, renamed)
    assert (
        change.line()
        == "changed  field customer: local 'Requested by' -> 'Requester'; direction 'from_partner' -> 'off'"
    )
