"""Mapping configuration of one side: parsed from and written to a readable TOML file."""

from __future__ import annotations

import fnmatch
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import tomli_w

from engine.errors import ApplyError, BackboneError
from engine.vocab import Reason

DIRECTIONS = ("both", "to_partner", "from_partner", "off")
FIELD_KINDS = ("text", "number", "select", "user", "labels", "date")
CONFIG_VERSION = 1
DEFAULT_ATTACHMENT_MAX_BYTES = 10 * 1024 * 1024
FILTER_DIRECTIONS = ("to_partner", "from_partner")
MAX_LABEL_CHARS = 120
USER_MATCHES = ("name", "email")  # user fields: by user name (or a values table), by e-mail address


@dataclass(frozen=True)
class FieldMapping:
    """One mapped field: `values` maps local values to shared value ids."""

    id: str
    local: str
    kind: str = "text"
    direction: str = "both"
    values: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    match: str = "name"  # user fields: "email" shares the e-mail address, the table comes from the tracker

    @property
    def tabled(self) -> bool:
        """Whether values are translated by a table (a passthrough field sends them as they are)."""
        return bool(self.values) or self.match == "email"

    def with_user_emails(self, emails: dict[str, str]) -> FieldMapping:
        """A `match = "email"` mapping with its table filled from the tracker's users (name -> email)."""
        if self.match != "email":
            return self
        return replace(self, values={name: email.strip().lower() for name, email in emails.items() if email})

    @property
    def sends(self) -> bool:
        return self.direction in ("both", "to_partner")

    @property
    def receives(self) -> bool:
        return self.direction in ("both", "from_partner")

    def unshared(self, value: Any) -> list[str]:
        """The local values this mapping's table has no shared id for (sent as nothing, not
        as an empty value that would clear the partner's field)."""
        if not self.tabled or value is None or self.default is not None:
            return []
        return [str(v) for v in (value if isinstance(value, list) else [value]) if str(v) not in self.values]

    def to_shared(self, value: Any) -> Any:
        """The shared form of a local value (None when this value is not shared)."""
        if not self.tabled or value is None:
            return value
        if isinstance(value, list):
            return [self.values[v] for v in value if v in self.values]
        return self.values.get(str(value), self.default and self.values.get(self.default))

    def to_local(self, value: Any) -> Any:
        if value is None:
            return value
        if not _plain(value) and not (isinstance(value, list) and all(_plain(v) for v in value)):
            raise ApplyError(
                Reason.BODY_INVALID,
                f"field mapping {self.id!r}: expected text, a number or a list of them, "
                f"got {type(value).__name__}",
            )
        if not self.tabled:
            return value
        if self.match == "email" and isinstance(value, str):
            value = value.strip().lower()
        inverse = {shared: local for local, shared in reversed(list(self.values.items()))}
        if isinstance(value, list):
            return [inverse[v] for v in value if v in inverse]
        if value in inverse:
            return inverse[value]
        if self.default is not None:
            return self.default
        raise ApplyError(
            Reason.VALUE_NOT_MAPPED, f"field mapping {self.id!r}: partner value {value!r} has no local value"
        )


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


@dataclass(frozen=True)
class AttachmentFilter:
    """Which attachments travel one way: a size limit, allowed media types (patterns such as
    `image/*`; none: any) and a file-name pattern (`*.pdf`; "": any)."""

    max_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES
    types: tuple[str, ...] = ()
    names: str = ""

    def refuses(self, name: str, media_type: str, size: int) -> str:
        """Why this attachment does not pass ("" when it does)."""
        if size > self.max_bytes:
            return f"{size} bytes, larger than {self.max_bytes}"
        if self.types and not any(fnmatch.fnmatchcase(media_type.lower(), t.lower()) for t in self.types):
            return f"type {media_type or 'unknown'} is not one of {', '.join(self.types)}"
        if self.names and not fnmatch.fnmatchcase(name.lower(), self.names.lower()):
            return f"the name does not match {self.names}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes, "types": list(self.types), "names": self.names}


@dataclass(frozen=True)
class MappingConfig:
    issue_types: dict[str, str] = field(default_factory=dict)  # local type -> mapping id
    statuses: dict[str, str] = field(default_factory=dict)  # local status -> mapping id
    fields: tuple[FieldMapping, ...] = ()
    comments: str = "both"
    attachments: str = "both"
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES
    subtasks: bool = True
    links: bool = True
    attachment_filters: dict[str, AttachmentFilter] = field(default_factory=dict)  # to_partner | from_partner
    labels: dict[str, str] = field(default_factory=dict)  # mapping or value id -> what the partner reads

    def with_user_emails(self, emails: dict[str, str]) -> MappingConfig:
        """This configuration with the tables of its `match = "email"` mappings filled in."""
        if not any(m.match == "email" for m in self.fields):
            return self
        return replace(self, fields=tuple(m.with_user_emails(emails) for m in self.fields))

    @property
    def matches_by_email(self) -> bool:
        return any(m.match == "email" for m in self.fields)

    def attachment_filter(self, direction: str) -> AttachmentFilter:
        """The filter attachments pass going `to_partner` or coming `from_partner`."""
        found = self.attachment_filters.get(direction, AttachmentFilter(self.attachment_max_bytes))
        return AttachmentFilter(min(found.max_bytes, self.attachment_max_bytes), found.types, found.names)

    def type_id(self, local: str) -> str | None:
        return self.issue_types.get(local)

    def local_type(self, mapping_id: str) -> str:
        for local, mid in self.issue_types.items():
            if mid == mapping_id:
                return local
        raise ApplyError(Reason.UNKNOWN_ISSUE_TYPE, f"issue type mapping {mapping_id!r} is not bound here")

    def status_id(self, local: str) -> str | None:
        return self.statuses.get(local)

    def local_status(self, mapping_id: str) -> str:
        for local, mid in self.statuses.items():
            if mid == mapping_id:
                return local
        raise ApplyError(Reason.UNKNOWN_STATUS, f"status mapping {mapping_id!r} is not bound here")

    def field_by_local(self, name: str) -> FieldMapping | None:
        return next((f for f in self.fields if f.local == name), None)

    def field_by_id(self, mapping_id: str) -> FieldMapping:
        for mapping in self.fields:
            if mapping.id == mapping_id:
                return mapping
        raise ApplyError(Reason.UNKNOWN_MAPPING, f"field mapping {mapping_id!r} is not bound here")

    def sends(self, what: str) -> bool:
        return bool(getattr(self, what) in ("both", "to_partner"))

    def receives(self, what: str) -> bool:
        return bool(getattr(self, what) in ("both", "from_partner"))

    def to_toml(self) -> str:
        data: dict[str, Any] = {
            "version": CONFIG_VERSION,
            "comments": self.comments,
            "attachments": self.attachments,
            "attachment_max_bytes": self.attachment_max_bytes,
            "subtasks": self.subtasks,
            "links": self.links,
            "issue_types": dict(self.issue_types),
            "statuses": dict(self.statuses),
            "fields": [],
        }
        for mapping in self.fields:
            entry: dict[str, Any] = {
                "id": mapping.id,
                "local": mapping.local,
                "kind": mapping.kind,
                "direction": mapping.direction,
            }
            if mapping.values:
                entry["values"] = dict(mapping.values)
            if mapping.default is not None:
                entry["default"] = mapping.default
            if mapping.match != "name":
                entry["match"] = mapping.match
            data["fields"].append(entry)
        if self.attachment_filters:
            data["attachment_filter"] = {d: f.to_dict() for d, f in sorted(self.attachment_filters.items())}
        if self.labels:
            data["labels"] = dict(self.labels)
        header = (
            "# Backbone TUI mapping configuration for one side of a synchronization.\n"
            "# Local names on the left, shared mapping ids on the right: the partner only sees ids.\n"
            "# Directions: both | to_partner | from_partner | off.\n"
        )
        return header + tomli_w.dumps(data)


def parse_config(text: str, source: str) -> MappingConfig:
    """Parse a TOML mapping file; errors name the file, the field and what was expected."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BackboneError(f"{source}: not valid TOML ({exc})") from None

    def fail(where: str, expected: str, got: Any) -> BackboneError:
        return BackboneError(f"{source}: {where}: expected {expected}, got {got!r}")

    version = data.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise fail("version", str(CONFIG_VERSION), version)
    known = {
        "version",
        "comments",
        "attachments",
        "attachment_max_bytes",
        "subtasks",
        "links",
        "issue_types",
        "statuses",
        "fields",
        "attachment_filter",
        "labels",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise BackboneError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    for name in ("comments", "attachments"):
        if data.get(name, "both") not in DIRECTIONS:
            raise fail(name, " | ".join(DIRECTIONS), data.get(name))
    max_bytes = data.get("attachment_max_bytes", 10 * 1024 * 1024)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        raise fail("attachment_max_bytes", "a positive whole number", max_bytes)
    for name in ("subtasks", "links"):
        if not isinstance(data.get(name, True), bool):
            raise fail(name, "true or false", data.get(name))
    tables: dict[str, dict[str, str]] = {}
    for name in ("issue_types", "statuses"):
        table = data.get(name, {})
        if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in table.items()
        ):
            raise fail(f"[{name}]", 'a table of local name = "mapping id"', table)
        ids = list(table.values())
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise BackboneError(f"{source}: [{name}]: mapping id(s) {', '.join(dupes)} bound twice")
        tables[name] = dict(table)
    fields: list[FieldMapping] = []
    raw_fields = data.get("fields", [])
    if not isinstance(raw_fields, list):
        raise fail("[[fields]]", "an array of tables", raw_fields)
    seen_ids: set[str] = set()
    for index, entry in enumerate(raw_fields, start=1):
        where = f"[[fields]] #{index}"
        if not isinstance(entry, dict):
            raise fail(where, "a table", entry)
        extra = sorted(set(entry) - {"id", "local", "kind", "direction", "values", "default", "match"})
        if extra:
            raise BackboneError(f"{source}: {where}: unknown key(s) {', '.join(extra)}")
        if not isinstance(entry.get("id"), str) or not entry["id"]:
            raise fail(f"{where} id", "a non-empty string", entry.get("id"))
        unbound_off = entry.get("local") == "" and entry.get("direction") == "off"  # not synced here
        if not isinstance(entry.get("local"), str) or not (entry["local"] or unbound_off):
            raise fail(
                f"{where} local", 'a non-empty string (or "" with direction = "off")', entry.get("local")
            )
        if entry["id"] in seen_ids:
            raise BackboneError(f"{source}: {where}: mapping id {entry['id']!r} used twice")
        seen_ids.add(entry["id"])
        kind = entry.get("kind", "text")
        if kind not in FIELD_KINDS:
            raise fail(f"{where} kind", " | ".join(FIELD_KINDS), kind)
        direction = entry.get("direction", "both")
        if direction not in DIRECTIONS:
            raise fail(f"{where} direction", " | ".join(DIRECTIONS), direction)
        values = entry.get("values", {})
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise fail(f"{where} values", 'a table of local value = "shared id"', values)
        default = entry.get("default")
        if default is not None and (not isinstance(default, str) or (values and default not in values)):
            raise fail(f"{where} default", "one of the local values", default)
        match = entry.get("match", "name")
        if match not in USER_MATCHES:
            raise fail(f"{where} match", " | ".join(USER_MATCHES), match)
        if match == "email" and (kind != "user" or values):
            raise BackboneError(
                f'{source}: {where}: match = "email" is for kind = "user" without a values table '
                "(the table comes from the tracker's users)"
            )
        fields.append(
            FieldMapping(entry["id"], entry["local"], kind, direction, dict(values), default, match)
        )
    locals_ = [f.local for f in fields if f.local]
    dupes = sorted({name for name in locals_ if locals_.count(name) > 1})
    if dupes:
        raise BackboneError(f"{source}: local field(s) {', '.join(dupes)} mapped twice")
    filters = _attachment_filters(data.get("attachment_filter", {}), source)
    labels = data.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= MAX_LABEL_CHARS and v.isprintable()
        for k, v in labels.items()
    ):
        raise fail(
            "[labels]",
            f'a table of mapping id = "text the partner reads" (1 line, <= {MAX_LABEL_CHARS})',
            labels,
        )
    return MappingConfig(
        attachment_filters=filters,
        labels={k: v for k, v in labels.items() if v},
        issue_types=tables["issue_types"],
        statuses=tables["statuses"],
        fields=tuple(fields),
        comments=data.get("comments", "both"),
        attachments=data.get("attachments", "both"),
        attachment_max_bytes=max_bytes,
        subtasks=data.get("subtasks", True),
        links=data.get("links", True),
    )


def _attachment_filters(raw: Any, source: str) -> dict[str, AttachmentFilter]:
    """`[attachment_filter.to_partner]` / `[attachment_filter.from_partner]`: max_bytes, types, names."""
    if not isinstance(raw, dict) or not set(raw) <= set(FILTER_DIRECTIONS):
        raise BackboneError(f"{source}: [attachment_filter]: expected tables to_partner and/or from_partner")
    filters: dict[str, AttachmentFilter] = {}
    for direction, table in raw.items():
        where = f"{source}: [attachment_filter.{direction}]"
        if not isinstance(table, dict) or not set(table) <= {"max_bytes", "types", "names"}:
            raise BackboneError(f"{where}: expected max_bytes, types and names only")
        size = table.get("max_bytes", DEFAULT_ATTACHMENT_MAX_BYTES)
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise BackboneError(f"{where} max_bytes: expected a positive whole number, got {size!r}")
        types = table.get("types", [])
        if not isinstance(types, list) or not all(isinstance(v, str) and "/" in v for v in types):
            raise BackboneError(f'{where} types: expected media types like ["image/*", "application/pdf"]')
        names = table.get("names", "")
        if not isinstance(names, str):
            raise BackboneError(f'{where} names: expected a file-name pattern like "*.pdf"')
        filters[direction] = AttachmentFilter(size, tuple(types), names)
    return filters


def check_against(
    config: MappingConfig,
    source: str,
    *,
    issue_types: list[str],
    statuses: list[str],
    field_kinds: dict[str, str],
) -> None:
    """Refuse a configuration that names types, statuses or fields this tracker lacks."""
    for local in config.issue_types:
        if local not in issue_types:
            raise BackboneError(
                f"{source}: [issue_types]: {local!r} is not an issue type here "
                f"(expected one of {', '.join(issue_types)})"
            )
    for local in config.statuses:
        if local not in statuses:
            raise BackboneError(
                f"{source}: [statuses]: {local!r} is not a status here "
                f"(expected one of {', '.join(statuses)})"
            )
    for mapping in config.fields:
        if not mapping.local:
            continue  # unbound and off
        if mapping.local not in field_kinds:
            raise BackboneError(
                f"{source}: field mapping {mapping.id!r}: {mapping.local!r} is not a field here "
                f"(expected one of {', '.join(sorted(field_kinds))})"
            )
        here = field_kinds[mapping.local]
        if here != mapping.kind:
            raise BackboneError(
                f"{source}: field mapping {mapping.id!r}: {mapping.local!r} is a {here} field here, "
                f"the mapping is {mapping.kind} (expected a {mapping.kind} field)"
            )


@dataclass(frozen=True)
class TrackerSchema:
    """What one project of a tracker offers to map: the input of a default configuration."""

    issue_types: list[str]
    statuses: list[str]
    field_kinds: dict[str, str]
    options: dict[str, list[str]]  # select field -> its values

    def common(self, other: TrackerSchema) -> TrackerSchema:
        """What both projects have under the same names (and, for fields, the same kind)."""
        kinds = {n: k for n, k in self.field_kinds.items() if other.field_kinds.get(n) == k}
        return TrackerSchema(
            [t for t in self.issue_types if t in other.issue_types],
            [s for s in self.statuses if s in other.statuses],
            kinds,
            {
                n: [v for v in vs if v in other.options.get(n, [])]
                for n, vs in self.options.items()
                if n in kinds
            },
        )


def new_mapping_id(prefix: str) -> str:
    """A mapping or value id that reveals nothing about the name it stands for."""
    return f"{prefix}-{secrets.token_hex(4)}"


def draft_with_label_slots(config: MappingConfig) -> str:
    """The configuration as a draft to edit, with an empty `[labels]` slot for every id (and
    the local name it stands for as a comment): labels are the only text the partner reads."""
    lines = ["", '[labels]  # optional: what the partner reads beside each id ("" = nothing)']
    named = [(mid, local) for local, mid in config.issue_types.items()]
    named += [(mid, local) for local, mid in config.statuses.items()]
    for mapping in config.fields:
        named.append((mapping.id, mapping.local))
        named += [(vid, f"{mapping.local} = {value}") for value, vid in mapping.values.items()]
    for mapping_id, local in named:
        if mapping_id not in config.labels:
            lines.append(f"{tomli_w.dumps({mapping_id: ''}).strip()}  # {local}")
    text = config.to_toml()
    return text + "\n".join(lines) + "\n" if "\n[labels]" not in text else text


def generated_config(schema: TrackerSchema, new_id: Callable[[str], str] = new_mapping_id) -> MappingConfig:
    """The default: every issue type, status and field (but the reporter) mapped both ways under
    generated ids; select fields with a value table of generated value ids."""
    fields = tuple(
        FieldMapping(
            id=new_id("f"),
            local=name,
            kind=kind if kind in FIELD_KINDS else "text",
            values={value: new_id("v") for value in schema.options.get(name, [])} if kind == "select" else {},
        )
        for name, kind in schema.field_kinds.items()
        if name != "reporter"
    )
    return MappingConfig(
        issue_types={t: new_id("t") for t in schema.issue_types},
        statuses={s: new_id("s") for s in schema.statuses},
        fields=fields,
    )
