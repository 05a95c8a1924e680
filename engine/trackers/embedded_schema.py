"""What the embedded tracker's projects offer: issue types, statuses, workflow, standard and
custom fields with their kinds, and the checks a field value must pass before it is written."""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from engine.errors import BackboneError, TrackerRefused
from engine.store.database import Database
from engine.store.models import CustomField, Project, TrackerUser

ISSUE_TYPES = ("Bug", "Task", "Story", "Sub-task")
SUBTASK_TYPES = frozenset({"Sub-task"})
STATUSES = ("To Do", "In Progress", "In Review", "Done")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "To Do": ("In Progress", "Done"),
    "In Progress": ("To Do", "In Review", "Done"),
    "In Review": ("In Progress", "Done"),
    "Done": ("To Do",),
}
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
STANDARD_FIELDS = ("summary", "description", "priority", "labels", "assignee", "reporter", "due_date")
CUSTOM_KINDS = ("text", "number", "select")
KINDS_CACHE_SECONDS = 5.0


class EmbeddedSchema:
    """Projects and their fields: what can be created, mapped and written (the tracker's schema)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._kinds_cache: dict[str, tuple[float, dict[str, str]]] = {}

    def create_project(self, key: str, name: str) -> None:
        if not key.isalnum() or not key.isupper() or not key[0].isalpha() or len(key) > 20:
            raise BackboneError(
                f"project key {key!r}: expected 1-20 upper-case letters and digits, starting with a letter"
            )
        with self.db.write() as s:
            if s.get(Project, key):
                raise BackboneError(f"project {key} exists already")
            s.add(Project(key=key, name=name))

    def add_custom_field(self, project: str, name: str, kind: str, options: list[str] = []) -> None:  # noqa: B006
        if kind not in CUSTOM_KINDS:
            raise BackboneError(f"custom field kind {kind!r}: expected one of {', '.join(CUSTOM_KINDS)}")
        if name in STANDARD_FIELDS:
            raise BackboneError(f"custom field {name!r} clashes with a standard field")
        with self.db.write() as s:
            self._project(s, project)
            s.add(CustomField(project=project, name=name, kind=kind, options=json.dumps(options)))
        self._kinds_cache.pop(project, None)

    def add_user(self, name: str, email: str) -> None:
        """Add a user (or change its e-mail address): user fields matched by e-mail look it up."""
        email = email.strip()
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
            raise BackboneError(f"user {name!r}: expected a user name (letters, digits, - _ .)")
        local, at, domain = email.partition("@")
        if not (local and at and "." in domain) or any(c.isspace() for c in email) or len(email) > 254:
            raise BackboneError(
                f"user {name}: e-mail address {email!r}: expected one address like a@example.org"
            )
        with self.db.write() as s:
            taken = s.exec(
                select(TrackerUser).where(TrackerUser.email == email.lower(), TrackerUser.name != name)
            ).first()
            if taken is not None:
                raise BackboneError(f"user {name}: {email} is the address of {taken.name} already")
            row = s.get(TrackerUser, name) or TrackerUser(name=name)
            row.email = email.lower()
            s.add(row)

    def user_emails(self) -> dict[str, str]:
        with self.db.session() as s:
            return {u.name: u.email for u in s.exec(select(TrackerUser).order_by(col(TrackerUser.name)))}

    def projects(self) -> list[tuple[str, str]]:
        with self.db.session() as s:
            return [(p.key, p.name) for p in s.exec(select(Project).order_by(col(Project.key)))]

    def issue_types(self, project: str) -> list[str]:
        return list(ISSUE_TYPES)

    def statuses(self, project: str) -> list[str]:
        return list(STATUSES)

    def field_names(self, project: str) -> dict[str, str]:
        """Field name -> kind (standard fields and this project's custom fields)."""
        kinds = {
            "summary": "text",
            "description": "text",
            "priority": "select",
            "labels": "labels",
            "assignee": "user",
            "reporter": "user",
            "due_date": "date",
        }
        with self.db.session() as s:
            kinds.update(self._custom_kinds(s, project))
        return kinds

    def field_options(self, project: str, name: str) -> list[str]:
        """The values a select field allows: the priorities, or a custom field's options."""
        if name == "priority":
            return list(PRIORITIES)
        with self.db.session() as s:
            row = s.exec(
                select(CustomField).where(CustomField.project == project, CustomField.name == name)
            ).first()
        return list(json.loads(row.options)) if row is not None and row.kind == "select" else []

    def _project(self, s: Session, key: str) -> Project:
        project = s.get(Project, key)
        if project is None:
            raise BackboneError(f"project {key} does not exist")
        return project

    def _custom_kinds(self, s: Session, project: str | None) -> dict[str, str]:
        """Custom field name -> kind, cached briefly (fields are added rarely)."""
        now = time.monotonic()
        cached = self._kinds_cache.get(project or "")
        if cached is not None and now - cached[0] < KINDS_CACHE_SECONDS:
            return cached[1]
        rows = s.exec(select(CustomField).where(CustomField.project == project)).all()
        kinds = {row.name: row.kind for row in rows}
        self._kinds_cache[project or ""] = (now, kinds)
        return kinds

    def _check_custom(self, s: Session, project: str, name: str, kind: str, value: Any) -> Any:
        if value is None:
            return None
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise TrackerRefused(f"field {name!r} expects a number, got {value!r}") from None
            return value
        if kind == "select":
            row = s.exec(
                select(CustomField).where(CustomField.project == project, CustomField.name == name)
            ).one()
            options = json.loads(row.options)
            if value not in options:
                raise TrackerRefused(f"field {name!r}: {value!r} is not one of {options}")
            return value
        return str(value)

    def _check_standard(self, name: str, value: Any) -> Any:
        if name not in STANDARD_FIELDS:
            raise TrackerRefused(f"unknown field {name!r}")
        if name == "priority" and value not in PRIORITIES:
            raise TrackerRefused(f"priority {value!r} is not one of {', '.join(PRIORITIES)}")
        if name == "labels":
            if isinstance(value, str):
                value = [part for part in value.replace(",", " ").split() if part]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TrackerRefused(f"labels expect a list of words, got {value!r}")
            return sorted(set(value))
        if name == "due_date" and value not in (None, ""):
            try:
                return date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise TrackerRefused(f"due_date expects YYYY-MM-DD, got {value!r}") from None
        if name in ("assignee", "due_date") and value == "":
            return None
        if name in ("summary", "description", "reporter") and value is None:
            return "" if name == "description" else value
        return value if value is None else str(value)
