"""The shared terms of a synchronization: what the primary publishes in a `CONFIG` message.

Terms hold mapping ids, field kinds, directions, shared value ids and the comment, attachment,
sub-task and link settings, never a local name (SPEC section 2, privacy). Directions are stated
from the primary's side; `for_role` gives the secondary's view. A side's binding (its
`MappingConfig`) must stay within the terms: the secondary binds ids to local names and may
narrow a direction, but adds or removes nothing (`check_binding`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from engine.config.mapping import (
    DIRECTIONS,
    FIELD_KINDS,
    MAX_LABEL_CHARS,
    USER_MATCHES,
    AttachmentFilter,
    FieldMapping,
    MappingConfig,
)
from engine.errors import BackboneError, RejectedError
from engine.vocab import Role

MIRROR = {"both": "both", "to_partner": "from_partner", "from_partner": "to_partner", "off": "off"}
WITHIN = {
    "both": ("both", "to_partner", "from_partner", "off"),
    "to_partner": ("to_partner", "off"),
    "from_partner": ("from_partner", "off"),
    "off": ("off",),
}
FILTERS = "attachment_filters"
SETTINGS = ("comments", "attachments", "attachment_max_bytes", "subtasks", "links", FILTERS)
MAX_IDS = 10_000  # mappings and values in one CONFIG: far more than any project has
MAX_ID_CHARS = 64


@dataclass(frozen=True)
class FieldTerm:
    """One field mapping as both sides know it: id, kind, direction, the shared value ids."""

    id: str
    kind: str
    direction: str
    values: tuple[str, ...] = ()
    match: str = "name"  # user fields: "email" when the shared value is the e-mail address


@dataclass(frozen=True)
class Change:
    """One difference between two versions: what (`field`, `issue type` ...), its id, how."""

    what: str
    id: str
    how: str  # added | changed | removed
    detail: str = ""

    def line(self) -> str:
        return f"{self.how:<8} {self.what} {self.id}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Terms:
    """The published terms, directions from the primary's side."""

    issue_types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    fields: tuple[FieldTerm, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # id -> the primary's label for its partner

    @classmethod
    def of(cls, config: MappingConfig) -> Terms:
        """The terms the primary's configuration defines (what its `CONFIG` message carries)."""
        return cls(
            issue_types=tuple(sorted(set(config.issue_types.values()))),
            statuses=tuple(sorted(set(config.statuses.values()))),
            fields=tuple(
                FieldTerm(m.id, m.kind, m.direction, tuple(sorted(set(m.values.values()))), m.match)
                for m in sorted(config.fields, key=lambda m: m.id)
            ),
            settings={
                **{name: getattr(config, name) for name in SETTINGS if name != FILTERS},
                FILTERS: {d: f.to_dict() for d, f in sorted(config.attachment_filters.items())},
            },
            labels={k: v for k, v in sorted(config.labels.items()) if k in _ids_of(config)},
        )

    def for_role(self, role: str) -> Terms:
        """The terms seen from `role`: the secondary's directions are the primary's mirrored."""
        if role != Role.SECONDARY:
            return self
        return Terms(
            self.issue_types,
            self.statuses,
            tuple(FieldTerm(t.id, t.kind, MIRROR[t.direction], t.values, t.match) for t in self.fields),
            {
                k: MIRROR[v] if k in ("comments", "attachments") else v
                for k, v in self.settings.items()
                if k != FILTERS
            }
            | {FILTERS: {MIRROR[d]: f for d, f in self.settings.get(FILTERS, {}).items()}},
            self.labels,
        )

    def attachment_filter(self, direction: str) -> AttachmentFilter | None:
        """The filter the terms set for attachments going `direction` (None: only the size limit)."""
        raw = self.settings.get(FILTERS, {}).get(direction)
        return AttachmentFilter(raw["max_bytes"], tuple(raw["types"]), raw["names"]) if raw else None

    def field(self, mapping_id: str) -> FieldTerm | None:
        return next((t for t in self.fields if t.id == mapping_id), None)

    # -- the CONFIG body ---------------------------------------------------------------------

    def to_body(self) -> dict[str, Any]:
        return {
            "issue_types": list(self.issue_types),
            "statuses": list(self.statuses),
            "fields": [
                {"id": t.id, "kind": t.kind, "direction": t.direction, "values": list(t.values)}
                | ({"match": t.match} if t.match != "name" else {})
                for t in self.fields
            ],
            "settings": dict(self.settings),
            "labels": dict(self.labels),
        }

    @classmethod
    def from_body(cls, body: Any) -> Terms:
        """Terms from a received `CONFIG` body; anything malformed is `BODY_INVALID`."""

        def bad(where: str, expected: str) -> RejectedError:
            return RejectedError("BODY_INVALID", f"CONFIG {where}: expected {expected}")

        def ids(value: Any, where: str) -> tuple[str, ...]:
            if not isinstance(value, list) or len(value) > MAX_IDS:
                raise bad(where, f"a list of at most {MAX_IDS} ids")
            if not all(isinstance(v, str) and 0 < len(v) <= MAX_ID_CHARS for v in value):
                raise bad(where, f"ids of 1-{MAX_ID_CHARS} characters")
            if len(set(value)) != len(value):
                raise bad(where, "each id once")
            return tuple(value)

        if not isinstance(body, dict):
            raise bad("body", "an object")
        fields: list[FieldTerm] = []
        raw_fields = body.get("fields")
        if not isinstance(raw_fields, list) or len(raw_fields) > MAX_IDS:
            raise bad("fields", f"a list of at most {MAX_IDS} field mappings")
        for index, entry in enumerate(raw_fields, start=1):
            where = f"fields #{index}"
            if not isinstance(entry, dict):
                raise bad(where, "an object")
            (mapping_id,) = ids([entry.get("id")], f"{where} id")
            if entry.get("kind") not in FIELD_KINDS:
                raise bad(f"{where} kind", " | ".join(FIELD_KINDS))
            if entry.get("direction") not in DIRECTIONS:
                raise bad(f"{where} direction", " | ".join(DIRECTIONS))
            if entry.get("match", "name") not in USER_MATCHES or (
                entry.get("match") == "email" and entry["kind"] != "user"
            ):
                raise bad(f"{where} match", '"name", or "email" for a user field')
            fields.append(
                FieldTerm(
                    mapping_id,
                    entry["kind"],
                    entry["direction"],
                    ids(entry.get("values"), f"{where} values"),
                    entry.get("match", "name"),
                )
            )
        ids([t.id for t in fields], "fields")
        settings = body.get("settings")
        if not isinstance(settings, dict) or set(settings) != set(SETTINGS):
            raise bad("settings", ", ".join(SETTINGS))
        for name in ("comments", "attachments"):
            if settings[name] not in DIRECTIONS:
                raise bad(f"settings {name}", " | ".join(DIRECTIONS))
        size = settings["attachment_max_bytes"]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= 2**53:
            raise bad("settings attachment_max_bytes", "a positive whole number")
        if not all(isinstance(settings[name], bool) for name in ("subtasks", "links")):
            raise bad("settings subtasks/links", "true or false")
        filters = settings[FILTERS]
        if not isinstance(filters, dict) or not set(filters) <= {"to_partner", "from_partner"}:
            raise bad(f"settings {FILTERS}", "to_partner and/or from_partner")
        for direction, raw in filters.items():
            where = f"settings {FILTERS} {direction}"
            if not isinstance(raw, dict) or set(raw) != {"max_bytes", "types", "names"}:
                raise bad(where, "max_bytes, types, names")
            if (
                not isinstance(raw["max_bytes"], int)
                or isinstance(raw["max_bytes"], bool)
                or raw["max_bytes"] <= 0
            ):
                raise bad(f"{where} max_bytes", "a positive whole number")
            if not isinstance(raw["types"], list) or not all(
                isinstance(v, str) and len(v) < 128 for v in raw["types"]
            ):
                raise bad(f"{where} types", "a list of media types")
            if not isinstance(raw["names"], str) or len(raw["names"]) > 255:
                raise bad(f"{where} names", "a file-name pattern")
        labels = body.get("labels", {})
        if (
            not isinstance(labels, dict)
            or len(labels) > MAX_IDS
            or not all(
                isinstance(k, str) and isinstance(v, str) and len(v) <= MAX_LABEL_CHARS and v.isprintable()
                for k, v in labels.items()
            )
        ):
            raise bad("labels", f"id -> a line of at most {MAX_LABEL_CHARS} characters")
        return cls(
            ids(body.get("issue_types"), "issue_types"),
            ids(body.get("statuses"), "statuses"),
            tuple(fields),
            dict(settings),
            dict(labels),
        )

    def label(self, mapping_id: str) -> str:
        """` (the partner's label)`, or "" when it wrote none."""
        text = self.labels.get(mapping_id, "")
        return f" ({text})" if text else ""

    # -- comparing -------------------------------------------------------------------------

    def changes_since(self, older: Terms | None) -> list[Change]:
        """What this version added, changed or removed against `older` (None: everything added)."""
        before = older or Terms()
        changes: list[Change] = []
        for what, new, old in (
            ("issue type", self.issue_types, before.issue_types),
            ("status", self.statuses, before.statuses),
        ):
            changes += [Change(what, i, "added", self.labels.get(i, "")) for i in new if i not in old]
            changes += [Change(what, i, "removed") for i in old if i not in new]
        old_fields = {t.id: t for t in before.fields}
        for term in self.fields:
            was = old_fields.pop(term.id, None)
            if was is None:
                detail = f"{term.kind}, {term.direction}{self.label(term.id)}"
                changes.append(Change("field", term.id, "added", detail))
            elif was != term:
                changes.append(Change("field", term.id, "changed", _field_change(was, term)))
        changes += [Change("field", i, "removed") for i in old_fields]
        for name in SETTINGS:
            if older is not None and before.settings.get(name) != self.settings.get(name):
                detail = f"{before.settings.get(name)!r} -> {self.settings.get(name)!r}"
                changes.append(Change("setting", name, "changed", detail))
        return changes

    # -- a side's binding ------------------------------------------------------------------

    def check_binding(self, config: MappingConfig, source: str, *, role: str) -> None:
        """Refuse a binding that leaves the terms: an id they lack, a wider direction, another
        kind, a shared value id they lack. (Unbound ids are allowed in a draft: `unbound`.)"""
        terms = self.for_role(role)
        for what, table, allowed in (
            ("issue_types", config.issue_types, terms.issue_types),
            ("statuses", config.statuses, terms.statuses),
        ):
            for local, mapping_id in table.items():
                if mapping_id not in allowed:
                    raise BackboneError(
                        f"{source}: [{what}]: {local!r} is bound to {mapping_id!r}, which the "
                        "primary did not define (the secondary cannot add mappings)"
                    )
        for mapping in config.fields:
            term = terms.field(mapping.id)
            where = f"{source}: field mapping {mapping.id!r}"
            if term is None:
                raise BackboneError(
                    f"{where}: the primary did not define it (the secondary cannot add mappings)"
                )
            if mapping.kind != term.kind:
                raise BackboneError(
                    f"{where}: kind {mapping.kind!r}, expected {term.kind!r} as the primary defined"
                )
            if mapping.match != term.match and mapping.local:
                raise BackboneError(
                    f'{where}: match = "{mapping.match}", expected "{term.match}" as the primary defined '
                    "(users by e-mail address share the address, not the name)"
                )
            if mapping.direction not in WITHIN[term.direction]:
                raise BackboneError(
                    f"{where}: direction {mapping.direction!r} is wider than the terms allow "
                    f"(expected one of {', '.join(WITHIN[term.direction])})"
                )
            unknown = sorted(set(mapping.values.values()) - set(term.values))
            if unknown:
                raise BackboneError(
                    f"{where}: value id(s) {', '.join(unknown)} are not among the shared values"
                )
        missing = sorted({t.id for t in terms.fields} - {m.id for m in config.fields})
        if missing:
            raise BackboneError(
                f"{source}: field mapping(s) {', '.join(missing)} are missing (the secondary cannot "
                'remove mappings; set direction = "off" not to share one)'
            )
        for name in ("comments", "attachments"):
            chosen, term_direction = getattr(config, name), terms.settings[name]
            if chosen not in WITHIN[term_direction]:
                raise BackboneError(
                    f"{source}: {name} = {chosen!r} is wider than the terms allow "
                    f"(expected one of {', '.join(WITHIN[term_direction])})"
                )

        for direction in ("to_partner", "from_partner"):
            term_filter = terms.attachment_filter(direction)
            mine = config.attachment_filters.get(direction)
            if term_filter is None or mine is None:
                continue
            where = f"{source}: [attachment_filter.{direction}]"
            if mine.max_bytes > term_filter.max_bytes:
                raise BackboneError(f"{where} max_bytes: at most {term_filter.max_bytes}, as the terms allow")
            if term_filter.types and (not mine.types or not set(mine.types) <= set(term_filter.types)):
                raise BackboneError(f"{where} types: expected some of {', '.join(term_filter.types)}")
            if term_filter.names and mine.names != term_filter.names:
                raise BackboneError(f"{where} names: expected {term_filter.names!r}, as the terms set it")

    def unbound(self, config: MappingConfig, *, role: str) -> list[str]:
        """The ids this side still has to bind before the version can be put in force."""
        terms = self.for_role(role)
        missing = [f"issue type {i}" for i in terms.issue_types if i not in config.issue_types.values()]
        missing += [f"status {i}" for i in terms.statuses if i not in config.statuses.values()]
        missing += [f"field {m.id}" for m in config.fields if not m.local and m.direction != "off"]
        return missing

    def narrowed(self, config: MappingConfig, *, role: str) -> dict[str, str]:
        """Mapping id (or setting) -> the narrower direction this side chose."""
        terms = self.for_role(role)
        chosen = {
            m.id: m.direction
            for m in config.fields
            if (t := terms.field(m.id)) and m.direction != t.direction
        }
        for name in ("comments", "attachments"):
            if getattr(config, name) != terms.settings[name]:
                chosen[name] = getattr(config, name)
        return chosen

    def template(self, bound: MappingConfig | None, *, role: str, message: str = "", version: int = 0) -> str:
        """The binding file a side edits: every id of the terms, bound as in `bound` where it was,
        new ones empty (fields) or as a comment (issue types, statuses)."""
        terms = self.for_role(role)
        bound = bound or MappingConfig()
        lines = [
            f"# Configuration version {version} from the primary."
            if version
            else "# Configuration from the primary.",
            *(f"# Message: {line}" for line in message.splitlines()),
            "# Bind each mapping id to this side's name. You may narrow a direction (or set it to",
            '# "off"), but not add or remove a mapping. Directions: both | to_partner | from_partner | off.',
            tomli_w.dumps({"version": 1}).strip(),
        ]
        for name in SETTINGS:
            if name == FILTERS:
                continue
            value = getattr(bound, name) if name in ("attachment_max_bytes", "subtasks", "links") else None
            if name in ("comments", "attachments"):
                value = (
                    getattr(bound, name)
                    if getattr(bound, name) in WITHIN[terms.settings[name]]
                    else terms.settings[name]
                )
                lines.append(tomli_w.dumps({name: value}).strip() + f"  # within: {terms.settings[name]}")
            else:
                lines.append(tomli_w.dumps({name: terms.settings[name] if value is None else value}).strip())
        for title, table, ids in (
            ("issue_types", bound.issue_types, terms.issue_types),
            ("statuses", bound.statuses, terms.statuses),
        ):
            lines += ["", f"[{title}]"]
            by_id = {mapping_id: local for local, mapping_id in table.items()}
            for mapping_id in ids:
                if mapping_id in by_id:
                    lines.append(tomli_w.dumps({by_id[mapping_id]: mapping_id}).strip())
                else:
                    lines.append(
                        "# "
                        + tomli_w.dumps({"": mapping_id}).strip()
                        + f"   <- new: put a local name{terms.label(mapping_id)}"
                    )
        for term in terms.fields:
            old = next((m for m in bound.fields if m.id == term.id), None)
            entry: dict[str, Any] = {
                "id": term.id,
                "local": old.local if old else "",
                "kind": term.kind,
                "direction": old.direction
                if old and old.direction in WITHIN[term.direction]
                else (term.direction if old else "off"),
            }
            if term.match != "name":
                entry["match"] = term.match
            values = {
                local: shared
                for local, shared in (old.values if old else {}).items()
                if shared in term.values
            }
            if old is not None and old.default is not None and old.default in values:
                entry["default"] = old.default
            label = terms.label(term.id)
            lines += ["", "[[fields]]" + (f"  #{label}" if label else ""), tomli_w.dumps(entry).strip()]
            if values:  # inline: a [values] table here would belong to the whole file
                pairs = ", ".join(tomli_w.dumps({local: shared}).strip() for local, shared in values.items())
                lines.append(f"values = {{ {pairs} }}")
            if not old:
                lines.append(f"# new: set local, then direction (within: {term.direction})")
            unmapped = [v for v in term.values if v not in values.values()]
            if unmapped:
                named = ", ".join(f"{v}{terms.label(v)}" for v in unmapped)
                lines.append(f"# shared values without a local value: {named}")
        for direction, raw in sorted(terms.settings.get(FILTERS, {}).items()):
            mine = bound.attachment_filters.get(direction)
            chosen = mine.to_dict() if mine is not None else raw
            within = f"at most {raw['max_bytes']} bytes, types {', '.join(raw['types']) or 'any'}, "
            within += f"names {raw['names'] or 'any'}"
            lines += [
                "",
                f"[attachment_filter.{direction}]  # within: {within}",
                f"max_bytes = {chosen['max_bytes']}",
                f"types = {json.dumps(chosen['types'])}",
                f"names = {json.dumps(chosen['names'])}",
            ]
        return "\n".join(lines) + "\n"


def _ids_of(config: MappingConfig) -> set[str]:
    """Every mapping and value id a configuration defines."""
    ids = set(config.issue_types.values()) | set(config.statuses.values())
    for mapping in config.fields:
        ids |= {mapping.id, *mapping.values.values()}
    return ids


def _field_change(was: FieldTerm, now: FieldTerm) -> str:
    parts = []
    if was.kind != now.kind:
        parts.append(f"kind {was.kind} -> {now.kind}")
    if was.direction != now.direction:
        parts.append(f"direction {was.direction} -> {now.direction}")
    if was.match != now.match:
        parts.append(f"users by {was.match} -> by {now.match}")
    added = [v for v in now.values if v not in was.values]
    removed = [v for v in was.values if v not in now.values]
    if added:
        parts.append(f"values added {', '.join(added)}")
    if removed:
        parts.append(f"values removed {', '.join(removed)}")
    return "; ".join(parts)


__all__ = ["Change", "FieldMapping", "FieldTerm", "Terms"]
