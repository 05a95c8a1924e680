"""The fake Jira (`fake_jira.py`) served over real HTTP on a loopback port.

It is a fake: no Jira can run here (Jira is neither free nor packaged for this image), so the
stateful double stands in for a Jira site, and this server lets an installation reach it exactly as
it reaches a real one: `backbone tracker add NAME --kind jira --url http://127.0.0.1:PORT`, real
sockets, no transport injected into the engine. Every request and answer still passes the fake's
OpenAPI check; one lock serializes the fake's state between the server's threads and the test.

In-thread (`FakeJiraServer(fake)`, a context manager) for ordinary tests; as its own process
(`python -m tests.fake_jira_server --version 3 --project JIRA`, which prints `listening URL`) when
the state must outlive a killed engine. Routes under `/_fake/` (no authentication) let a test read
the state and the request counts and act as another user there.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

from tests.fake_jira import FakeJira
from tests.fake_jira_state import SITE, FakeIssue, FakeUser

HOST = "127.0.0.1"
CONTROL = "/_fake/"


class FakeJiraServer:
    """Serves `fake` on HOST:`port` (0: a free one) from a daemon thread."""

    def __init__(self, fake: FakeJira, port: int = 0) -> None:
        self.fake = fake
        self.lock = threading.Lock()
        self.errors: list[str] = []  # requests the fake could not answer (a contract check failed)
        self._http = ThreadingHTTPServer((HOST, port), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="fake-jira", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._http.server_address[1]}"

    def start(self) -> FakeJiraServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(10)

    def __enter__(self) -> FakeJiraServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @contextmanager
    def state(self) -> Iterator[FakeJira]:
        """The fake, locked against the server's threads (act as other users, read its state)."""
        with self.lock:
            yield self.fake

    def answer(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> httpx.Response:
        """The fake's answer to one request (an error of the fake itself is a 500 and recorded)."""
        if path.startswith(CONTROL):
            return self._control(method, path[len(CONTROL) :], body)
        request = httpx.Request(method, SITE + path, headers=headers, content=body)
        with self.lock:
            try:
                return self.fake.handle(request)
            except Exception:  # noqa: BLE001 - the test reads `errors`; the client sees a 500
                self.errors.append(f"{method} {path}: {traceback.format_exc(limit=3)}")
                return httpx.Response(500, json={"errorMessages": ["the fake failed: see its errors"]})

    def _control(self, method: str, route: str, body: bytes) -> httpx.Response:
        with self.lock:
            if (method, route) == ("GET", "state"):
                return httpx.Response(200, json=snapshot(self.fake))
            if (method, route) == ("GET", "requests"):
                return httpx.Response(200, json=dict(self.fake.route_counts()))
            if (method, route) == ("GET", "errors"):
                return httpx.Response(200, json=self.errors)
            if (method, route) == ("POST", "act"):
                try:
                    return httpx.Response(200, json=act(self.fake, json.loads(body)))
                except (KeyError, ValueError) as exc:
                    return httpx.Response(400, json={"error": f"{type(exc).__name__}: {exc}"})
        return httpx.Response(404, json={"error": f"no control route {method} {route}"})


def _handler(server: FakeJiraServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the connector's pool reuses connections

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = server.answer(self.command, self.path, list(self.headers.items()), body)
            content = answer.content
            self.send_response(answer.status_code)
            for name in ("Content-Type", "Retry-After"):
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass  # the fake's own `log` records every request

    return Handler


# -- the control routes ---------------------------------------------------------------------------


def _user(user: Any) -> str | None:
    return user.name if isinstance(user, FakeUser) else None


def _issue_state(issue: FakeIssue) -> dict[str, Any]:
    return {
        "id": issue.id,
        "key": issue.key,
        "project": issue.project,
        "type": issue.issue_type,
        "status": issue.status,
        "values": {k: _user(v) if isinstance(v, FakeUser) else v for k, v in issue.values.items()},
        "parent": issue.parent_id,
        "properties": issue.properties,
        "comments": [
            {"id": c["id"], "author": _user(c["author"]), "body": c["body"], "properties": c["properties"]}
            for c in issue.comments
        ],
        "attachments": [
            {"id": a["id"], "filename": a["filename"], "size": a["size"], "author": _user(a["author"])}
            for a in issue.attachments
        ],
        "links": [
            {"id": x["id"], "type": x["type"]["name"], "target": x["target"], "outward": x["outward"]}
            for x in issue.links
        ],
    }


def snapshot(fake: FakeJira) -> dict[str, Any]:
    """Every issue of the fake as plain JSON (users by login name)."""
    return {"issues": [_issue_state(issue) for issue in fake.issues.values()]}


def act(fake: FakeJira, command: dict[str, Any]) -> dict[str, Any]:
    """One action of another user ("alice" unless `user` says): create, edit, comment or move."""
    user = next(u for u in fake.users.values() if u.name == command.get("user", "alice"))
    op = command["op"]
    if op == "create":
        issue = fake.create_as(user, command["summary"], command.get("type", "Task"), command["project"])
        return {"id": issue.id, "key": issue.key}
    issue = fake.issues[command["issue"]]
    if op == "edit":
        fake.edit_as(user, issue, **command["fields"])
    elif op == "comment":
        return {"id": fake.comment_as(user, issue, command["text"])}
    elif op == "move":
        fake.move_as(user, issue, command["status"])
    else:
        raise ValueError(f"unknown op {op!r}")
    return {"id": issue.id}


def main(argv: list[str] | None = None) -> int:
    """Serve a fresh fake until SIGTERM or SIGINT; prints `listening URL` once ready."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", type=int, choices=(2, 3), default=3)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project", action="append", default=[], help="another project's key")
    args = parser.parse_args(argv)
    fake = FakeJira(args.version, real_clock=True)
    for key in args.project:
        fake.add_project(key, key.title())
    server = FakeJiraServer(fake, args.port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    with server:
        print(f"listening {server.url}", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
