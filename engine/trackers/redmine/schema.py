"""What a Redmine offers, looked up once and cached: trackers, statuses, priorities, custom fields
and users (ids to names and logins), and the two marker custom fields the connector writes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engine.errors import TrackerRefused
from engine.trackers.redmine.client import RedmineClient

SYNC_MARKER_FIELD = "Backbone sync marker"  # on an issue: the pair id it was created for
WRITE_MARKER_FIELD = "Backbone write marker"  # set with each comment/attachment: the message id
MARKER_FIELDS = frozenset({SYNC_MARKER_FIELD, WRITE_MARKER_FIELD})
CACHE_SECONDS = 60.0
KINDS = {
    "string": "text",
    "text": "text",
    "link": "text",
    "int": "number",
    "float": "number",
    "list": "select",
    "enumeration": "select",
    "bool": "select",
    "user": "user",
    "version": "select",
    "date": "date",
}


@dataclass
class CustomField:
    """One issue custom field; `kind` is "text" when the sync user may not read the definitions."""

    id: int
    name: str
    kind: str = "text"
    options: list[str] = field(default_factory=list)
    multiple: bool = False


class RedmineSchema:
    """Cached lookups through one client; names are matched exactly as Redmine spells them."""

    def __init__(self, client: RedmineClient, options: dict[str, Any]) -> None:
        self.client = client
        self.options = options
        self._named: dict[str, tuple[float, dict[str, int]]] = {}
        self._fields: dict[int, CustomField] = {}
        self._fields_read = -CACHE_SECONDS
        self._fields_from_definitions = False
        self._logins: dict[int, str] = {}
        self._user_ids: dict[str, int] = {}
        self._me: dict[str, Any] | None = None

    # -- named things: trackers, statuses, priorities -------------------------------------------

    def _names(self, what: str) -> dict[str, int]:
        cached = self._named.get(what)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        path, key = {
            "trackers": ("/trackers.json", "trackers"),
            "statuses": ("/issue_statuses.json", "issue_statuses"),
            "priorities": ("/enumerations/issue_priorities.json", "issue_priorities"),
        }[what]
        names = {str(item["name"]): int(item["id"]) for item in self.client.get(path).get(key, [])}
        self._named[what] = (time.monotonic(), names)
        return names

    def name_of(self, what: str, value: Any) -> str | None:
        """The name of tracker/status/priority id `value` (None for None or an unknown id)."""
        if value in (None, ""):
            return None
        wanted = int(value)
        return next((name for name, i in self._names(what).items() if i == wanted), str(value))

    def id_of(self, what: str, name: str) -> int:
        """The id of tracker/status/priority `name`; TrackerRefused naming the choices."""
        names = self._names(what)
        if name not in names:
            self._named.pop(what, None)
            names = self._names(what)
        if name not in names:
            raise TrackerRefused(f"Redmine has no {what[:-1]} {name!r}; expected one of {', '.join(names)}")
        return names[name]

    def statuses(self) -> list[str]:
        return list(self._names("statuses"))

    # -- custom fields --------------------------------------------------------------------------

    def custom_fields(self, sample: list[dict[str, Any]] | None = None) -> dict[int, CustomField]:
        """Issue custom fields by id: the definitions (admin), else those seen on issues."""
        if time.monotonic() - self._fields_read > CACHE_SECONDS:
            try:
                listing = self.client.get("/custom_fields.json").get("custom_fields", [])
            except RedmineClient.AuthFailed:
                listing = None
            if listing is not None:
                self._fields_from_definitions = True
                self._fields = {}
                for item in listing:
                    if item.get("customized_type") != "issue":
                        continue
                    options = [str(v.get("value")) for v in item.get("possible_values") or []]
                    kind = KINDS.get(str(item.get("field_format")), "text")
                    if item.get("field_format") == "bool" and not options:
                        options = ["0", "1"]
                    self._fields[int(item["id"])] = CustomField(
                        int(item["id"]), str(item["name"]), kind, options, bool(item.get("multiple"))
                    )
            self._fields_read = time.monotonic()
        if not self._fields_from_definitions:
            for value in sample or []:
                if int(value["id"]) not in self._fields:
                    self._fields[int(value["id"])] = CustomField(
                        int(value["id"]), str(value["name"]), multiple=bool(value.get("multiple"))
                    )
        return self._fields

    @property
    def knows_definitions(self) -> bool:
        """Whether the fields come from Redmine's definitions (else from issues seen)."""
        self.custom_fields()
        return self._fields_from_definitions

    def field_by_name(
        self, name: str, sample: list[dict[str, Any]] | None = None, project: str | None = None
    ) -> CustomField | None:
        """The custom field `name`; without the definitions, an issue of `project` shows its id."""
        found = next((f for f in self.custom_fields(sample).values() if f.name == name), None)
        if found is None and project is not None and not self._fields_from_definitions:
            page = self.client.get("/issues.json", {"project_id": project, "status_id": "*", "limit": 1})
            issues = page.get("issues") or []
            if issues:
                found = self.field_by_name(name, issues[0].get("custom_fields"))
        return found

    def marker_field_id(self, name: str, project: str | None = None) -> int | None:
        """The id of a marker custom field: from the options, the definitions or an issue's fields."""
        option = self.options.get(
            "sync_marker_field_id" if name == SYNC_MARKER_FIELD else "write_marker_field_id"
        )
        if isinstance(option, int):
            return option
        found = self.field_by_name(name, project=project)
        return None if found is None else found.id

    # -- users ----------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """The API key's own user (with its memberships)."""
        if self._me is None:
            self._me = self.client.get("/users/current.json", {"include": "memberships"}).get("user", {})
            self._logins[int(self._me["id"])] = str(self._me["login"])
            self._user_ids[str(self._me["login"])] = int(self._me["id"])
        return self._me

    def login_of(self, user: dict[str, Any] | None) -> str:
        """The login of a `{"id", "name"}` reference (its name when Redmine hides the user)."""
        if not user:
            return ""
        user_id = int(user["id"])
        if user_id not in self._logins:
            try:
                found = self.client.get(f"/users/{user_id}.json").get("user", {})
                self._logins[user_id] = str(found.get("login") or user.get("name", user_id))
            except RedmineClient.Refused:  # a group, a locked or an invisible user
                self._logins[user_id] = str(user.get("name", user_id))
            self._user_ids.setdefault(self._logins[user_id], user_id)
        return self._logins[user_id]

    def login_of_id(self, value: Any) -> str | None:
        return None if value in (None, "") else self.login_of({"id": int(value), "name": str(value)})

    def user_id(self, login: str, project: str | None = None) -> int:
        """The id of the user with `login`: from what was seen, the admin listing or the members."""
        if login in self._user_ids:
            return self._user_ids[login]
        try:
            for user in self.client.get("/users.json", {"name": login, "limit": 100}).get("users", []):
                self._user_ids[str(user["login"])] = int(user["id"])
                self._logins[int(user["id"])] = str(user["login"])
        except RedmineClient.AuthFailed:
            if project is not None:
                for member in self.client.pages(f"/projects/{project}/memberships.json", "memberships", {}):
                    if "user" in member:
                        self.login_of(member["user"])
        if login not in self._user_ids:
            raise TrackerRefused(f"Redmine has no user with the login {login!r} that the sync user can see")
        return self._user_ids[login]
