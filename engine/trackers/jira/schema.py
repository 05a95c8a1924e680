"""What a Jira site offers a connector: its fields with their kinds, users, issue and link types,
and the conversion of field values between Jira's JSON and the protocol's plain values."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from engine.trackers.jira import adf
from engine.trackers.jira.client import JiraClient
from engine.trackers.settings import TrackerSettings

CACHE_SECONDS = 60.0
#: protocol name -> Jira field id of the standard fields
STANDARD = {
    "summary": "summary",
    "description": "description",
    "priority": "priority",
    "labels": "labels",
    "assignee": "assignee",
    "reporter": "reporter",
    "due_date": "duedate",
}
STANDARD_KINDS = {
    "summary": "text",
    "description": "text",
    "priority": "select",
    "labels": "labels",
    "assignee": "user",
    "reporter": "user",
    "due_date": "date",
}
_BY_JIRA_ID = {jira_id: name for name, jira_id in STANDARD.items()}
_USER_KINDS = ("user",)


@dataclass(frozen=True)
class FieldInfo:
    """A custom field: its id (customfield_10010), name, kind and Jira's custom type."""

    id: str
    name: str
    kind: str
    custom_type: str = ""

    @property
    def rich(self) -> bool:
        """Whether v3 holds its value as ADF (a multi-line text field)."""
        return self.custom_type.endswith(":textarea")


def own_name(settings: TrackerSettings) -> str:
    """The name the account the connector signs in as goes by in changes and user fields: the
    option `user_name`, else the login up to its "@" (a Cloud login is an e-mail address, and a
    synchronization's user is a plain name such as sync-bot)."""
    option = settings.options.get("user_name")
    return str(option) if option else settings.user.split("@", 1)[0]


def field_kind(schema: dict[str, Any]) -> str:
    """The protocol's kind (text, number, select, multiselect, labels, user, date) of a Jira field schema."""
    kind, items = schema.get("type"), schema.get("items")
    if kind == "array":
        return {"option": "multiselect", "string": "labels", "user": "users"}.get(str(items), "list")
    return {"string": "text", "number": "number", "option": "select", "priority": "select"}.get(
        str(kind), "date" if kind in ("date", "datetime") else str(kind)
    )


class JiraSchema:
    """Cached reads of a site's configuration and users, and value conversions both ways."""

    def __init__(self, client: JiraClient, settings: TrackerSettings) -> None:
        self.client = client
        self.settings = settings
        self.v3 = client.version == 3
        self.own_name = own_name(settings)
        self._myself: dict[str, Any] | None = None
        self._fields: tuple[float, dict[str, FieldInfo]] | None = None
        self._users: dict[str, str] = {}  # accountId (v3) or name (v2) -> the user's name here
        self._accounts: dict[str, dict[str, Any]] = {}  # a user's name here -> its reference for writes
        self._link_types: list[dict[str, Any]] | None = None

    def myself(self) -> dict[str, Any]:
        """The account the connector authenticates as (GET /myself, read once)."""
        if self._myself is None:
            self._myself = self.client.get("/myself")
        return self._myself

    def customs(self) -> dict[str, FieldInfo]:
        """Custom field name -> its info (GET /field, cached for a minute)."""
        now = time.monotonic()
        if self._fields is None or now - self._fields[0] > CACHE_SECONDS:
            infos: dict[str, FieldInfo] = {}
            for field in self.client.get("/field"):
                if field.get("custom"):
                    schema = field.get("schema") or {}
                    infos[field["name"]] = FieldInfo(
                        field["id"], field["name"], field_kind(schema), str(schema.get("custom", ""))
                    )
            self._fields = (now, infos)
        return self._fields[1]

    def field_ids(self, names: list[str] | None = None) -> list[str]:
        """The Jira ids of `names` (all known fields when None)."""
        customs = self.customs()
        wanted = list(STANDARD) + list(customs) if names is None else names
        return [
            STANDARD[n] if n in STANDARD else customs[n].id for n in wanted if n in STANDARD or n in customs
        ]

    # -- users ----------------------------------------------------------------------------

    def user_name(self, user: Any) -> str:
        """The name a user goes by here: the sync account is `own_name`; others are their
        login name (v2) or their e-mail address, else their display name (v3), the same each time."""
        if not isinstance(user, dict):
            return ""
        me = self.myself()
        ident = str(user.get("accountId") if self.v3 else user.get("name") or user.get("key") or "")
        if ident and ident == str(me.get("accountId") if self.v3 else me.get("name")):
            return self.own_name
        if ident in self._users:
            return self._users[ident]
        if self.v3 and "emailAddress" not in user and ident:
            with contextlib.suppress(JiraClient.NotFound):
                user = self.client.get("/user", {"accountId": ident})
        name = str(
            (user.get("emailAddress") if self.v3 else user.get("name")) or user.get("displayName") or ""
        )
        if ident:
            self._users[ident] = name
            self._accounts[name] = {"accountId": ident} if self.v3 else {"name": ident}
        return name

    def user_by_id(self, ident: str | None) -> str | None:
        """The name here of the user a changelog item names by accountId (v3) or login (v2)."""
        if not ident:
            return None
        return self.user_name({"accountId": ident} if self.v3 else {"name": ident})

    def user_ref(self, name: str) -> dict[str, Any]:
        """The user reference Jira takes in a user field for a user's name here."""
        if name == self.own_name:
            me = self.myself()
            return {"accountId": me.get("accountId")} if self.v3 else {"name": me.get("name")}
        if name in self._accounts:
            return self._accounts[name]
        if not self.v3:
            return {"name": name}
        for user in self.client.get("/user/search", {"query": name}):
            if name in (user.get("emailAddress"), user.get("displayName")):
                self._users[str(user["accountId"])] = name
                self._accounts[name] = {"accountId": user["accountId"]}
                return self._accounts[name]
        raise JiraClient.Refused(400, f"no Jira user {name!r}")

    # -- values ---------------------------------------------------------------------------

    def to_jira(self, name: str, value: Any) -> tuple[str, Any]:
        """(Jira field id, Jira value) of a protocol field value; `Refused` for an unknown field."""
        if name in STANDARD:
            kind, rich, field_id = STANDARD_KINDS[name], name == "description", STANDARD[name]
        elif name in self.customs():
            info = self.customs()[name]
            kind, rich, field_id = info.kind, info.rich, info.id
        else:
            raise JiraClient.Refused(400, f"unknown field {name!r}")
        if value is None or value == "" and kind != "text":
            return field_id, None
        if kind == "text":
            text = str(value or "")
            return field_id, adf.from_text(text) if rich and self.v3 else text
        if kind == "select":
            return field_id, {"name": str(value)} if name == "priority" else {"value": str(value)}
        if kind == "multiselect":
            return field_id, [{"value": str(v)} for v in value]
        if kind == "user":
            return field_id, self.user_ref(str(value))
        if kind == "users":
            return field_id, [self.user_ref(str(v)) for v in value]
        if kind == "labels":
            return field_id, [str(v) for v in value]
        return field_id, value

    def from_jira(self, name: str, raw: Any) -> Any:
        """The protocol's value of a field from Jira's JSON (ADF read as text on v3)."""
        kind = STANDARD_KINDS.get(name) or self.customs()[name].kind
        rich = name == "description" or (name in self.customs() and self.customs()[name].rich)
        if kind == "text":
            if raw is None:
                return ""
            return adf.to_text(raw) if rich and self.v3 else str(raw)
        if raw is None:
            return [] if kind in ("labels", "multiselect", "users") else None
        if kind == "select":
            return raw.get("name") or raw.get("value") if isinstance(raw, dict) else raw
        if kind == "multiselect":
            return [v.get("value") for v in raw if isinstance(v, dict)]
        if kind == "user":
            return self.user_name(raw)
        if kind == "users":
            return [self.user_name(v) for v in raw]
        return raw

    def changelog_item(self, item: dict[str, Any]) -> tuple[str, Any, Any] | None:
        """(protocol name, old, new) of one changelog item; None for one the protocol does not carry."""
        field_id = str(item.get("fieldId") or item.get("field") or "")
        if field_id in ("status", "issuetype"):
            name = "issue_type" if field_id == "issuetype" else "status"
            return name, item.get("fromString"), item.get("toString")
        if field_id in _BY_JIRA_ID or item.get("field") in _BY_JIRA_ID:
            name = _BY_JIRA_ID.get(field_id) or _BY_JIRA_ID[str(item.get("field"))]
            kind = STANDARD_KINDS[name]
        elif item.get("fieldtype") == "custom" and item.get("field") in self.customs():
            name = str(item["field"])
            kind = self.customs()[name].kind
        else:
            return None  # attachments, links and parents are read from the issue itself
        if kind == "user":
            return name, self.user_by_id(item.get("from")), self.user_by_id(item.get("to"))
        old, new = item.get("fromString"), item.get("toString")
        if kind == "date":
            old, new = item.get("from") or old, item.get("to") or new
        if kind in ("labels", "multiselect"):
            split = " " if kind == "labels" else ","
            return name, _split(old, split), _split(new, split)
        if kind == "number":
            return name, _number(old), _number(new)
        return name, old or (None if kind != "text" else ""), new or (None if kind != "text" else "")

    def link_types(self) -> list[dict[str, Any]]:
        """The site's issue link types (GET /issueLinkType, read once)."""
        if self._link_types is None:
            self._link_types = list(self.client.get("/issueLinkType").get("issueLinkTypes") or [])
        return self._link_types

    def link_type(self, kind: str) -> dict[str, Any]:
        """The link type a protocol link kind names: by name, outward or inward text, any case."""
        wanted = kind.strip().lower()
        for link_type in self.link_types():
            names = {str(link_type.get(k, "")).lower() for k in ("name", "outward", "inward")}
            if wanted in names or wanted.rstrip("s") in {n.rstrip("s") for n in names}:
                return link_type
        raise JiraClient.Refused(400, f"no issue link type {kind!r}")


def link_kind(link_type: dict[str, Any]) -> str:
    """The protocol's kind of a Jira link type: its name in lower case (relates, blocks, ...)."""
    return str(link_type.get("name", "relates")).lower()


def _split(text: Any, separator: str) -> list[str]:
    return [part.strip() for part in str(text or "").split(separator) if part.strip()]


def _number(text: Any) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except (TypeError, ValueError):
        return None
