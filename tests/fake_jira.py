"""A fake Jira site, stateful, served to the connector through an `httpx.MockTransport`.

It is a fake: no Jira can run here (Jira is neither free nor packaged for this image), so this
double keeps projects, issues, custom fields, a changelog, comments with properties, a workflow,
attachments and links in memory and answers the ~25 REST operations the connector uses, in the
v2 (Server/DC: wiki text, user names, startAt paging) or v3 (Cloud: ADF, accountIds,
nextPageToken paging) dialect. Every request it receives and every answer it gives is checked
against Atlassian's published OpenAPI (`jira_contract.py`), so the fake cannot drift from the real API's
shapes. It also injects 429 and 5xx answers on demand.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from email.message import Message
from email.parser import BytesParser
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.fake_jira_state import (
    CUSTOM,
    ISSUE_TYPES,
    LINK_TYPES,
    PRIORITIES,
    SEVERITY,
    SITE,
    STATUSES,
    TRANSITIONS,
    Answer,
    FakeIssue,
    FakeUser,
    JiraState,
)
from tests.jira_contract import check_request, check_response


class FakeJira(JiraState):
    """The site behind `transport` (give it to `JiraTracker(..., transport=...)`)."""

    def __init__(self, version: int = 3, *, page_size: int = 50, real_clock: bool = False) -> None:
        super().__init__(version, page_size=page_size, real_clock=real_clock)
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Check the request against the contract, answer it, check the answer."""
        prefix = f"/rest/api/{self.version}"
        path = request.url.path
        assert path.startswith(prefix), f"{path} is not under {prefix}"
        route = path[len(prefix) :]
        self.log.append((request.method, route))
        injected = bool(self.failures)
        check_request(request, self.version)
        if self.failures:
            status, retry_after = self.failures.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            response = httpx.Response(status, headers=headers, json={"errorMessages": ["injected"]})
        else:
            response = self._answer(request, route)
        if not injected:
            check_response(request, response, self.version)
        return response

    def _authenticated(self, request: httpx.Request) -> FakeUser | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer ") :]
            return next((u for u in self.users.values() if u.password and f"pat-{u.password}" == token), None)
        if header.startswith("Basic "):
            login, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            for user in self.users.values():
                if login in (user.email, user.name) and user.password and secret == user.password:
                    return user
        return None

    def _answer(self, request: httpx.Request, route: str) -> httpx.Response:
        user = self._authenticated(request)
        if user is None:
            return httpx.Response(401, json={"errorMessages": ["You are not authenticated."]})
        try:
            status, body = self._route(user, request, route, dict(request.url.params))
        except Answer as answer:
            return httpx.Response(
                answer.status, json={"errorMessages": answer.messages, "errors": answer.errors}
            )
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers={"Content-Type": "application/octet-stream"})
        return httpx.Response(status) if body is None else httpx.Response(status, json=body)

    def _issue(self, ref: str) -> FakeIssue:
        for issue in self.issues.values():
            if ref in (issue.id, issue.key):
                return issue
        raise Answer(404, ["Issue does not exist or you do not have permission to see it."])

    def _route(
        self, user: FakeUser, request: httpx.Request, route: str, q: dict[str, str]
    ) -> tuple[int, Any]:
        method = request.method
        body: Any = (
            json.loads(request.content)
            if request.content and "json" in request.headers.get("content-type", "")
            else None
        )
        if (method, route) == ("GET", "/myself"):
            return 200, {**(self.user_json(user) or {}), "timeZone": user.time_zone}
        if (method, route) == ("GET", "/field"):
            return 200, self._fields()
        if (method, route) == ("GET", "/project/search") and self.version == 3:
            rows = [self._project_json(k) for k in self.projects]
            return 200, {"values": rows, "startAt": 0, "maxResults": 50, "total": len(rows), "isLast": True}
        if (method, route) == ("GET", "/project"):
            return 200, [self._project_json(k) for k in self.projects]
        if (method, route) == ("GET", "/issueLinkType"):
            return 200, {"issueLinkTypes": LINK_TYPES}
        if (method, route) == ("GET", "/mypermissions"):
            wanted = q.get("permissions", "").split(",")
            return 200, {
                "permissions": {
                    k: {
                        "id": str(n),
                        "key": k,
                        "name": k.title(),
                        "type": "PROJECT",
                        "description": k,
                        "havePermission": k in self.permissions,
                    }
                    for n, k in enumerate(wanted)
                }
            }
        if method == "GET" and route in ("/user", "/user/search", "/users/search"):
            users = [self.user_json(u) for u in self.users.values()]
            if route == "/user":
                return 200, next(u for u in users if u and u.get("accountId") == q.get("accountId"))
            query = q.get("query", "").lower()
            return 200, [u for u in users if u and (not query or query in json.dumps(u).lower())]
        if method == "GET" and route in ("/search", "/search/jql"):
            return self._search(route, q)
        if (method, route) == ("POST", "/issue"):
            return 201, self._create(user, body)
        match = re.fullmatch(r"/project/([^/]+)/statuses", route)
        if match and method == "GET":
            statuses = [
                {
                    "id": sid,
                    "name": name,
                    "self": f"{SITE}/status/{sid}",
                    "description": name,
                    "iconUrl": f"{SITE}/s.png",
                }
                for name, sid in STATUSES.items()
            ]
            return 200, [
                {
                    "id": tid,
                    "name": name,
                    "self": f"{SITE}/issuetype/{tid}",
                    "subtask": sub,
                    "statuses": statuses,
                }
                for name, (tid, sub) in ISSUE_TYPES.items()
            ]
        match = re.fullmatch(r"/issue/createmeta/([^/]+)/issuetypes(?:/([^/]+))?", route)
        if match and method == "GET":
            return 200, self._createmeta(match.group(2))
        match = re.fullmatch(r"/attachment(/content)?/([^/]+)", route)
        if match and method == "GET":
            return self._attachment(match.group(2), bool(match.group(1)))
        match = re.fullmatch(r"/comment/([^/]+)/properties/([^/]+)", route)
        if match and method == "GET":
            for issue in self.issues.values():
                for comment in issue.comments:
                    if comment["id"] == match.group(1) and match.group(2) in comment["properties"]:
                        return 200, {"key": match.group(2), "value": comment["properties"][match.group(2)]}
            raise Answer(404, ["The property was not found."])
        if (method, route) == ("POST", "/issueLink"):
            return self._link(user, body)
        match = re.fullmatch(r"/issue/([^/]+)(/[a-z]+)?(?:/([^/]+))?", route)
        if match is None:
            raise Answer(404, [f"no route {method} {route}"])
        issue, sub = self._issue(match.group(1)), match.group(2) or ""
        return self._issue_route(user, request, method, issue, sub, match.group(3), body, q)

    def _issue_route(
        self,
        user: FakeUser,
        request: httpx.Request,
        method: str,
        issue: FakeIssue,
        sub: str,
        extra: str | None,
        body: Any,
        q: dict[str, str],
    ) -> tuple[int, Any]:
        if (method, sub) == ("GET", ""):
            return 200, self.issue_json(issue, q.get("fields", "*all"), q.get("properties", ""))
        if (method, sub) == ("PUT", ""):
            self._edit(user, issue, body.get("fields") or {})
            return 204, None
        if (method, sub) == ("GET", "/changelog"):
            start, size = int(q.get("startAt", 0)), min(int(q.get("maxResults", 50)), self.page_size)
            values = issue.changelog[start : start + size]
            return 200, {
                "startAt": start,
                "maxResults": size,
                "total": len(issue.changelog),
                "values": values,
                "isLast": start + size >= len(issue.changelog),
            }
        if (method, sub) == ("GET", "/comment"):
            start, size = int(q.get("startAt", 0)), min(int(q.get("maxResults", 50)), self.page_size)
            rows = [self._comment_json(c, q.get("expand", "")) for c in issue.comments[start : start + size]]
            return 200, {"startAt": start, "maxResults": size, "total": len(issue.comments), "comments": rows}
        if (method, sub) == ("POST", "/comment"):
            return 201, self._comment(user, issue, body)
        if (method, sub) == ("GET", "/transitions"):
            return 200, {
                "transitions": [
                    {
                        "id": tid,
                        "name": f"to {to}",
                        "to": {"id": STATUSES[to], "name": to, "self": f"{SITE}/status/{STATUSES[to]}"},
                        "hasScreen": False,
                        "isGlobal": False,
                        "isInitial": False,
                        "isConditional": False,
                        "isAvailable": True,
                    }
                    for tid, frm, to in TRANSITIONS
                    if frm == issue.status
                ]
            }
        if (method, sub) == ("POST", "/transitions"):
            wanted = (body.get("transition") or {}).get("id")
            step = next(
                ((frm, to) for tid, frm, to in TRANSITIONS if tid == wanted and frm == issue.status), None
            )
            if step is None:
                raise Answer(400, [f"Transition id '{wanted}' is not valid for this issue."])
            self.move_as(user, issue, step[1])
            return 204, None
        if (method, sub) == ("POST", "/attachments"):
            return self._upload(user, request, issue)
        if sub == "/properties" and extra:
            if method == "PUT":
                issue.properties[extra] = body
                return 200, None
            if extra in issue.properties:
                return 200, {"key": extra, "value": issue.properties[extra]}
            raise Answer(404, ["The property was not found."])
        raise Answer(404, [f"no route {method} /issue/{issue.id}{sub}"])

    def _fields(self) -> list[dict[str, Any]]:
        system = {
            "summary": "string",
            "description": "string",
            "priority": "priority",
            "labels": "array",
            "assignee": "user",
            "reporter": "user",
            "duedate": "date",
            "status": "status",
            "issuetype": "issuetype",
        }
        rows = [
            {
                "id": fid,
                "key": fid,
                "name": fid.title(),
                "custom": False,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [fid],
                "schema": {"type": kind, "system": fid, **({"items": "string"} if kind == "array" else {})},
            }
            for fid, kind in system.items()
        ]
        rows += [
            {
                "id": fid,
                "key": fid,
                "name": name,
                "custom": True,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [f"cf[{schema['customId']}]"],
                "schema": schema,
            }
            for fid, (name, schema) in CUSTOM.items()
        ]
        return rows

    def _project_json(self, key: str) -> dict[str, Any]:
        pid, name = self.projects[key]
        return {"id": pid, "key": key, "name": name, "self": f"{SITE}/rest/api/{self.version}/project/{pid}"}

    def _createmeta(self, type_id: str | None) -> dict[str, Any]:
        list_key = "issueTypes" if self.version == 3 else "values"
        if type_id is None:
            rows = [
                {"id": tid, "name": name, "subtask": sub, "self": f"{SITE}/issuetype/{tid}"}
                for name, (tid, sub) in ISSUE_TYPES.items()
            ]
            return {list_key: rows, "startAt": 0, "maxResults": 50, "total": len(rows)}
        metas = [
            {
                "fieldId": "priority",
                "key": "priority",
                "name": "Priority",
                "required": False,
                "operations": ["set"],
                "schema": {"type": "priority", "system": "priority"},
                "allowedValues": [{"id": pid, "name": name} for name, pid in PRIORITIES.items()],
            },
            {
                "fieldId": "customfield_10010",
                "key": "customfield_10010",
                "name": "Severity",
                "required": False,
                "operations": ["set"],
                "schema": CUSTOM["customfield_10010"][1],
                "allowedValues": [{"id": oid, "value": name} for name, oid in SEVERITY.items()],
            },
        ]
        return {
            "fields" if self.version == 3 else "values": metas,
            "startAt": 0,
            "maxResults": 50,
            "total": len(metas),
        }

    def _search(self, route: str, q: dict[str, str]) -> tuple[int, Any]:
        if self.version == 3 and route == "/search":
            raise Answer(
                410, ["The requested API has been removed. Please migrate to /rest/api/3/search/jql."]
            )
        if self.version == 2 and route == "/search/jql":
            raise Answer(404, ["null for uri"])
        found = self._jql(q.get("jql", ""))
        size = min(int(q.get("maxResults", 50)), self.page_size)
        fields = q.get("fields", "*all")
        if route == "/search/jql":
            start = int(base64.b64decode(q["nextPageToken"]).decode()) if "nextPageToken" in q else 0
            page = found[start : start + size]
            answer: dict[str, Any] = {
                "issues": [self.issue_json(i, fields) for i in page],
                "isLast": start + size >= len(found),
            }
            if not answer["isLast"]:
                answer["nextPageToken"] = base64.b64encode(str(start + size).encode()).decode()
            return 200, answer
        start = int(q.get("startAt", 0))
        return 200, {
            "startAt": start,
            "maxResults": size,
            "total": len(found),
            "issues": [self.issue_json(i, fields) for i in found[start : start + size]],
        }

    def _jql(self, jql: str) -> list[FakeIssue]:
        """The issues a JQL query finds: the clauses the connector sends, joined by AND."""
        text, _, order = jql.partition(" ORDER BY ")
        issues = list(self.issues.values())
        for clause in text.split(" AND "):
            clause = clause.strip()
            if m := re.fullmatch(r'project = "([^"]+)"', clause):
                issues = [i for i in issues if i.project == m.group(1)]
            elif m := re.fullmatch(r'updated >= "(\d{4}-\d\d-\d\d \d\d:\d\d)"', clause):
                zone = ZoneInfo(self.sync.time_zone)  # JQL times are in the searching user's zone
                since = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=zone)
                issues = [i for i in issues if i.updated >= since]
            elif m := re.fullmatch(r'issue\.property\[(\w+)\]\.marker = "([^"]*)"', clause):
                issues = [
                    i for i in issues if (i.properties.get(m.group(1)) or {}).get("marker") == m.group(2)
                ]
            elif m := re.fullmatch(r"id in \(([\d, ]+)\)", clause):
                wanted = {part.strip() for part in m.group(1).split(",")}
                issues = [i for i in issues if i.id in wanted]
            else:
                raise Answer(400, [f"the fake does not understand the JQL clause {clause!r}"])
        if order.strip() == "updated ASC":
            issues.sort(key=lambda i: (i.updated, int(i.id)))
        return issues

    def _attachment(self, attachment_id: str, content: bool) -> tuple[int, Any]:
        for issue in self.issues.values():
            for row in issue.attachments:
                if row["id"] == attachment_id:
                    if content:
                        return 200, self.attachment_bytes[attachment_id]
                    return 200, {**self._attachment_json(row), "id": int(row["id"])}  # an integer here
        raise Answer(404, ["The attachment does not exist."])

    def _upload(self, user: FakeUser, request: httpx.Request, issue: FakeIssue) -> tuple[int, Any]:
        if request.headers.get("X-Atlassian-Token") != "no-check":
            raise Answer(403, ["XSRF check failed"])
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        message = BytesParser().parsebytes(head + request.content)
        rows = []
        for part in message.get_payload():
            assert isinstance(part, Message)
            name, payload = part.get_filename(), part.get_payload(decode=True)
            assert isinstance(name, str) and isinstance(payload, bytes)
            rows.append(
                self._attachment_json(self.attach_as(user, issue, name, payload, part.get_content_type()))
            )
        return 200, rows

    def attach_as(
        self, user: FakeUser, issue: FakeIssue, name: str, payload: bytes, media_type: str = "text/plain"
    ) -> dict[str, Any]:
        """Attach a file as `user` (the attachment's row)."""
        at = self.tick()
        row: dict[str, Any] = {
            "id": str(30000 + len(self.attachment_bytes) + 1),
            "filename": name,
            "size": len(payload),
            "mimeType": media_type,
            "created": at,
            "author": user,
        }
        self.attachment_bytes[row["id"]] = payload
        issue.attachments.append(row)
        issue.updated = at
        issue.changelog.append(
            {
                "id": str(900000 + len(self.attachment_bytes)),
                "author": self.user_json(user),
                "created": self._time(at),
                "items": [self._item("attachment", None, None, row["id"], name)],
            }
        )
        return row

    def link_as(self, user: FakeUser, source: FakeIssue, target: FakeIssue, type_name: str) -> None:
        """Link `source` to `target` (`type_name`: Relates, Blocks) as `user`."""
        self._link(
            user,
            {
                "type": {"name": type_name},
                "inwardIssue": {"id": source.id},
                "outwardIssue": {"id": target.id},
            },
        )

    def _link(self, user: FakeUser, body: dict[str, Any]) -> tuple[int, Any]:
        link_type = next((t for t in LINK_TYPES if t["name"] == body["type"].get("name")), None)
        if link_type is None:
            raise Answer(404, [f"No issue link type with name '{body['type'].get('name')}' found."])
        source, target = self._issue(body["inwardIssue"]["id"]), self._issue(body["outwardIssue"]["id"])
        link_id = str(40000 + sum(len(i.links) for i in self.issues.values()) + 1)
        source.links.append({"id": link_id, "type": link_type, "target": target.id, "outward": True})
        target.links.append({"id": link_id, "type": link_type, "target": source.id, "outward": False})
        item = self._item("Link", None, None, target.key, f"This issue {link_type['outward']} {target.key}")
        self._history(user, source, [item])
        return 201, None
