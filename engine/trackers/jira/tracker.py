"""`JiraTracker`: the `Tracker` protocol over Jira's REST API (Server/DC v2, Cloud v3).

Markers: a created issue and a created comment carry the entity property `backbone` =
{"marker": ...}, set in the same request that creates them, so a create repeated after a crash
finds the first one (`issue.property[backbone].marker` in JQL; the comments' properties).
Attachments (which have no properties) are matched by file name and size instead.
Authors: the account the connector signs in as goes by `schema.own_name(settings)` (the option
`user_name`, else its login up to the "@") in every change, so a synchronization whose sync user
is that name sees its own writes as echoes; other users are
their login name (v2) or their e-mail address, else display name (v3). Writes are made as that
account whatever `as_user` says (Jira does not let one account write as another)."""

from __future__ import annotations

import mimetypes
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from engine.errors import BackboneError, TrackerAuthFailed, TrackerOffline, TrackerRefused
from engine.trackers.base import AttachmentInfo, Change, CommentInfo, IssueData
from engine.trackers.jira import adf
from engine.trackers.jira.client import JiraClient
from engine.trackers.jira.detect import JiraPoller, comment_text, jql_quote, utc
from engine.trackers.jira.schema import STANDARD, STANDARD_KINDS, JiraSchema, link_kind, own_name
from engine.trackers.mirror import ChangeMirror
from engine.trackers.settings import TrackerSettings

PROPERTY = "backbone"
MAX_TRANSITION_STEPS = 12
#: the permissions synchronizing needs, each with the words Analyze shows when it is missing
PERMISSIONS = {
    "BROWSE_PROJECTS": "browse the project",
    "CREATE_ISSUES": "create issues",
    "EDIT_ISSUES": "edit issues",
    "ADD_COMMENTS": "add comments",
    "CREATE_ATTACHMENTS": "add attachments",
    "TRANSITION_ISSUES": "transition issues",
}


@contextmanager
def _mapped() -> Iterator[None]:
    """The client's errors as the engine's: offline, auth failed, refused (with Jira's reasons)."""
    try:
        yield
    except JiraClient.AuthFailed as exc:
        raise TrackerAuthFailed(f"Jira refused the credentials: {exc}") from exc
    except JiraClient.Offline as exc:
        raise TrackerOffline(f"Jira is offline: {exc}") from exc
    except (JiraClient.Refused, JiraClient.NotFound, adf.AdfError) as exc:
        raise TrackerRefused(f"Jira refused: {exc}") from exc


class JiraTracker:
    """One Jira site's projects as a tracker; its changes are read through `mirror`."""

    def __init__(
        self, settings: TrackerSettings, mirror: ChangeMirror, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.mirror = mirror
        self.client = JiraClient(settings, transport=transport)
        self.v3 = self.client.version == 3
        self.schema = JiraSchema(self.client, settings)
        self.poller = JiraPoller(self.client, self.schema, mirror)
        self._polled: dict[str, float] = {}  # project -> when it was last polled (monotonic)
        self._workflow: dict[tuple[str, str], dict[str, dict[str, str]]] = {}  # learned transitions

    def close(self) -> None:
        self.client.close()

    # -- reading --------------------------------------------------------------------------

    def is_online(self) -> bool:
        try:
            self.client.get("/myself")
        except JiraClient.AuthFailed:
            return True  # reachable; the credentials are another matter (signed_in_as)
        except JiraClient.Error:
            return False
        return True

    @property
    def account_author(self) -> str:
        """The name this account's changes carry (`schema.own_name`): they are echoes."""
        return own_name(self.settings)

    def poll_soon(self) -> None:
        """Look at every project on the next `changes_since`, due or not (a webhook said so)."""
        self._polled.clear()

    def signed_in_as(self) -> str:
        """The account the credentials belong to (v2 its login, v3 its e-mail, else its name)."""
        with _mapped():
            me = self.client.get("/myself")
        return str(me.get("name") or me.get("emailAddress") or me.get("displayName") or me.get("accountId"))

    def changes_since(self, project: str, cursor: int, limit: int) -> list[Change]:
        now = time.monotonic()
        last = self._polled.get(project)
        if last is None or now - last >= self.settings.poll_interval:
            with _mapped():
                self.poller.poll(project)
            self._polled[project] = time.monotonic()
        return self.mirror.since(project, cursor, limit)

    def poll_now(self, project: str) -> int:
        """Poll `project` at once, due or not; how many new changes were recorded."""
        with _mapped():
            added = self.poller.poll(project)
        self._polled[project] = time.monotonic()
        return added

    def _get_issue(self, issue_id: str, fields: str) -> dict[str, Any] | None:
        try:
            issue: dict[str, Any] = self.client.get(
                f"/issue/{issue_id}", {"fields": fields, "properties": PROPERTY}
            )
        except JiraClient.NotFound:
            return None
        return issue

    def read_issue(self, issue_id: str) -> IssueData | None:
        with _mapped():
            ids = self.schema.field_ids()
            extra = "status,issuetype,parent,project,created,updated,attachment,issuelinks"
            issue = self._get_issue(issue_id, ",".join(ids) + "," + extra)
            if issue is None:
                return None
            raw = issue["fields"]
            fields = {
                name: self.schema.from_jira(name, raw.get(field_id))
                for name, field_id in [
                    *STANDARD.items(),
                    *((n, i.id) for n, i in self.schema.customs().items()),
                ]
            }
            marker = ((issue.get("properties") or {}).get(PROPERTY) or {}).get("marker")
            comments = [
                CommentInfo(
                    str(c["id"]),
                    self.schema.user_name(c.get("author")),
                    comment_text(c.get("body"), self.v3),
                    utc(c["created"]),
                )
                for c in self.client.pages(f"/issue/{issue['id']}/comment", "comments")
            ]
            return IssueData(
                id=str(issue["id"]),
                key=str(issue["key"]),
                project=str(raw["project"]["key"]),
                issue_type=str(raw["issuetype"]["name"]),
                status=str(raw["status"]["name"]),
                fields=fields,
                parent_id=str(raw["parent"]["id"]) if raw.get("parent") else None,
                created=utc(raw["created"]),
                updated=utc(raw["updated"]),
                marker=str(marker) if marker else None,
                comments=comments,
                attachments=[self._attachment_info(a) for a in raw.get("attachment") or []],
                links=[
                    (link_kind(link["type"]), str(link["outwardIssue"]["id"]))
                    for link in raw.get("issuelinks") or []
                    if link.get("outwardIssue")
                ],
            )

    def _attachment_info(self, row: dict[str, Any]) -> AttachmentInfo:
        return AttachmentInfo(
            str(row["id"]),
            str(row["filename"]),
            str(row.get("mimeType") or "application/octet-stream"),
            int(row.get("size") or 0),
            self.schema.user_name(row.get("author")),
            utc(row["created"]),
        )

    def read_attachment(self, attachment_id: str) -> tuple[AttachmentInfo, bytes]:
        with _mapped():
            row = self.client.get(f"/attachment/{attachment_id}")
            return self._attachment_info(row), self.client.get_bytes(f"/attachment/content/{attachment_id}")

    def find_by_marker(self, project: str, marker: str) -> str | None:
        with _mapped():
            jql = (
                f"project = {jql_quote(project)} AND issue.property[{PROPERTY}].marker = {jql_quote(marker)}"
            )
            found = self.poller.search(jql, "summary", limit=1)
            return str(found[0]["id"]) if found else None

    def issue_types(self, project: str) -> list[str]:
        with _mapped():
            return [str(t["name"]) for t in self._issue_type_rows(project)]

    def _issue_type_rows(self, project: str) -> list[dict[str, Any]]:
        page = self.client.get(f"/issue/createmeta/{project}/issuetypes", {"maxResults": 200})
        return list(page.get("issueTypes") or page.get("values") or [])

    def statuses(self, project: str) -> list[str]:
        with _mapped():
            names: list[str] = []
            for issue_type in self.client.get(f"/project/{project}/statuses"):
                names.extend(s["name"] for s in issue_type.get("statuses") or [] if s["name"] not in names)
            return names

    def field_names(self, project: str) -> dict[str, str]:
        with _mapped():
            return {**STANDARD_KINDS, **{name: info.kind for name, info in self.schema.customs().items()}}

    def field_options(self, project: str, name: str) -> list[str]:
        """The allowed values of a select field, from the create screens of the project's issue types."""
        with _mapped():
            field_id = STANDARD.get(name) or getattr(self.schema.customs().get(name), "id", None)
            if field_id is None:
                return []
            options: list[str] = []
            for issue_type in self._issue_type_rows(project):
                page = self.client.get(
                    f"/issue/createmeta/{project}/issuetypes/{issue_type['id']}", {"maxResults": 200}
                )
                for meta in page.get("fields") or page.get("values") or []:
                    if meta.get("fieldId") != field_id:
                        continue
                    for allowed in meta.get("allowedValues") or []:
                        value = (
                            allowed.get("value") or allowed.get("name") if isinstance(allowed, dict) else None
                        )
                        if value and value not in options:
                            options.append(str(value))
            return options

    def issue_keys(self, issue_ids: list[str]) -> dict[str, str]:
        wanted = [i for i in issue_ids if i.isdigit()]
        keys: dict[str, str] = {}
        with _mapped():
            for start in range(0, len(wanted), 100):
                chunk = wanted[start : start + 100]
                for issue in self.poller.search(f"id in ({', '.join(chunk)})", "summary"):
                    keys[str(issue["id"])] = str(issue["key"])
        return keys

    def issue_key_to_id(self, key: str) -> str:
        with _mapped():
            issue = self._get_issue(key, "summary")
        if issue is None:
            raise BackboneError(f"issue {key} does not exist")
        return str(issue["id"])

    def projects(self) -> list[tuple[str, str]]:
        with _mapped():
            rows = self.client.pages("/project/search", "values") if self.v3 else self.client.get("/project")
            return [(str(p["key"]), str(p["name"])) for p in rows]

    def user_emails(self) -> dict[str, str]:
        with _mapped():
            if self.v3:
                users: Any = self.client.get("/users/search", {"maxResults": 1000})
            else:
                users = self.client.get("/user/search", {"username": ".", "maxResults": 1000})
            emails: dict[str, str] = {}
            for user in users:
                name, email = self.schema.user_name(user), user.get("emailAddress")
                if name and email:
                    emails[name] = str(email)
            return emails

    def missing_permissions(self, project: str, user: str) -> list[str]:
        """What the signed-in account may not do in `project` (Jira answers only for that account)."""
        with _mapped():
            answer = self.client.get(
                "/mypermissions", {"projectKey": project, "permissions": ",".join(PERMISSIONS)}
            )
        held = answer.get("permissions") or {}
        return [
            words for key, words in PERMISSIONS.items() if not (held.get(key) or {}).get("havePermission")
        ]

    # -- writing --------------------------------------------------------------------------

    def create_issue(
        self,
        project: str,
        issue_type: str,
        fields: dict[str, Any],
        *,
        as_user: str,
        parent_id: str | None = None,
        status: str | None = None,
        marker: str | None = None,
    ) -> str:
        if marker:
            found = self.find_by_marker(project, marker)
            if found is not None:
                return found
        with _mapped():
            body: dict[str, Any] = {
                "fields": {
                    "project": {"key": project},
                    "issuetype": {"name": issue_type},
                    **dict(self.schema.to_jira(name, value) for name, value in fields.items()),
                }
            }
            if parent_id is not None:
                body["fields"]["parent"] = {"id": parent_id}
            if marker:
                body["properties"] = [{"key": PROPERTY, "value": {"marker": marker}}]
            created = self.client.post("/issue", body)
            issue_id = str(created["id"])
        if status is not None:
            self.transition(issue_id, status, as_user=as_user)
        return issue_id

    def update_issue(self, issue_id: str, fields: dict[str, Any], *, as_user: str) -> list[str]:
        """Write the fields whose value differs (one GET, one PUT); a status goes by transition."""
        wanted = {name: value for name, value in fields.items() if name != "status"}
        changed: list[str] = []
        with _mapped():
            if wanted:
                issue = self._get_issue(issue_id, ",".join(self.schema.field_ids(list(wanted))))
                if issue is None:
                    raise TrackerRefused(f"issue {issue_id} does not exist")
                writes: dict[str, Any] = {}
                for name, value in wanted.items():
                    field_id, jira_value = self.schema.to_jira(name, value)
                    if self.schema.from_jira(name, issue["fields"].get(field_id)) != _plain(name, value):
                        writes[field_id] = jira_value
                        changed.append(name)
                if writes:
                    self.client.put(f"/issue/{issue_id}", {"fields": writes})
        if "status" in fields and self.transition(issue_id, str(fields["status"]), as_user=as_user):
            changed.append("status")
        return changed

    def add_comment(self, issue_id: str, body: str, *, as_user: str, marker: str | None = None) -> str:
        with _mapped():
            if marker:
                found = self._comment_with_marker(issue_id, marker)
                if found is not None:
                    return found
            if not body.strip():
                raise TrackerRefused("a comment must not be empty")
            payload: dict[str, Any] = {"body": adf.from_text(body) if self.v3 else body}
            if marker:
                payload["properties"] = [{"key": PROPERTY, "value": {"marker": marker}}]
            return str(self.client.post(f"/issue/{issue_id}/comment", payload)["id"])

    def _comment_with_marker(self, issue_id: str, marker: str) -> str | None:
        """The comment of the issue that carries `marker` in its `backbone` property."""
        for comment in self.client.pages(f"/issue/{issue_id}/comment", "comments", {"expand": "properties"}):
            properties = comment.get("properties")
            if properties is None:  # a Jira that does not expand them: ask the comment itself
                if self.schema.user_name(comment.get("author")) != self.schema.own_name:
                    continue
                try:
                    value = self.client.get(f"/comment/{comment['id']}/properties/{PROPERTY}").get("value")
                except JiraClient.NotFound:
                    continue
            else:
                value = next((p.get("value") for p in properties if p.get("key") == PROPERTY), None)
            if isinstance(value, dict) and value.get("marker") == marker:
                return str(comment["id"])
        return None

    def add_attachment(
        self,
        issue_id: str,
        filename: str,
        content: bytes,
        *,
        as_user: str,
        media_type: str | None = None,
        marker: str | None = None,
    ) -> str:
        """Attach a file unless one with its name and size is there (attachments carry no marker)."""
        if not filename or any(c in filename for c in "/\\\x00") or filename in (".", ".."):
            raise TrackerRefused(f"attachment name {filename!r} is not a plain file name")
        with _mapped():
            issue = self._get_issue(issue_id, "attachment")
            if issue is None:
                raise TrackerRefused(f"issue {issue_id} does not exist")
            for row in issue["fields"].get("attachment") or []:
                if row.get("filename") == filename and int(row.get("size") or -1) == len(content):
                    return str(row["id"])
            kind = media_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
            rows = self.client.upload(f"/issue/{issue_id}/attachments", filename, content, kind)
            return str(rows[0]["id"])

    def transition(self, issue_id: str, status: str, *, as_user: str) -> bool:
        """Move the issue to `status` by the shortest path through the transitions learned so far.

        Jira shows only the transitions out of an issue's current status, so the connector learns
        the workflow as it goes (per project and issue type) and, while the target is not yet
        reachable in what it knows, steps towards the nearest status it has not seen the way out of."""
        with _mapped():
            issue = self._get_issue(issue_id, "status,issuetype,project")
            if issue is None:
                raise TrackerRefused(f"issue {issue_id} does not exist")
            raw = issue["fields"]
            current = str(raw["status"]["name"])
            if current == status:
                return False
            graph = self._workflow.setdefault((str(raw["project"]["key"]), str(raw["issuetype"]["name"])), {})
            for _ in range(MAX_TRANSITION_STEPS):
                answer = self.client.get(f"/issue/{issue_id}/transitions")
                graph[current] = {str(t["to"]["name"]): str(t["id"]) for t in answer.get("transitions") or []}
                step = _next_status(graph, current, status)
                if step is None:
                    raise TrackerRefused(f"no workflow path from {current!r} to {status!r}")
                self.client.post(
                    f"/issue/{issue_id}/transitions", {"transition": {"id": graph[current][step]}}
                )
                current = step
                if current == status:
                    return True
            raise TrackerRefused(
                f"no workflow path from {current!r} to {status!r} within {MAX_TRANSITION_STEPS} steps"
            )

    def add_link(
        self, source_id: str, target_id: str, kind: str, *, as_user: str, marker: str | None = None
    ) -> str:
        """Link `source_id` to `target_id` unless a link of that type joins them already."""
        with _mapped():
            link_type = self.schema.link_type(kind)
            found = self._link(source_id, target_id, link_type)
            if found is not None:
                return found
            self.client.post(
                "/issueLink",
                {
                    "type": {"name": link_type["name"]},
                    "inwardIssue": {"id": source_id},
                    "outwardIssue": {"id": target_id},
                },
            )
            found = self._link(source_id, target_id, link_type)
            if found is None:
                raise TrackerRefused(f"Jira did not keep the link from {source_id} to {target_id}")
            return found

    def _link(self, source_id: str, target_id: str, link_type: dict[str, Any]) -> str | None:
        issue = self._get_issue(source_id, "issuelinks")
        if issue is None:
            raise TrackerRefused(f"issue {source_id} does not exist")
        for link in issue["fields"].get("issuelinks") or []:
            outward = link.get("outwardIssue") or {}
            if str(outward.get("id")) == target_id and link["type"].get("name") == link_type.get("name"):
                return str(link["id"])
        return None


def _plain(name: str, value: Any) -> Any:
    """A protocol value as `from_jira` would read it back (for the compare-first write)."""
    if value is None and STANDARD_KINDS.get(name) == "text":
        return ""
    if value is None and STANDARD_KINDS.get(name) == "labels":
        return []
    return value


def _next_status(graph: dict[str, dict[str, str]], current: str, target: str) -> str | None:
    """The first step from `current` on the shortest known path to `target`, or else to the nearest
    status whose way out is not known yet; None when neither exists."""
    previous: dict[str, str | None] = {current: None}
    queue = deque([current])
    frontier: str | None = None
    while queue:
        status = queue.popleft()
        if status == target:
            frontier = target
            break
        if status not in graph:
            frontier = frontier or status
            continue
        for nxt in graph[status]:
            if nxt not in previous:
                previous[nxt] = status
                queue.append(nxt)
    if frontier is None:
        return None
    node = frontier
    while previous[node] != current:
        parent = previous[node]
        assert parent is not None
        node = parent
    return node
