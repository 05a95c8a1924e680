"""Redmine's history turned into the protocol's changes: an issue's creation, its journals' detail
rows (fields, status, notes), its attachments and its relations, each under a stable remote key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.trackers.mirror import RemoteChangeIn
from engine.trackers.redmine.schema import MARKER_FIELDS, RedmineSchema
from engine.trackers.redmine.text import to_plain

#: Redmine's issue attributes -> the protocol's field names and what their ids name
ATTRIBUTES: dict[str, tuple[str, str | None]] = {
    "subject": ("summary", None),
    "description": ("description", None),
    "priority_id": ("priority", "priorities"),
    "assigned_to_id": ("assignee", "user"),
    "due_date": ("due_date", None),
    "tracker_id": ("issue_type", "trackers"),
    "parent_id": ("parent", None),
    "start_date": ("start_date", None),
    "done_ratio": ("done_ratio", None),
    "estimated_hours": ("estimated_hours", None),
}
#: A relation as the other issue sees it.
INVERSE_RELATIONS = {
    "blocks": "blocked",
    "blocked": "blocks",
    "precedes": "follows",
    "follows": "precedes",
    "duplicates": "duplicated",
    "duplicated": "duplicates",
    "copied_to": "copied_from",
    "copied_from": "copied_to",
    "relates": "relates",
}


def parse_time(value: str) -> datetime:
    """A Redmine timestamp ("2026-12-02T09:53:32Z") as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def issue_key(project: str, issue_id: Any) -> str:
    """Redmine has no issue keys: the project identifier in upper case and the id."""
    return f"{project.upper()}-{issue_id}"


def link_of(issue_id: int, relation: dict[str, Any]) -> tuple[str, str]:
    """(kind, other issue id) of a relation as seen from `issue_id`."""
    kind = str(relation["relation_type"])
    if int(relation["issue_id"]) == issue_id:
        return kind, str(relation["issue_to_id"])
    return INVERSE_RELATIONS.get(kind, kind), str(relation["issue_id"])


class ChangeReader:
    """Builds the changes of one issue's JSON (`include=journals,attachments,relations`)."""

    def __init__(self, schema: RedmineSchema, formatting: str) -> None:
        self.schema = schema
        self.formatting = formatting  # descriptions are read as the plain text they stand for

    def _value(self, what: str | None, value: Any) -> Any:
        if what is None or value in (None, ""):
            return None if value == "" else value
        if what == "user":
            return self.schema.login_of_id(value)
        return self.schema.name_of(what, value)

    def _field_changes(self, details: list[dict[str, Any]], names: dict[int, str]) -> dict[str, list[Any]]:
        fields: dict[str, list[Any]] = {}
        for detail in details:
            old, new = detail.get("old_value"), detail.get("new_value")
            if detail.get("property") == "attr" and detail.get("name") in ATTRIBUTES:
                name, what = ATTRIBUTES[str(detail["name"])]
                if name == "description":
                    fields[name] = [to_plain(old, self.formatting), to_plain(new, self.formatting)]
                else:
                    fields[name] = [self._value(what, old), self._value(what, new)]
            elif detail.get("property") == "cf":
                cf_name = names.get(int(detail["name"]), f"custom field {detail['name']}")
                if cf_name not in MARKER_FIELDS:
                    fields[cf_name] = [old, new]
        return fields

    def changes(self, project: str, issue: dict[str, Any]) -> list[tuple[datetime, int, RemoteChangeIn]]:
        """(time, order, change) for everything in the issue's history; keys are stable across reads."""
        issue_id = int(issue["id"])
        sid = str(issue_id)
        names = {int(cf["id"]): str(cf["name"]) for cf in issue.get("custom_fields") or []}
        names.update({f.id: f.name for f in self.schema.custom_fields(issue.get("custom_fields")).values()})
        out: list[tuple[datetime, int, RemoteChangeIn]] = []

        def add(key: str, at: datetime, author: str, op: str, data: dict[str, Any]) -> None:
            out.append((at, len(out), RemoteChangeIn(key, sid, at, author, op, data)))

        created = parse_time(str(issue["created_on"]))
        add(
            f"create:{issue_id}",
            created,
            self.schema.login_of(issue.get("author")),
            "create",
            {"key": issue_key(project, issue_id)},
        )
        relation_times: dict[tuple[str, str], tuple[datetime, str]] = {}
        for journal in sorted(issue.get("journals") or [], key=lambda j: int(j["id"])):
            at = parse_time(str(journal["created_on"]))
            author = self.schema.login_of(journal.get("user"))
            details = journal.get("details") or []
            status = next(
                (d for d in details if d.get("property") == "attr" and d.get("name") == "status_id"), None
            )
            fields = self._field_changes(details, names)
            if fields:
                add(f"journal:{journal['id']}", at, author, "update", {"fields": fields})
            if status is not None:
                old, new = (
                    self.schema.name_of("statuses", status.get(k)) for k in ("old_value", "new_value")
                )
                add(
                    f"journal:{journal['id']}:status",
                    at,
                    author,
                    "transition",
                    {"fields": {"status": [old, new]}},
                )
            if (journal.get("notes") or "").strip():
                add(f"journal:{journal['id']}:note", at, author, "comment", {"comment": str(journal["id"])})
            for detail in details:
                if detail.get("property") == "relation" and detail.get("new_value"):
                    relation_times[(str(detail["name"]), str(detail["new_value"]))] = (at, author)
        for attachment in issue.get("attachments") or []:
            add(
                f"attachment:{attachment['id']}",
                parse_time(str(attachment["created_on"])),
                self.schema.login_of(attachment.get("author")),
                "attach",
                {"attachment": str(attachment["id"])},
            )
        updated = parse_time(str(issue["updated_on"]))
        for relation in issue.get("relations") or []:
            if int(relation["issue_id"]) != issue_id:
                continue  # a relation is reported once, on the issue it starts from
            kind, target = link_of(issue_id, relation)
            at, author = relation_times.get((kind, target), (updated, ""))
            add(f"relation:{relation['id']}", at, author, "link", {"target": target, "kind": kind})
        return out
