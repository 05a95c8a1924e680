"""The configuration editor's model: one side's draft as rows a screen edits in place, with what
the tracker offers beside it, and back into a draft (checked like `config import`).

The primary edits its terms: it adds, changes and removes mappings (new ones get generated ids)
and writes the labels its partner reads. The secondary binds the partner's ids to its own names
and may narrow directions; its rows are exactly the partner's ids (nothing to add or remove)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.config.mapping import (
    DIRECTIONS,
    AttachmentFilter,
    FieldMapping,
    MappingConfig,
    new_mapping_id,
    parse_config,
)
from engine.config.terms import WITHIN
from engine.vocab import Role

if TYPE_CHECKING:
    from engine.service.installation import Installation

ALL = tuple(DIRECTIONS)


@dataclass
class Choices:
    """What this side's tracker offers to map (never typed free-hand where a list exists)."""

    issue_types: list[str]
    statuses: list[str]
    fields: dict[str, str]  # name -> kind
    options: dict[str, list[str]]  # select field -> its values
    users: list[str]


@dataclass
class Row:
    """An issue type or status: a local name bound to a mapping id."""

    id: str
    local: str  # "" : not bound here (secondary)
    label: str = ""  # primary: what the partner reads; secondary: the partner's label


@dataclass
class FieldRow:
    id: str
    local: str
    kind: str
    direction: str
    values: dict[str, str] = field(default_factory=dict)  # local value -> shared value id
    default: str | None = None
    match: str = "name"
    label: str = ""
    within: tuple[str, ...] = ALL  # the directions this side may choose
    shared_values: tuple[str, ...] = ()  # secondary: the partner's value ids (with labels in `labels`)


@dataclass
class Filter:
    max_bytes: int
    types: list[str]
    names: str


@dataclass
class DraftModel:
    key: str
    project: str
    role: str  # primary | secondary (a local synchronization's side has one of them)
    version: int  # in force
    pending: int
    dirty: bool  # a draft differs from what is in force
    issue_types: list[Row]
    statuses: list[Row]
    fields: list[FieldRow]
    comments: str
    attachments: str
    attachment_max_bytes: int
    subtasks: bool
    links: bool
    filters: dict[str, Filter]  # to_partner | from_partner
    within: dict[str, tuple[str, ...]]  # comments / attachments: the directions allowed
    labels: dict[str, str]  # value id -> label (the primary's own, or the partner's)
    choices: Choices

    @property
    def can_add(self) -> bool:
        """Only the primary defines mappings."""
        return self.role != Role.SECONDARY

    def new_row(self, what: str, local: str) -> Row | FieldRow:
        """A new mapping for `local` under a generated id (primary)."""
        if what == "field":
            kind = self.choices.fields.get(local, "text")
            values = {v: new_mapping_id("v") for v in self.choices.options.get(local, [])}
            row: Row | FieldRow = FieldRow(new_mapping_id("f"), local, kind, "both", values)
            self.fields.append(row)  # type: ignore[arg-type]
        else:
            row = Row(new_mapping_id("t" if what == "issue type" else "s"), local)
            (self.issue_types if what == "issue type" else self.statuses).append(row)
        return row

    def label_with_local_names(self) -> int:
        """Primary: label every unlabelled mapping and value with its local name (the admin's
        choice to show those names to the partner); returns how many labels it wrote."""
        count = 0
        rows: list[Row | FieldRow] = [*self.issue_types, *self.statuses, *self.fields]
        for row in rows:
            if not row.label and row.local:
                row.label, count = row.local, count + 1
        for f in self.fields:
            for local, value_id in f.values.items():
                if not self.labels.get(value_id):
                    self.labels[value_id], count = local, count + 1
        return count

    def bind_by_labels(self) -> int:
        """Secondary: bind each unbound id whose partner label is one of this side's names (same
        letters, any case), values too; returns how many it bound."""
        count = 0

        def match(label: str, names: list[str]) -> str:
            wanted = label.strip().casefold()
            return next((n for n in names if n.casefold() == wanted), "") if wanted else ""

        for rows, names in (
            (self.issue_types, self.choices.issue_types),
            (self.statuses, self.choices.statuses),
        ):
            taken = {r.local for r in rows if r.local}
            for row in rows:
                found = match(row.label, [n for n in names if n not in taken])
                if not row.local and found:
                    row.local, count = found, count + 1
                    taken.add(found)
        taken = {f.local for f in self.fields if f.local}
        for f in self.fields:
            if f.local:
                continue
            found = match(
                f.label, [n for n, k in self.choices.fields.items() if k == f.kind and n not in taken]
            )
            if not found:
                continue
            f.local, f.direction = found, f.within[0]
            taken.add(found)
            count += 1
            options = self.choices.options.get(found, [])
            for value_id in f.shared_values:
                local = match(self.labels.get(value_id, ""), options)
                if local and local not in f.values:
                    f.values[local] = value_id
        return count

    def unbound_locals(self, what: str) -> list[str]:
        """The tracker's names no row maps yet (what an add offers)."""
        if what == "field":
            used = {f.local for f in self.fields}
            return [n for n in self.choices.fields if n not in used and n != "reporter"]
        rows, offered = (
            (self.issue_types, self.choices.issue_types)
            if what == "issue type"
            else (self.statuses, self.choices.statuses)
        )
        used = {r.local for r in rows}
        return [n for n in offered if n not in used]

    def to_config(self) -> MappingConfig:
        labels: dict[str, str] = {}
        if self.role != Role.SECONDARY:
            rows: list[Row | FieldRow] = [*self.issue_types, *self.statuses, *self.fields]
            labels = {r.id: r.label for r in rows if r.label}
            labels.update({k: v for k, v in self.labels.items() if v})
        return MappingConfig(
            issue_types={r.local: r.id for r in self.issue_types if r.local},
            statuses={r.local: r.id for r in self.statuses if r.local},
            fields=tuple(
                FieldMapping(f.id, f.local, f.kind, f.direction, dict(f.values), f.default, f.match)
                for f in self.fields
            ),
            comments=self.comments,
            attachments=self.attachments,
            attachment_max_bytes=self.attachment_max_bytes,
            subtasks=self.subtasks,
            links=self.links,
            attachment_filters={
                d: AttachmentFilter(f.max_bytes, tuple(f.types), f.names) for d, f in self.filters.items()
            },
            labels=labels,
        )


def load(installation: Installation, key: str, project: str | None = None) -> DraftModel:
    """The draft of one side (the version in force when there is no draft) as an editor model."""
    configuration = installation.configuration
    side, row = configuration.side_row(key, project)
    config = parse_config(configuration.export(key, side.project), "the draft")
    tracker = installation.trackers.for_side(side)
    kinds = tracker.field_names(side.project)
    choices = Choices(
        tracker.issue_types(side.project),
        tracker.statuses(side.project),
        kinds,
        {n: tracker.field_options(side.project, n) for n, k in kinds.items() if k == "select"},
        sorted(tracker.user_emails()),
    )
    terms = configuration.terms_to_bind(row) if side.role == Role.SECONDARY else None
    mine = terms.for_role(side.role) if terms is not None else None
    by_type = {mid: local for local, mid in config.issue_types.items()}
    by_status = {mid: local for local, mid in config.statuses.items()}
    if mine is not None:
        issue_types = [Row(i, by_type.get(i, ""), mine.labels.get(i, "")) for i in mine.issue_types]
        statuses = [Row(i, by_status.get(i, ""), mine.labels.get(i, "")) for i in mine.statuses]
        labels = dict(mine.labels)
    else:
        issue_types = [
            Row(mid, local, config.labels.get(mid, "")) for local, mid in config.issue_types.items()
        ]
        statuses = [Row(mid, local, config.labels.get(mid, "")) for local, mid in config.statuses.items()]
        labels = {k: v for k, v in config.labels.items() if k not in by_type and k not in by_status}
    fields = []
    for m in config.fields:
        term = mine.field(m.id) if mine is not None else None
        fields.append(
            FieldRow(
                m.id,
                m.local,
                m.kind,
                m.direction,
                dict(m.values),
                m.default,
                m.match,
                (mine.labels.get(m.id, "") if mine is not None else config.labels.get(m.id, "")),
                WITHIN[term.direction] if term is not None else ALL,
                term.values if term is not None else (),
            )
        )
        if mine is None:
            labels.pop(m.id, None)
    within = {
        name: WITHIN[mine.settings[name]] if mine is not None else ALL for name in ("comments", "attachments")
    }
    return DraftModel(
        key=key,
        project=side.project,
        role=side.role,
        version=row.config_version,
        pending=row.pending_version,
        dirty=bool(row.draft_text),
        issue_types=issue_types,
        statuses=statuses,
        fields=fields,
        comments=config.comments,
        attachments=config.attachments,
        attachment_max_bytes=config.attachment_max_bytes,
        subtasks=config.subtasks,
        links=config.links,
        filters={
            d: Filter(f.max_bytes, list(f.types), f.names) for d, f in config.attachment_filters.items()
        },
        within=within,
        labels=labels,
        choices=choices,
    )


def save(installation: Installation, model: DraftModel) -> None:
    """Make `model` this side's draft; refused like `config import` (naming the id), nothing kept then."""
    text = model.to_config().to_toml()
    installation.configuration.import_text(model.key, text, "the configuration editor", model.project)


def new_value_id() -> str:
    """A fresh shared value id (a value the primary starts to share)."""
    return new_mapping_id("v")
