"""`RedmineTracker`: the `Tracker` protocol over Redmine's REST API (see the package docstring)."""

from __future__ import annotations

import math
import mimetypes
import time
from datetime import timedelta
from typing import Any

import httpx

from engine.errors import BackboneError, TrackerOffline, TrackerRefused
from engine.trackers.base import AttachmentInfo, Change, CommentInfo, IssueData, utcnow
from engine.trackers.mirror import ChangeMirror, RemoteChangeIn
from engine.trackers.redmine.changes import ChangeReader, issue_key, link_of, parse_time
from engine.trackers.redmine.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, RedmineClient
from engine.trackers.redmine.schema import (
    MARKER_FIELDS,
    SYNC_MARKER_FIELD,
    WRITE_MARKER_FIELD,
    CustomField,
    RedmineSchema,
)
from engine.trackers.redmine.text import check_format, to_plain, to_redmine
from engine.trackers.settings import TrackerSettings

OVERLAP_SECONDS = 5  # updated_on has second resolution and a write may commit late
PAGE_SIZE = 100
RELATION_SWEEP_SECONDS = 60.0  # relations change no issue's updated_on: they are listed this often
FULL = "journals,attachments,relations,children"
STANDARD_KINDS = {
    "summary": "text",
    "description": "text",
    "priority": "select",
    "assignee": "user",
    "reporter": "user",
    "due_date": "date",
}
#: Redmine permission -> what synchronizing needs it for, in words
NEEDED_PERMISSIONS = {
    "view_issues": "browse issues",
    "add_issues": "create issues",
    "edit_issues": "edit issues (fields, transitions, attachments)",
    "add_issue_notes": "comment",
    "manage_issue_relations": "link issues",
    "manage_subtasks": "manage sub-tasks",
}


def _plain_filename(filename: str) -> bool:
    return bool(filename) and not any(c in filename for c in "/\\\x00") and filename not in (".", "..")


class RedmineTracker:
    """One Redmine reached with the sync user's API key; writes are made as that user."""

    #: what `missing_permissions` cannot see over REST
    UNCHECKED = ("the workflow's transitions (Redmine does not publish them over REST)",)

    def __init__(
        self, settings: TrackerSettings, mirror: ChangeMirror, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.mirror = mirror
        options = settings.options
        self.client = RedmineClient(
            settings.url,
            settings.secret,
            transport=transport,
            timeout=float(options.get("timeout", DEFAULT_TIMEOUT)),
            retries=int(options.get("retries", DEFAULT_RETRIES)),
        )
        self.schema = RedmineSchema(self.client, options)
        self.formatting = check_format(options.get("text_formatting"))
        self.reader = ChangeReader(self.schema, self.formatting)
        self.overlap = timedelta(seconds=float(options.get("poll_overlap", OVERLAP_SECONDS)))
        self.relation_sweep = float(options.get("relation_sweep", RELATION_SWEEP_SECONDS))
        self._polled: dict[str, float] = {}
        self._identifiers: dict[int, str] = {}

    def close(self) -> None:
        self.client.close()

    # -- reading ----------------------------------------------------------------------------

    def _issue(self, issue_id: str, include: str = FULL) -> dict[str, Any]:
        """An issue's JSON; `TrackerRefused` when it does not exist."""
        if not str(issue_id).isdigit():
            raise TrackerRefused(f"issue {issue_id} does not exist")
        found: dict[str, Any] = self.client.get(f"/issues/{issue_id}.json", {"include": include})["issue"]
        return found

    def _identifier(self, project: dict[str, Any]) -> str:
        project_id = int(project["id"])
        if project_id not in self._identifiers:
            found = self.client.get(f"/projects/{project_id}.json").get("project", {})
            self._identifiers[project_id] = str(found.get("identifier", project_id))
        return self._identifiers[project_id]

    def _custom_value(self, cf: CustomField | None, value: Any) -> Any:
        if value in ("", None, []):
            return None
        if isinstance(value, list):
            return [self._custom_value(cf, v) for v in value]
        kind = cf.kind if cf else "text"
        if kind == "user":
            return self.schema.login_of_id(value)
        if kind == "number":
            try:
                number = float(value)
            except ValueError:
                return value
            return int(number) if number.is_integer() and "." not in str(value) else number
        return value

    def _fields(self, issue: dict[str, Any]) -> dict[str, Any]:
        """The issue's fields by the protocol's names, custom fields by their names (no markers)."""
        fields: dict[str, Any] = {
            "summary": issue.get("subject") or "",
            "description": to_plain(issue.get("description"), self.formatting),
            "priority": (issue.get("priority") or {}).get("name"),
            "assignee": self.schema.login_of(issue["assigned_to"]) if issue.get("assigned_to") else None,
            "reporter": self.schema.login_of(issue.get("author")) or None,
            "due_date": issue.get("due_date"),
        }
        known = self.schema.custom_fields(issue.get("custom_fields"))
        for value in issue.get("custom_fields") or []:
            if value["name"] not in MARKER_FIELDS:
                fields[str(value["name"])] = self._custom_value(
                    known.get(int(value["id"])), value.get("value")
                )
        return fields

    def _marker(self, issue: dict[str, Any], name: str) -> str | None:
        value = next((v.get("value") for v in issue.get("custom_fields") or [] if v["name"] == name), None)
        return str(value) if value else None

    def read_issue(self, issue_id: str) -> IssueData | None:
        try:
            issue = self._issue(issue_id)
        except RedmineClient.NotFound:
            return None
        except TrackerRefused:
            return None
        project = self._identifier(issue["project"])
        data = IssueData(
            id=str(issue["id"]),
            key=issue_key(project, issue["id"]),
            project=project,
            issue_type=str(issue["tracker"]["name"]),
            status=str(issue["status"]["name"]),
            fields=self._fields(issue),
            parent_id=str(issue["parent"]["id"]) if issue.get("parent") else None,
            created=parse_time(issue["created_on"]),
            updated=parse_time(issue["updated_on"]),
            marker=self._marker(issue, SYNC_MARKER_FIELD),
        )
        data.comments = [
            CommentInfo(
                str(j["id"]),
                self.schema.login_of(j.get("user")),
                to_plain(j["notes"], self.formatting),
                parse_time(j["created_on"]),
            )
            for j in issue.get("journals") or []
            if (j.get("notes") or "").strip()
        ]
        data.attachments = [self._attachment_info(a) for a in issue.get("attachments") or []]
        data.links = [link_of(int(issue["id"]), r) for r in issue.get("relations") or []]
        return data

    def _attachment_info(self, a: dict[str, Any]) -> AttachmentInfo:
        return AttachmentInfo(
            str(a["id"]),
            str(a["filename"]),
            str(a.get("content_type") or "application/octet-stream"),
            int(a.get("filesize") or 0),
            self.schema.login_of(a.get("author")),
            parse_time(a["created_on"]),
        )

    def read_attachment(self, attachment_id: str) -> tuple[AttachmentInfo, bytes]:
        found = self.client.get(f"/attachments/{int(attachment_id)}.json")["attachment"]
        return self._attachment_info(found), self.client.download(str(found["content_url"]))

    # -- change detection ---------------------------------------------------------------------

    def changes_since(self, project: str, cursor: int, limit: int) -> list[Change]:
        now = time.monotonic()
        if now - self._polled.get(project, -math.inf) >= self.settings.poll_interval:
            self.poll(project)
            self._polled[project] = time.monotonic()
        return self.mirror.since(project, cursor, limit)

    def poll(self, project: str) -> int:
        """Ask Redmine once what changed in `project` and record it; how many changes were new.

        One page of issues is read per poll, oldest update first, and the cursor moves to the
        last issue read: paging on while issues change would skip some. Adding or removing a
        relation journals both issues but leaves their `updated_on` as it was, so every
        `relation_sweep` seconds (default 60) the project's relations are listed too (one request
        per 100 issues) and the issues whose relations changed are read like changed ones."""
        state = self.mirror.cursor(project)
        seen: dict[str, str] = dict(state.get("seen") or {})
        relations: dict[str, list[int]] = dict(state.get("relations") or {})
        issues = self._changed(project, state, seen)
        swept = float(state.get("swept") or 0.0)
        if time.time() - swept >= self.relation_sweep:
            listed = {str(i["id"]) for i in issues}
            issues += [i for i in self._relations_changed(project, relations) if str(i["id"]) not in listed]
            swept = time.time()
        found: list[tuple[Any, int, RemoteChangeIn]] = []
        newest = state.get("updated_on")
        for number, listed_issue in enumerate(issues):
            issue_id = str(listed_issue["id"])
            try:
                issue = self._issue(issue_id)
            except RedmineClient.NotFound:  # deleted since it was listed
                relations.pop(issue_id, None)
                continue
            for at, order, change in self.reader.changes(project, issue):
                found.append((at, number * 100_000 + order, change))
            _remember_relations(relations, issue)
            updated = str(issue["updated_on"])
            seen[issue_id] = updated
            if newest is None or parse_time(updated) > parse_time(str(newest)):
                newest = updated
        if newest is not None:
            keep_from = parse_time(str(newest)) - self.overlap
            seen = {i: at for i, at in seen.items() if parse_time(at) >= keep_from}
        found.sort(key=lambda item: (item[0], item[1]))
        cursor = {"updated_on": newest, "seen": seen, "relations": relations, "swept": swept}
        return self.mirror.record(project, [change for _, _, change in found], cursor)

    def _changed(self, project: str, state: dict[str, Any], seen: dict[str, str]) -> list[dict[str, Any]]:
        """The issues listed as updated since the cursor (less the overlap) not read yet."""
        params: dict[str, Any] = {
            "project_id": project,
            "subproject_id": "!*",
            "status_id": "*",
            "sort": "updated_on,id",
            "limit": PAGE_SIZE,
        }
        if state.get("updated_on"):
            start = parse_time(str(state["updated_on"])) - self.overlap
            params["updated_on"] = ">=" + start.strftime("%Y-%m-%dT%H:%M:%SZ")
        offset, issues = 0, []
        while True:
            page = self.client.get("/issues.json", {**params, "offset": offset})
            batch = page.get("issues") or []
            # updated_on has second resolution: an issue changed within the overlap may have
            # changed again in the same second, so it is read again (the mirror drops repeats)
            recent = utcnow() - self.overlap
            fresh = [
                i
                for i in batch
                if seen.get(str(i["id"])) != i["updated_on"] or parse_time(str(i["updated_on"])) >= recent
            ]
            issues.extend(fresh)
            offset += len(batch)
            # a page of issues read already (the overlap) says nothing: look at the next one
            if fresh or not batch or offset >= int(page.get("total_count", 0)):
                return issues

    def _relations_changed(self, project: str, relations: dict[str, list[int]]) -> list[dict[str, Any]]:
        """The project's issues whose relations differ from those last read (`relations`:
        issue id -> its relation ids, issues without relations left out)."""
        listed = self.client.pages(
            "/issues.json",
            "issues",
            {
                "project_id": project,
                "subproject_id": "!*",
                "status_id": "*",
                "include": "relations",
                "sort": "id",
            },
        )
        return [
            issue
            for issue in listed
            if sorted(int(r["id"]) for r in issue.get("relations") or [])
            != relations.get(str(issue["id"]), [])
        ]

    # -- writing ------------------------------------------------------------------------------

    def _write_values(self, project: str, fields: dict[str, Any], sample: Any = None) -> dict[str, Any]:
        """Redmine's issue attributes for protocol field values; TrackerRefused for unknown names."""
        out: dict[str, Any] = {}
        custom: list[dict[str, Any]] = []
        for name, value in fields.items():
            if name == "summary":
                out["subject"] = "" if value is None else str(value)
            elif name == "description":
                out["description"] = "" if value is None else to_redmine(str(value), self.formatting)
            elif name == "priority":
                out["priority_id"] = self.schema.id_of("priorities", str(value))
            elif name == "assignee":
                out["assigned_to_id"] = self.schema.user_id(str(value), project) if value else ""
            elif name == "due_date":
                out["due_date"] = value or ""
            elif name == "issue_type":
                out["tracker_id"] = self.schema.id_of("trackers", str(value))
            elif name == "reporter":
                raise TrackerRefused("Redmine sets an issue's author itself (reporter cannot be written)")
            else:
                cf = self.schema.field_by_name(name, sample, project)
                if cf is None or name in MARKER_FIELDS:
                    raise TrackerRefused(f"Redmine has no issue field {name!r} in {project}")
                custom.append({"id": cf.id, "value": self._custom_write(cf, value, project)})
        if custom:
            out["custom_fields"] = custom
        return out

    def _custom_write(self, cf: CustomField, value: Any, project: str) -> Any:
        if isinstance(value, list):
            return [self._custom_write(cf, v, project) for v in value]
        if value is None:
            return ""
        if cf.kind == "user":
            return str(self.schema.user_id(str(value), project))
        return str(value)

    def find_by_marker(self, project: str, marker: str) -> str | None:
        field_id = self.schema.marker_field_id(SYNC_MARKER_FIELD, project)
        if field_id is None:
            return None
        page = self.client.get(
            "/issues.json", {"project_id": project, "status_id": "*", f"cf_{field_id}": marker, "limit": 1}
        )
        issues = page.get("issues") or []
        return str(issues[0]["id"]) if issues else None

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
        body: dict[str, Any] = {
            "project_id": project,
            "tracker_id": self.schema.id_of("trackers", issue_type),
        }
        deferred: dict[str, Any] = {}
        try:
            body.update(self._write_values(project, fields))
        except TrackerRefused:
            if self.schema.knows_definitions:
                raise
            # custom field ids show on an issue: set those fields once the issue exists
            deferred = {k: v for k, v in fields.items() if k not in STANDARD_KINDS and k != "issue_type"}
            body.update(self._write_values(project, {k: v for k, v in fields.items() if k not in deferred}))
        if parent_id is not None:
            body["parent_issue_id"] = int(parent_id)
        if status is not None:
            body["status_id"] = self.schema.id_of("statuses", status)
        marker_id = self.schema.marker_field_id(SYNC_MARKER_FIELD, project) if marker else None
        if marker and marker_id is not None:
            body.setdefault("custom_fields", []).append({"id": marker_id, "value": marker})
        created = self.client.post("/issues.json", {"issue": body})["issue"]
        new_id = str(created["id"])
        if marker and marker_id is None:
            # the field's id is known only now (a sync user that may not read the definitions)
            marker_id = self.schema.marker_field_id(SYNC_MARKER_FIELD, project)
            if marker_id is not None:
                self.client.put(
                    f"/issues/{new_id}.json",
                    {"issue": {"custom_fields": [{"id": marker_id, "value": marker}]}},
                )
        if deferred:
            self.schema.custom_fields(created.get("custom_fields"))
            self.update_issue(new_id, deferred, as_user=as_user)
        if status is not None and created["status"]["name"] != status:
            self.transition(new_id, status, as_user=as_user)
        return new_id

    def update_issue(self, issue_id: str, fields: dict[str, Any], *, as_user: str) -> list[str]:
        issue = self._issue(issue_id, "")
        current = self._fields(issue)
        current["issue_type"] = issue["tracker"]["name"]
        wanted = {
            name: value
            for name, value in fields.items()
            if _normal(current.get(name, _MISSING)) != _normal(value)
        }
        if not wanted:
            return []
        project = self._identifier(issue["project"])
        body = self._write_values(project, wanted, issue.get("custom_fields"))
        if body.get("subject") == "":
            raise TrackerRefused("summary must not be empty")
        self.client.put(f"/issues/{issue_id}.json", {"issue": body})
        return list(wanted)

    def _journal_with_marker(self, issue: dict[str, Any], marker: str) -> dict[str, Any] | None:
        """The journal whose write-marker detail carries `marker`."""
        names = {int(v["id"]): v["name"] for v in issue.get("custom_fields") or []}
        for journal in issue.get("journals") or []:
            for detail in journal.get("details") or []:
                if (
                    detail.get("property") == "cf"
                    and names.get(int(detail["name"])) == WRITE_MARKER_FIELD
                    and detail.get("new_value") == marker
                ):
                    return dict(journal)
        return None

    def _marked(self, issue: dict[str, Any], marker: str | None) -> list[dict[str, Any]]:
        """The custom field value that marks a write with `marker` ([] without one)."""
        if not marker:
            return []
        field_id = next(
            (int(v["id"]) for v in issue.get("custom_fields") or [] if v["name"] == WRITE_MARKER_FIELD), None
        )
        return [] if field_id is None else [{"id": field_id, "value": marker}]

    def add_comment(self, issue_id: str, body: str, *, as_user: str, marker: str | None = None) -> str:
        issue = self._issue(issue_id, "journals")
        if marker:
            journal = self._journal_with_marker(issue, marker)
            if journal is not None:
                return str(journal["id"])
        if not body.strip():
            raise TrackerRefused("a comment must not be empty")
        notes = to_redmine(body, self.formatting)
        update: dict[str, Any] = {"notes": notes}
        if marked := self._marked(issue, marker):
            update["custom_fields"] = marked
        self.client.put(f"/issues/{issue_id}.json", {"issue": update})
        issue = self._issue(issue_id, "journals")
        journal = self._journal_with_marker(issue, marker) if marker else None
        if journal is None:
            me = int(self.schema.me()["id"])
            journal = next(
                j
                for j in reversed(issue.get("journals") or [])
                if (j.get("notes") or "").replace("\r\n", "\n") == notes
                and int((j.get("user") or {}).get("id", 0)) == me
            )
        return str(journal["id"])

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
        if not _plain_filename(filename):
            raise TrackerRefused(f"attachment name {filename!r} is not a plain file name")
        issue = self._issue(issue_id, "journals,attachments")

        def attached() -> str | None:
            journal = self._journal_with_marker(issue, marker) if marker else None
            for detail in (journal or {}).get("details") or []:
                if detail.get("property") == "attachment" and detail.get("new_value"):
                    return str(detail["name"])
            same = [
                a
                for a in issue.get("attachments") or []
                if a["filename"] == filename and int(a.get("filesize") or 0) == len(content)
            ]
            return str(same[-1]["id"]) if same else None

        found = attached()
        if found is not None:
            return found
        token = self.client.upload(filename, content)
        upload = {
            "token": token,
            "filename": filename,
            "content_type": media_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
        }
        update: dict[str, Any] = {"uploads": [upload]}
        if marked := self._marked(issue, marker):
            update["custom_fields"] = marked
        self.client.put(f"/issues/{issue_id}.json", {"issue": update})
        issue = self._issue(issue_id, "journals,attachments")
        found = attached()
        if found is None:
            raise TrackerOffline(f"Redmine accepted {filename!r} on issue {issue_id} but does not show it")
        return found

    def transition(self, issue_id: str, status: str, *, as_user: str) -> bool:
        """Set the status when the workflow allows it from here (Redmine moves in one step)."""
        target = self.schema.id_of("statuses", status)
        issue = self._issue(issue_id, "allowed_statuses")
        if int(issue["status"]["id"]) == target:
            return False
        allowed = {int(s["id"]): s["name"] for s in issue.get("allowed_statuses") or []}
        if target not in allowed:
            raise TrackerRefused(
                f"Redmine's workflow does not let the sync user move issue {issue_id} from "
                f"{issue['status']['name']!r} to {status!r} "
                f"(allowed: {', '.join(allowed.values()) or 'none'})"
            )
        self.client.put(f"/issues/{issue_id}.json", {"issue": {"status_id": target}})
        return True

    def add_link(
        self, source_id: str, target_id: str, kind: str, *, as_user: str, marker: str | None = None
    ) -> str:
        issue = self._issue(source_id, "relations")
        for relation in issue.get("relations") or []:
            if link_of(int(source_id), relation) == (kind, str(target_id)):
                return str(relation["id"])
        created = self.client.post(
            f"/issues/{source_id}/relations.json",
            {"relation": {"issue_to_id": int(target_id), "relation_type": kind}},
        )
        return str(created["relation"]["id"])

    # -- schema ---------------------------------------------------------------------------------

    def issue_types(self, project: str) -> list[str]:
        found = self.client.get(f"/projects/{project}.json", {"include": "trackers"})["project"]
        return [str(t["name"]) for t in found.get("trackers") or []]

    def statuses(self, project: str) -> list[str]:
        return self.schema.statuses()

    def _custom_fields(self, project: str) -> list[CustomField]:
        self.schema.marker_field_id(SYNC_MARKER_FIELD, project)  # learns the fields from an issue if need be
        return [f for f in self.schema.custom_fields().values() if f.name not in MARKER_FIELDS]

    def field_names(self, project: str) -> dict[str, str]:
        return {**STANDARD_KINDS, **{f.name: f.kind for f in self._custom_fields(project)}}

    def field_options(self, project: str, name: str) -> list[str]:
        if name == "priority":
            return list(self.schema._names("priorities"))
        found = next((f for f in self._custom_fields(project) if f.name == name), None)
        return list(found.options) if found is not None and found.kind == "select" else []

    def issue_keys(self, issue_ids: list[str]) -> dict[str, str]:
        wanted = [i for i in issue_ids if str(i).isdigit()]
        keys: dict[str, str] = {}
        for start in range(0, len(wanted), PAGE_SIZE):
            chunk = wanted[start : start + PAGE_SIZE]
            page = self.client.get(
                "/issues.json", {"issue_id": ",".join(chunk), "status_id": "*", "limit": PAGE_SIZE}
            )
            for issue in page.get("issues") or []:
                keys[str(issue["id"])] = issue_key(self._identifier(issue["project"]), issue["id"])
        return keys

    def issue_key_to_id(self, key: str) -> str:
        number = key.strip().lstrip("#").rsplit("-", 1)[-1]
        if not number.isdigit():
            raise BackboneError(f"issue {key} does not exist (expected PROJECT-123, #123 or 123)")
        try:
            issue = self._issue(number, "")
        except RedmineClient.NotFound:
            raise BackboneError(f"issue {key} does not exist") from None
        if "-" in key and issue_key(self._identifier(issue["project"]), number) != key.strip().upper():
            raise BackboneError(f"issue {key} does not exist (#{number} is in another project)")
        return number

    def projects(self) -> list[tuple[str, str]]:
        return [
            (str(p["identifier"]), str(p["name"]))
            for p in self.client.pages("/projects.json", "projects", {})
        ]

    def user_emails(self) -> dict[str, str]:
        """Login -> e-mail of the active users; {} when the sync user is no administrator."""
        try:
            users = self.client.pages("/users.json", "users", {"status": 1})
        except RedmineClient.AuthFailed:
            return {}
        return {str(u["login"]): str(u["mail"]) for u in users if u.get("mail")}

    @property
    def account_author(self) -> str:
        """The login this account's changes carry (the account's user): they are echoes."""
        return self.settings.user

    def poll_soon(self) -> None:
        """Look at every project on the next `changes_since`, due or not (a webhook said so)."""
        self._polled.clear()

    def signed_in_as(self) -> str:
        """The login the API key belongs to (Redmine answers anonymous requests for public data,
        so only this says whether the key works); raises TrackerAuthFailed."""
        return str(self.client.get("/users/current.json")["user"]["login"])

    def is_online(self) -> bool:
        try:
            self.client.get("/users/current.json")
        except RedmineClient.AuthFailed:
            return True  # reachable; the credentials are another matter
        except TrackerOffline:
            return False
        return True

    def missing_permissions(self, project: str, user: str) -> list[str]:
        """What `user` lacks in `project` by its roles' permissions; see `UNCHECKED`."""
        me = self.schema.me()
        if user == me["login"]:
            account = me
        else:
            user_id = self.schema.user_id(user, project)
            account = self.client.get(f"/users/{user_id}.json", {"include": "memberships"})["user"]
        if account.get("admin"):
            return []
        found = self.client.get(f"/projects/{project}.json", {"include": "enabled_modules"})["project"]
        missing = []
        if "issue_tracking" not in {m["name"] for m in found.get("enabled_modules") or []}:
            missing.append(f"issue tracking is not enabled in {project}")
        roles = [
            role
            for membership in account.get("memberships") or []
            if int(membership["project"]["id"]) == int(found["id"])
            for role in membership.get("roles") or []
        ]
        if not roles:
            return [*missing, f"{user} is no member of {project}"]
        granted: set[str] = set()
        for role in roles:
            granted.update(self.client.get(f"/roles/{role['id']}.json")["role"].get("permissions") or [])
        return missing + [words for name, words in NEEDED_PERMISSIONS.items() if name not in granted]


_MISSING = object()


def _normal(value: Any) -> Any:
    """A value as compared before a write: "" and None are the same, numbers as text."""
    if value in ("", None, []):
        return None
    if isinstance(value, list):
        return sorted(str(v) for v in value)
    return value if value is _MISSING else str(value)


def _remember_relations(relations: dict[str, list[int]], issue: dict[str, Any]) -> None:
    ids = sorted(int(r["id"]) for r in issue.get("relations") or [])
    if ids:
        relations[str(issue["id"])] = ids
    else:
        relations.pop(str(issue["id"]), None)
