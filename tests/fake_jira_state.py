"""The state of the fake Jira (`fake_jira.py`): users, projects, issues with their changelog,
comments, attachments and links, the JSON Jira shows them as (v2 or v3), and the writes."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.trackers.jira import adf
from engine.trackers.settings import TrackerSettings

SITE = "https://your-domain.atlassian.net"  # the spec's server, so paths match it
START = datetime(2026, 12, 1, 11, 58, 30, tzinfo=UTC)
STATUSES = {"To Do": "1", "In Progress": "3", "In Review": "4", "Done": "5"}
#: (id, from, to): a workflow with no shortcut from To Do to Done
TRANSITIONS = [
    ("11", "To Do", "In Progress"),
    ("12", "In Progress", "To Do"),
    ("21", "In Progress", "In Review"),
    ("22", "In Review", "In Progress"),
    ("31", "In Review", "Done"),
    ("41", "Done", "To Do"),
]
ISSUE_TYPES = {
    "Bug": ("10001", False),
    "Task": ("10002", False),
    "Story": ("10004", False),
    "Sub-task": ("10003", True),
}
PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
SEVERITY = {"Minor": "10100", "Major": "10101", "Critical": "10102"}
CUSTOM = {  # id -> (name, schema)
    "customfield_10010": ("Severity", {"type": "option", "custom": "jira:select", "customId": 10010}),
    "customfield_10011": ("Story points", {"type": "number", "custom": "jira:float", "customId": 10011}),
    "customfield_10012": ("Notes", {"type": "string", "custom": "jira:textarea", "customId": 10012}),
}
LINK_TYPES = [
    {"id": "10000", "name": "Relates", "inward": "relates to", "outward": "relates to"},
    {"id": "10001", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
]
PERMISSION_KEYS = (
    "BROWSE_PROJECTS",
    "CREATE_ISSUES",
    "EDIT_ISSUES",
    "ADD_COMMENTS",
    "CREATE_ATTACHMENTS",
    "TRANSITION_ISSUES",
)


_ID_SEGMENT = re.compile(r"/(?:\d+|[A-Z][A-Z0-9]*-\d+)(?=/|$)")


def route_of(path: str) -> str:
    """A request path with its issue, comment and attachment ids as `{id}`."""
    return _ID_SEGMENT.sub("/{id}", path)


@dataclass
class FakeUser:
    account_id: str
    name: str
    display_name: str
    email: str | None
    password: str = ""
    time_zone: str = "Europe/Berlin"


@dataclass
class FakeIssue:
    id: str
    key: str
    project: str
    issue_type: str
    status: str
    values: dict[str, Any]  # Jira field id -> value as stored (plain text for rich text)
    creator: FakeUser
    created: datetime
    updated: datetime
    parent_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    changelog: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)  # {"id", "type", "target"}


class Answer(Exception):
    """An error answer from a route."""

    def __init__(self, status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.messages, self.errors = status, messages or [], errors or {}


class JiraState:
    """A Jira site in memory; the helpers act as other users (each write moves the clock)."""

    def __init__(self, version: int = 3, *, page_size: int = 50, real_clock: bool = False) -> None:
        self.version = version
        self.page_size = page_size
        self.real_clock = real_clock  # the wall clock (a served site) or a simulated one from START
        self.now = datetime.now(UTC) if real_clock else START
        self.users: dict[str, FakeUser] = {}
        self.sync = self.add_user("557058:sync", "sync-bot", "Sync Bot", "sync-bot@example.org", "s3cret")
        self.alice = self.add_user("557058:alice", "alice", "Alice Adams", "alice@example.org", "pw")
        self.projects = {"ACME": ("10000", "Acme")}
        self.issues: dict[str, FakeIssue] = {}
        self.next_id = 10001
        self.next_number: dict[str, int] = {"ACME": 1}
        self.attachment_bytes: dict[str, bytes] = {}
        self.failures: list[tuple[int, str | None]] = []  # (status, Retry-After) answered next
        self.log: list[tuple[str, str]] = []  # (method, path without /rest/api/N)
        self.permissions = set(PERMISSION_KEYS)
        self.expand_comment_properties = True

    # -- setup and other users' actions --------------------------------------------------

    def add_user(self, account_id: str, name: str, display: str, email: str | None, pw: str = "") -> FakeUser:
        user = FakeUser(account_id, name, display, email, pw)
        self.users[account_id] = user
        return user

    def settings(self, *, secret: str = "s3cret", auth: str = "token", **options: Any) -> TrackerSettings:
        user = self.sync.email if self.version == 3 else self.sync.name
        return TrackerSettings("jira-1", "jira", SITE, self.version, auth, str(user), secret, options)

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with `status` (429, 503, 500 ...)."""
        self.failures.extend([(status, retry_after)] * times)

    def add_project(self, key: str, name: str) -> None:
        self.projects[key] = (str(10000 + len(self.projects)), name)
        self.next_number[key] = 1

    def tick(self, seconds: float = 1.0) -> datetime:
        """The time of the next write: `seconds` later on the simulated clock; on the wall clock
        now, at least a millisecond after the last write (Jira's times have milliseconds)."""
        if self.real_clock:
            self.now = max(datetime.now(UTC), self.now + timedelta(milliseconds=1))
        else:
            self.now += timedelta(seconds=seconds)
        return self.now

    def requests_to(self, path_start: str) -> int:
        return sum(1 for _, path in self.log if path.startswith(path_start))

    def route_counts(self, since: int = 0) -> Counter[str]:
        """Requests per route ("GET /issue/{id}/comment") from the `since`-th on: what a
        benchmark counts per synced change."""
        return Counter(f"{method} {route_of(path)}" for method, path in self.log[since:])

    def create_as(
        self, user: FakeUser, summary: str, issue_type: str = "Task", project: str = "ACME", **values: Any
    ) -> FakeIssue:
        body = {
            "fields": {"project": {"key": project}, "issuetype": {"name": issue_type}, "summary": summary}
        }
        body["fields"].update(values)
        return self.issues[self._create(user, body)["id"]]

    def edit_as(self, user: FakeUser, issue: FakeIssue, **values: Any) -> None:
        self._edit(user, issue, values)

    def comment_as(self, user: FakeUser, issue: FakeIssue, text: str) -> str:
        body = adf.from_text(text) if self.version == 3 else text
        return str(self._comment(user, issue, {"body": body})["id"])

    def move_as(self, user: FakeUser, issue: FakeIssue, status: str) -> None:
        self._history(
            user,
            issue,
            [self._item("status", STATUSES[issue.status], issue.status, STATUSES[status], status)],
        )
        issue.status = status

    # -- JSON shapes ---------------------------------------------------------------------

    def user_json(self, user: FakeUser | None) -> dict[str, Any] | None:
        if user is None:
            return None
        if self.version == 3:
            data: dict[str, Any] = {
                "accountId": user.account_id,
                "accountType": "atlassian",
                "active": True,
                "displayName": user.display_name,
                "self": f"{SITE}/rest/api/3/user",
            }
        else:
            data = {
                "name": user.name,
                "key": user.name,
                "displayName": user.display_name,
                "active": True,
                "self": f"{SITE}/rest/api/2/user",
            }
        if user.email:
            data["emailAddress"] = user.email
        return data

    def _user_ref(self, ref: Any) -> FakeUser | None:
        if ref is None:
            return None
        wanted = ref.get("accountId") if self.version == 3 else ref.get("name")
        for user in self.users.values():
            if wanted in ((user.account_id,) if self.version == 3 else (user.name,)):
                return user
        raise Answer(400, errors={"assignee": f"User {wanted!r} does not exist."})

    def _time(self, at: datetime) -> str:
        at = at.astimezone(UTC)
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"

    def _rich(self, text: str | None) -> Any:
        if text is None:
            return None
        return adf.from_text(text) if self.version == 3 else text

    def _plain(self, value: Any) -> str | None:
        if value is None:
            return None
        if self.version == 3:
            try:
                return adf.to_text(value)
            except adf.AdfError as exc:
                raise Answer(400, errors={"description": f"invalid ADF: {exc}"}) from exc
        if not isinstance(value, str):
            raise Answer(400, errors={"description": "Operation value must be a string"})
        return value

    def issue_json(self, issue: FakeIssue, wanted: str = "*all", properties: str = "") -> dict[str, Any]:
        v = issue.values
        status_id = STATUSES[issue.status]
        type_id, subtask = ISSUE_TYPES[issue.issue_type]
        fields: dict[str, Any] = {
            "summary": v.get("summary"),
            "description": self._rich(v.get("description")),
            "priority": {"id": PRIORITIES[v["priority"]], "name": v["priority"]}
            if v.get("priority")
            else None,
            "labels": list(v.get("labels") or []),
            "assignee": self.user_json(v.get("assignee")),
            "reporter": self.user_json(v.get("reporter")),
            "creator": self.user_json(issue.creator),
            "duedate": v.get("duedate"),
            "status": {"id": status_id, "name": issue.status, "self": f"{SITE}/status/{status_id}"},
            "issuetype": {"id": type_id, "name": issue.issue_type, "subtask": subtask},
            "project": {
                "id": self.projects[issue.project][0],
                "key": issue.project,
                "name": self.projects[issue.project][1],
            },
            "created": self._time(issue.created),
            "updated": self._time(issue.updated),
            "attachment": [self._attachment_json(a) for a in issue.attachments],
            "issuelinks": [self._link_json(link) for link in issue.links],
            "comment": {  # as Jira lists them in an issue: the first page, and how many there are
                "comments": [self._comment_json(c) for c in issue.comments[: self.page_size]],
                "maxResults": self.page_size,
                "total": len(issue.comments),
                "startAt": 0,
            },
            "customfield_10010": {"id": SEVERITY[v["customfield_10010"]], "value": v["customfield_10010"]}
            if v.get("customfield_10010")
            else None,
            "customfield_10011": v.get("customfield_10011"),
            "customfield_10012": self._rich(v.get("customfield_10012")),
        }
        if issue.parent_id:
            parent = self.issues[issue.parent_id]
            fields["parent"] = {"id": parent.id, "key": parent.key}
        if wanted not in ("*all", ""):
            names = set(wanted.split(","))
            fields = {k: val for k, val in fields.items() if k in names}
        data = {
            "id": issue.id,
            "key": issue.key,
            "self": f"{SITE}/rest/api/{self.version}/issue/{issue.id}",
            "fields": fields,
        }
        if properties:
            data["properties"] = {
                k: issue.properties[k] for k in properties.split(",") if k in issue.properties
            }
        return data

    def _attachment_json(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"],
            "filename": row["filename"],
            "size": row["size"],
            "mimeType": row["mimeType"],
            "created": self._time(row["created"]),
            "author": self.user_json(row["author"]),
            "self": f"{SITE}/rest/api/{self.version}/attachment/{row['id']}",
            "content": f"{SITE}/rest/api/{self.version}/attachment/content/{row['id']}",
        }

    def _link_json(self, link: dict[str, Any]) -> dict[str, Any]:
        other = self.issues[link["target"]]
        side = "outwardIssue" if link["outward"] else "inwardIssue"
        return {"id": link["id"], "type": link["type"], side: {"id": other.id, "key": other.key}}

    def _comment_json(self, comment: dict[str, Any], expand: str = "") -> dict[str, Any]:
        data = {
            "id": comment["id"],
            "author": self.user_json(comment["author"]),
            "body": self._rich(comment["body"]),
            "created": self._time(comment["created"]),
            "updated": self._time(comment["created"]),
            "self": f"{SITE}/rest/api/{self.version}/comment/{comment['id']}",
        }
        if "properties" in expand and self.expand_comment_properties:
            data["properties"] = [{"key": k, "value": val} for k, val in comment["properties"].items()]
        return data

    # -- changes -------------------------------------------------------------------------

    def _item(self, field_id: str, old: Any, old_text: Any, new: Any, new_text: Any) -> dict[str, Any]:
        custom = field_id in CUSTOM
        item = {
            "field": CUSTOM[field_id][0] if custom else field_id,
            "fieldtype": "custom" if custom else "jira",
            "from": old,
            "fromString": old_text,
            "to": new,
            "toString": new_text,
        }
        if self.version == 3:
            item["fieldId"] = field_id
        return {k: v for k, v in item.items() if v is not None}  # the spec's items are not nullable

    def _history(self, user: FakeUser, issue: FakeIssue, items: list[dict[str, Any]]) -> None:
        at = self.tick()
        issue.updated = at
        if items:
            entry_id = str(100000 + sum(len(i.changelog) for i in self.issues.values()) + 1)
            issue.changelog.append(
                {"id": entry_id, "author": self.user_json(user), "created": self._time(at), "items": items}
            )

    def _new_values(self, body: dict[str, Any]) -> dict[str, Any]:
        """Stored values of the fields of a create or edit body; `Answer(400)` for a bad one."""
        values: dict[str, Any] = {}
        for field_id, raw in body.items():
            if field_id in ("summary", "duedate"):
                values[field_id] = raw
            elif field_id in ("description", "customfield_10012"):
                values[field_id] = self._plain(raw)
            elif field_id == "priority":
                if raw is not None and raw.get("name") not in PRIORITIES:
                    raise Answer(400, errors={"priority": f"Priority name {raw.get('name')!r} is not valid"})
                values[field_id] = raw and raw["name"]
            elif field_id == "labels":
                values[field_id] = list(raw or [])
            elif field_id in ("assignee", "reporter"):
                values[field_id] = self._user_ref(raw)
            elif field_id == "customfield_10010":
                if raw is not None and raw.get("value") not in SEVERITY:
                    raise Answer(400, errors={field_id: f"Option value {raw.get('value')!r} is not valid"})
                values[field_id] = raw and raw["value"]
            elif field_id == "customfield_10011":
                values[field_id] = raw
            else:
                raise Answer(
                    400, errors={field_id: f"Field '{field_id}' cannot be set. It is not on the screen."}
                )
        if "summary" in values and not str(values["summary"] or "").strip():
            raise Answer(400, errors={"summary": "You must specify a summary of the issue."})
        return values

    def _text_of(self, field_id: str, value: Any) -> tuple[Any, Any]:
        """(from, fromString) of a stored value in a changelog item."""
        if value is None or value == []:
            return None, None
        if isinstance(value, FakeUser):
            return (value.account_id if self.version == 3 else value.name), value.display_name
        if field_id == "labels":
            return None, " ".join(value)
        if field_id == "priority":
            return PRIORITIES[value], value
        if field_id == "customfield_10010":
            return SEVERITY[value], value
        if field_id == "duedate":
            return value, f"{value} 00:00:00.0"
        return None, str(value)

    def _create(self, user: FakeUser, body: dict[str, Any]) -> dict[str, Any]:
        fields = dict(body.get("fields") or {})
        project = (fields.pop("project", None) or {}).get("key")
        if project not in self.projects:
            raise Answer(400, errors={"project": "valid project is required"})
        issue_type = (fields.pop("issuetype", None) or {}).get("name")
        if issue_type not in ISSUE_TYPES:
            raise Answer(400, errors={"issuetype": "The issue type selected is invalid."})
        parent = fields.pop("parent", None)
        if ISSUE_TYPES[issue_type][1] != (parent is not None):
            raise Answer(
                400, errors={"parent": "Given parent work item does not belong to appropriate hierarchy."}
            )
        if parent is not None and parent.get("id") not in self.issues:
            raise Answer(400, errors={"parent": "Could not find issue by id or key."})
        values: dict[str, Any] = {"priority": "Medium", "labels": [], "reporter": user}
        values.update(self._new_values(fields))
        if "summary" not in values:
            raise Answer(400, errors={"summary": "You must specify a summary of the issue."})
        at = self.tick()
        issue_id, number = str(self.next_id), self.next_number[project]
        self.next_id += 1
        self.next_number[project] += 1
        issue = FakeIssue(
            issue_id,
            f"{project}-{number}",
            project,
            issue_type,
            "To Do",
            values,
            user,
            at,
            at,
            parent_id=parent and parent["id"],
        )
        for prop in body.get("properties") or []:
            issue.properties[prop["key"]] = prop["value"]
        self.issues[issue_id] = issue
        return {"id": issue_id, "key": issue.key, "self": f"{SITE}/rest/api/{self.version}/issue/{issue_id}"}

    def _edit(self, user: FakeUser, issue: FakeIssue, body: dict[str, Any]) -> None:
        values = self._new_values(body)
        items = []
        for field_id, value in values.items():
            old = issue.values.get(field_id)
            if old != value:
                items.append(
                    self._item(field_id, *self._text_of(field_id, old), *self._text_of(field_id, value))
                )
                issue.values[field_id] = value
        self._history(user, issue, items)

    def _comment(self, user: FakeUser, issue: FakeIssue, body: dict[str, Any]) -> dict[str, Any]:
        text = self._plain(body.get("body"))
        if not (text or "").strip():
            raise Answer(400, errors={"comment": "Comment body can not be empty!"})
        at = self.tick()
        comment_id = str(20000 + sum(len(i.comments) for i in self.issues.values()) + 1)
        comment = {
            "id": comment_id,
            "author": user,
            "body": text,
            "created": at,
            "properties": {p["key"]: p["value"] for p in body.get("properties") or []},
        }
        issue.comments.append(comment)
        issue.updated = at
        return self._comment_json(comment)
