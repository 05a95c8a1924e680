"""Change detection for Jira: one JQL search per poll (its answer carries each changed issue's
comments, attachments and links), then each changed issue's paged changelog (and its comments'
pages only when the search answer truncated them), recorded in the change mirror with the cursor.

JQL compares `updated` at minute resolution in the account's time zone, so each window starts
`OVERLAP` before the newest time already read; what is read twice is dropped by its remote key
(`changelog:<id>`, `create:<issue id>`, `comment:<id>`, `attachment:<id>`, `link:<id>`), and an
issue whose `updated` is unchanged since the last poll is not read again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.trackers.jira import adf
from engine.trackers.jira.client import PAGE_SIZE, JiraClient
from engine.trackers.jira.schema import JiraSchema, link_kind
from engine.trackers.mirror import ChangeMirror, RemoteChangeIn

OVERLAP = timedelta(minutes=2)
SEARCH_FIELDS = "summary,created,updated,creator,reporter,attachment,issuelinks,issuetype,comment"


def parse_time(text: str) -> datetime:
    """A Jira time (2026-12-01T12:00:05.000+0000) as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def jql_quote(text: str) -> str:
    """`text` as a JQL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class JiraPoller:
    """Reads what changed in a project since its cursor and records it in the mirror."""

    def __init__(self, client: JiraClient, schema: JiraSchema, mirror: ChangeMirror) -> None:
        self.client = client
        self.schema = schema
        self.mirror = mirror

    def search(self, jql: str, fields: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Every issue `jql` finds (Cloud: /search/jql by nextPageToken; Server/DC: /search by startAt)."""
        issues: list[dict[str, Any]] = []
        page_size = min(limit or PAGE_SIZE, PAGE_SIZE)
        if self.client.version == 3:
            token: str | None = None
            while True:
                params: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": page_size}
                if token:
                    params["nextPageToken"] = token
                page = self.client.get("/search/jql", params)
                issues.extend(page.get("issues") or [])
                token = page.get("nextPageToken")
                if not token or page.get("isLast") or (limit and len(issues) >= limit):
                    return issues
        else:
            for issue in self.client.pages("/search", "issues", {"jql": jql, "fields": fields}):
                issues.append(issue)
                if limit and len(issues) >= limit:
                    break
            return issues

    def poll(self, project: str) -> int:
        """Read the project's changes since its cursor into the mirror; how many were new."""
        cursor = self.mirror.cursor(project)
        seen: dict[str, str] = cursor.get("seen") or {}
        jql = f"project = {jql_quote(project)}"
        newest = cursor.get("updated")
        if newest:
            start = parse_time(newest) - OVERLAP
            jql += f' AND updated >= "{start.astimezone(self._zone()).strftime("%Y-%m-%d %H:%M")}"'
        issues = self.search(jql + " ORDER BY updated ASC", SEARCH_FIELDS)
        changes: list[RemoteChangeIn] = []
        for issue in issues:
            updated = str(issue["fields"]["updated"])
            if seen.get(str(issue["id"])) == updated:
                continue
            changes.extend(self._issue_changes(issue))
            if newest is None or parse_time(updated) > parse_time(newest):
                newest = updated
        changes.sort(key=lambda change: change.at)  # stable: an issue's own order is kept
        if newest:
            horizon = parse_time(newest) - OVERLAP
            seen = {
                str(issue["id"]): str(issue["fields"]["updated"])
                for issue in issues
                if parse_time(str(issue["fields"]["updated"])) >= horizon
            }
        return self.mirror.record(project, changes, {"updated": newest, "seen": seen})

    def _zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(str(self.schema.myself().get("timeZone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    def _issue_changes(self, issue: dict[str, Any]) -> list[RemoteChangeIn]:
        """The changes of one issue: its creation, changelog entries, comments, attachments, links."""
        issue_id, fields = str(issue["id"]), issue["fields"]
        creator = self.schema.user_name(fields.get("creator") or fields.get("reporter"))
        changes = [
            RemoteChangeIn(
                f"create:{issue_id}",
                issue_id,
                parse_time(fields["created"]),
                creator,
                "create",
                {"key": issue["key"]},
            )
        ]
        link_authors: dict[str, tuple[datetime, str]] = {}  # target key -> when and by whom linked
        for entry in self.client.pages(f"/issue/{issue_id}/changelog", "values"):
            at, author = parse_time(entry["created"]), self.schema.user_name(entry.get("author"))
            updated: dict[str, list[Any]] = {}
            status: list[Any] | None = None
            for item in entry.get("items") or []:
                if item.get("field") == "Link" and item.get("to"):
                    link_authors[str(item["to"])] = (at, author)
                mapped = self.schema.changelog_item(item)
                if mapped is None:
                    continue
                name, old, new = mapped
                if name == "status":
                    status = [old, new]
                else:
                    updated[name] = [old, new]
            key = f"changelog:{entry['id']}"
            if updated:
                changes.append(RemoteChangeIn(key, issue_id, at, author, "update", {"fields": updated}))
            if status is not None:
                status_key = f"{key}:status" if updated else key
                changes.append(
                    RemoteChangeIn(
                        status_key, issue_id, at, author, "transition", {"fields": {"status": status}}
                    )
                )
        for comment in self._comments(issue_id, fields.get("comment")):
            changes.append(
                RemoteChangeIn(
                    f"comment:{comment['id']}",
                    issue_id,
                    parse_time(comment["created"]),
                    self.schema.user_name(comment.get("author")),
                    "comment",
                    {"comment": str(comment["id"])},
                )
            )
        for attachment in fields.get("attachment") or []:
            changes.append(
                RemoteChangeIn(
                    f"attachment:{attachment['id']}",
                    issue_id,
                    parse_time(attachment["created"]),
                    self.schema.user_name(attachment.get("author")),
                    "attach",
                    {"attachment": str(attachment["id"])},
                )
            )
        for link in fields.get("issuelinks") or []:
            target = link.get("outwardIssue")
            if not target:
                continue  # the link is the other issue's change
            at, author = link_authors.get(str(target.get("key")), (parse_time(fields["updated"]), ""))
            changes.append(
                RemoteChangeIn(
                    f"link:{link['id']}",
                    issue_id,
                    at,
                    author,
                    "link",
                    {"link": str(link["id"]), "target": str(target["id"]), "kind": link_kind(link["type"])},
                )
            )
        changes.sort(key=lambda change: change.at)
        return changes

    def _comments(self, issue_id: str, listed: Any) -> Iterator[dict[str, Any]]:
        """The issue's comments: those the search answer carried when they are all there (no
        request per changed issue), else every page of /issue/{id}/comment."""
        complete = _listed_comments(listed)
        if complete is not None:
            yield from complete
        else:
            yield from self.client.pages(f"/issue/{issue_id}/comment", "comments")


def _listed_comments(listed: Any) -> list[dict[str, Any]] | None:
    """The comments a search answer carries in its `comment` field, or None when it carries none
    or not all of them (Jira truncates that list: `total` says how many there are)."""
    if not isinstance(listed, dict) or not isinstance(listed.get("comments"), list):
        return None
    comments: list[dict[str, Any]] = listed["comments"]
    total = listed.get("total")
    return comments if isinstance(total, int) and total <= len(comments) else None


def comment_text(body: Any, v3: bool) -> str:
    """A comment body as plain text (ADF on v3, wiki text on v2)."""
    return adf.to_text(body) if v3 else str(body or "")


def utc(text: str) -> datetime:
    return parse_time(text).astimezone(UTC)
