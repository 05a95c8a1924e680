"""The REST monitoring API under /api/1/ (SPEC section 8): a FastAPI app over the service layer,
served by uvicorn on a thread of the engine's process."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import text

from engine.errors import BackboneError, FieldError
from engine.runtime.api_views import ApiViews
from engine.runtime.engine import Engine, wait_until
from engine.service.installation import Installation
from engine.service.metrics import summary_counts
from engine.store.models import Synchronization
from engine.vocab import ERROR_FOLDERS, Folder

log = logging.getLogger("backbone.api")

DEFAULT_BIND = "127.0.0.1:8642"
PREFIX = "/api/1"
OUTGOING_FOLDERS = frozenset({Folder.SEND, Folder.SENT, Folder.SEND_ERROR})
#: read at module level: FastAPI resolves a dependency's annotations by name, never a local one
BEARER = HTTPBearer(auto_error=False, description="a token from `backbone api token create NAME`")


# -- the documented shapes (the JSON itself is built by the service layer's views) ---------------


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


class ConfigState(BaseModel):
    in_force: int
    pending: int
    partner_message: str


class Integration(BaseModel):
    """A synchronization: `SyncInfo.to_json()`, as `sync show --json` prints it."""

    key: str
    name: str
    description: str
    role: str
    protocol: str
    status: str
    status_detail: str
    draft_state: str
    local_project: str
    partner_project: str
    sync_user: str
    encryption: bool
    review: bool
    created: str
    last_activity: str | None
    errors: int
    pending: int
    folders: dict[str, int]
    own_fingerprint: str
    partner_fingerprint: str
    own_key_expires: str | None
    partner_key_expires: str | None
    key_warning: str
    channel_error: str
    tracker_error: str
    mail: dict[str, Any]
    exchange: str
    config: ConfigState


class MessageRow(BaseModel):
    """A message: `MessageInfo.to_json()`, as `messages KEY --json` prints it."""

    id: int
    direction: str
    type: str
    issue: str | None
    epoch: int
    seq: int
    folder: str
    hold: str | None
    reason_code: str
    reason_text: str
    file: str
    original_name: str | None
    size: int
    updated: str
    issue_key: str


class ChannelState(BaseModel):
    online: bool
    error: str


class TrackerState(BaseModel):
    ok: bool  # false: a side's tracker refused the credentials (nothing is sent to it)
    error: str


class Hooked(BaseModel):
    """A webhook taken: the tracker is looked at now."""

    tracker: str
    polled_soon: bool


class IssueInError(BaseModel):
    issue: str | None
    issue_key: str
    messages: int
    reason_code: str
    reason_text: str


class IntegrationStatus(BaseModel):
    """Where one synchronization stands: status, draft, channel, queues and issues in error."""

    key: str
    status: str
    status_detail: str
    draft_state: str
    channel: ChannelState
    tracker: TrackerState
    incoming: dict[str, int]
    outgoing: dict[str, int]
    errors: int
    pending: int
    key_warning: str
    issues_in_error: list[IssueInError]


class EngineState(BaseModel):
    running: bool
    failure: str | None


class DatabaseState(BaseModel):
    reachable: bool
    error: str


class Summary(BaseModel):
    total: int
    by_status: dict[str, int]
    with_errors: int
    error_messages: int
    pending_messages: int


class Health(BaseModel):
    """Whether the engine runs and its database answers, with counts over every synchronization."""

    status: str
    engine: EngineState
    database: DatabaseState
    synchronizations: Summary


REFUSED: dict[int | str, dict[str, Any]] = {401: {"model": Problem, "description": "no valid bearer token"}}
UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such synchronization"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem, "description": "the engine refused"}}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "unchanged since the ETag sent in If-None-Match (no body)"}
}


# -- the app --------------------------------------------------------------------------------


def create_app(installation: Installation, engine: Engine, views: ApiViews | None = None) -> FastAPI:
    """The API of one installation and its running engine; bearer tokens guard all but /health.
    Listings and metrics come from `views` (snapshots at most a second old, fresh after a status change)."""
    views = views or ApiViews(installation)
    app = FastAPI(
        title="Backbone TUI monitoring API",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> str:
        name = installation.tokens.verify(credentials.credentials) if credentials else None
        if name is None:
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        return name

    def known(key: str) -> None:
        with installation.db.session() as s:
            if s.get(Synchronization, key) is None:
                raise HTTPException(404, f"synchronization {key} does not exist")

    def listed(key: str) -> dict[str, Any]:
        """One synchronization's view from the listing (fresh when it was just created)."""
        info = views.listing.get().by_key.get(key)
        if info is None:
            known(key)
            views.listing.invalidate()
            info = views.listing.get().by_key.get(key)
        if info is None:
            raise HTTPException(404, f"synchronization {key} does not exist")
        return info

    open_routes = APIRouter(prefix=PREFIX)
    routes = APIRouter(prefix=PREFIX, dependencies=[Depends(require_token)], responses=REFUSED)

    @open_routes.get("/health", response_model=Health, responses={503: {"model": Health}})
    def health() -> Response:
        """Engine alive, database reachable, and counts over every synchronization (no token)."""
        database = {"reachable": True, "error": ""}
        counts = {"total": 0, "by_status": {}, "with_errors": 0, "error_messages": 0, "pending_messages": 0}
        try:
            with installation.db.session() as s:
                s.execute(text("SELECT 1"))
            counts = summary_counts(installation)
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health check
            database = {"reachable": False, "error": str(exc).splitlines()[0][:300]}
        healthy = engine.running and bool(database["reachable"])
        body = {
            "status": "ok" if healthy else "failing",
            "engine": {"running": engine.running, "failure": engine.failure},
            "database": database,
            "synchronizations": counts,
        }
        return _json(body, 200 if healthy else 503)

    @routes.get("/integrations", response_model=list[Integration], responses=NOT_MODIFIED)
    def integrations(request: Request) -> Response:
        """Every synchronization, as `sync list --json` prints them (304 for an unchanged ETag)."""
        listing = views.listing.get()
        return _conditional(request, listing.body, listing.etag, {"Content-Type": "application/json"})

    @routes.get("/integrations/{key}", response_model=Integration, responses=UNKNOWN)
    def integration(key: str) -> Response:
        """One synchronization, as `sync show KEY --json` prints it."""
        return _json(listed(key))

    @routes.get("/integrations/{key}/status", response_model=IntegrationStatus, responses=UNKNOWN)
    def status(key: str) -> Response:
        """Status, draft state, channel, messages per folder in and out, and the issues in error."""
        info = listed(key)
        issues: dict[str | None, dict[str, Any]] = {}
        for message in installation.messages(key, Folder.ERROR):
            entry = issues.setdefault(
                message.issue,
                {
                    "issue": message.issue,
                    "issue_key": message.issue_key,
                    "messages": 0,
                    "reason_code": message.reason_code,
                    "reason_text": message.reason_text,
                },
            )
            entry["messages"] += 1
        counts: dict[str, int] = info["folders"]
        return _json(
            {
                "key": info["key"],
                "status": info["status"],
                "status_detail": info["status_detail"],
                "draft_state": info["draft_state"],
                "channel": {"online": not info["channel_error"], "error": info["channel_error"]},
                "tracker": {"ok": not info["tracker_error"], "error": info["tracker_error"]},
                "incoming": {f: n for f, n in counts.items() if f not in OUTGOING_FOLDERS},
                "outgoing": {f: n for f, n in counts.items() if f in OUTGOING_FOLDERS},
                "errors": info["errors"],
                "pending": info["pending"],
                "key_warning": info["key_warning"],
                "issues_in_error": list(issues.values()),
            }
        )

    @routes.get("/integrations/{key}/errors", response_model=list[MessageRow], responses=UNKNOWN)
    def errors(key: str) -> Response:
        """The messages in ERROR, REJECTED and SEND_ERROR, oldest first."""
        known(key)
        rows = [message for folder in ERROR_FOLDERS for message in installation.messages(key, folder)]
        return _json([message.to_json() for message in sorted(rows, key=lambda m: m.id)])

    def change(key: str, start: bool) -> Response:
        known(key)
        try:
            infos = installation.start([key]) if start else installation.stop([key])
        except BackboneError as exc:
            raise HTTPException(409, str(exc)) from None
        engine.wake()
        return _json(infos[0].to_json())

    @routes.post("/integrations/{key}/start", response_model=Integration, responses={**UNKNOWN, **CONFLICT})
    def start(key: str) -> Response:
        """Start synchronizing issues (only a STOPPED synchronization)."""
        return change(key, True)

    @routes.post("/integrations/{key}/stop", response_model=Integration, responses={**UNKNOWN, **CONFLICT})
    def stop(key: str) -> Response:
        """Stop synchronizing issues (only a RUNNING synchronization)."""
        return change(key, False)

    @routes.post("/hooks/{tracker}", response_model=Hooked, responses=UNKNOWN)
    def hook(tracker: str) -> Response:
        """A tracker's webhook (e.g. Jira Automation's "Send web request" with this bearer token):
        the tracker is looked at now instead of at its next poll; the body is not read, the
        changes are read from the tracker as always."""
        try:
            installation.trackers.poll_soon(tracker)
        except BackboneError as exc:
            raise HTTPException(404, str(exc)) from None
        engine.wake()
        return _json({"tracker": tracker, "polled_soon": True})

    @routes.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format (OpenMetrics when the Accept header asks)",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                },
            },
            **NOT_MODIFIED,
        },
    )
    def prometheus(request: Request) -> Response:
        """Messages by direction, type and folder, apply latency, queue depths, channel errors,
        key expiry."""
        data, content_type, etag = views.exposition(request.headers.get("accept", ""))
        return _conditional(request, data, etag, {"Content-Type": content_type})

    app.include_router(open_routes)
    app.include_router(routes)
    return app


def _conditional(request: Request, body: bytes, etag: str, headers: dict[str, str]) -> Response:
    """The body with its ETag, or 304 Not Modified when the client already has it (RFC 9110)."""
    wanted = request.headers.get("if-none-match", "")
    if etag in (tag.strip() for tag in wanted.split(",")) or wanted.strip() == "*":
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, headers={**headers, "ETag": etag})


def _json(body: Any, status_code: int = 200) -> Response:
    """The view's JSON as is: it was built by the service layer, nothing to convert again."""
    return Response(json.dumps(body), status_code=status_code, media_type="application/json")


# -- where it listens -----------------------------------------------------------------------


@dataclass(frozen=True)
class Bind:
    """Where the API listens, and the TLS files when it serves HTTPS."""

    host: str
    port: int
    cert: Path | None = None
    key: Path | None = None

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.cert else 'http'}://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}{PREFIX}/"


def parse_bind(
    address: str, *, cert: str | None = None, key: str | None = None, insecure: bool = False
) -> Bind:
    """`HOST:PORT` checked: a non-loopback host needs TLS (cert and key) or `insecure`."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise FieldError("api", f"{address!r}: expected HOST:PORT, e.g. {DEFAULT_BIND}")
    if (cert is None) != (key is None):
        raise FieldError("api_cert" if cert is None else "api_key", "TLS needs both --api-cert and --api-key")
    for field, name in (("api_cert", cert), ("api_key", key)):
        if name is not None and not Path(name).is_file():
            raise FieldError(field, f"{name}: no such file")
    if not (cert or insecure or _is_loopback(host)):
        raise FieldError(
            "api",
            f"{address}: not a loopback address; serve it with TLS (--api-cert FILE --api-key FILE) "
            "or accept plain HTTP beyond this machine with --api-insecure-bind",
        )
    return Bind(host, int(port_text), Path(cert) if cert else None, Path(key) if key else None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket that names its protocol: asyncio sets TCP_NODELAY on the connections
    of such a socket only (else a small reply waits ~40 ms for the client's delayed ACK)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class ApiServer:
    """uvicorn serving the app on a socket bound up front (port 0: a free one), on its own thread."""

    def __init__(self, installation: Installation, engine: Engine, bind: Bind) -> None:
        self.views = ApiViews(installation)
        self.app = create_app(installation, engine, self.views)
        try:
            self.socket = _listen(bind.host, bind.port)
        except OSError as exc:
            raise FieldError(
                "api", f"{bind.host}:{bind.port}: cannot listen ({exc.strerror or exc})"
            ) from None
        self.bind = Bind(bind.host, self.socket.getsockname()[1], bind.cert, bind.key)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            ssl_certfile=str(bind.cert) if bind.cert else None,
            ssl_keyfile=str(bind.key) if bind.key else None,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.bind.url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Serve on a daemon thread; return once uvicorn accepts connections."""
        self.views.attach()
        self._thread = threading.Thread(target=self._serve, name="backbone-api", daemon=True)
        self._thread.start()
        thread = self._thread
        if not wait_until(lambda: self.server.started or not thread.is_alive(), timeout, 0.01):
            self.stop()
            raise BackboneError(f"--api {self.bind.host}:{self.bind.port}: the API server did not start")
        if not self.server.started:
            self.stop()
            raise BackboneError(f"--api {self.bind.host}:{self.bind.port}: the API server did not start")
        log.info("REST API listening on %s", self.url)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except Exception:  # noqa: BLE001 - logged; `running` turns False and the caller sees it
            log.exception("the REST API server failed")

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the requests in hand, close the socket and join the thread."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.socket.close()
        self.views.detach()
