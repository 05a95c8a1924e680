"""The REST API over real HTTP: uvicorn on a free loopback port in front of a running engine."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from backbone_tui.cli import main
from engine.errors import FieldError
from engine.runtime.api import ApiServer, parse_bind
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine, wait_until
from engine.service.installation import Installation
from engine.store.models import SyncSide
from engine.trackers.base import utcnow
from engine.vocab import Folder, SyncStatus

from .conftest import issue_by_summary
from .test_bad_input import create_body, drop, envelope


@dataclass
class Served:
    """An installation whose engine runs, with its API listening and a valid token."""

    inst: Installation
    engine: Engine
    server: ApiServer
    token: str
    client: httpx.Client

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str) -> httpx.Response:
        return self.client.get(f"/api/1{path}", headers=self.auth)

    def post(self, path: str) -> httpx.Response:
        return self.client.post(f"/api/1{path}", headers=self.auth)


@contextmanager
def serving(inst: Installation) -> Iterator[Served]:
    """The engine and the API of `inst`, as `backbone run --api 127.0.0.1:0` starts them."""
    token = inst.tokens.create(f"tests-{uuid.uuid4().hex[:8]}")
    engine = Engine(inst)
    server = ApiServer(inst, engine, parse_bind("127.0.0.1:0"))
    engine.start()
    server.start()
    client = httpx.Client(base_url=server.bind.origin, timeout=30)
    try:
        yield Served(inst, engine, server, token, client)
    finally:
        client.close()
        server.stop()
        engine.stop()


@pytest.fixture
def served(paired: Demo) -> Iterator[Served]:
    """Globex (the secondary of a running pair) served; Acme's passes run in the test's thread."""
    with serving(paired.globex) as served:
        yield served


def protected_routes(served: Served, key: str) -> list[tuple[str, str]]:
    """(method, path) of every operation in the OpenAPI document but /health."""
    document = served.client.get("/api/1/openapi.json").json()
    routes = [
        (method.upper(), path.replace("{key}", key).replace("{tracker}", "embedded"))
        for path, operations in document["paths"].items()
        for method in operations
        if path != "/api/1/health"
    ]
    assert len(routes) == 8, routes
    return routes


def test_health_needs_no_token_and_reports_engine_database_and_counts(served: Served) -> None:
    response = served.client.get("/api/1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["engine"] == {"running": True, "failure": None}
    assert body["database"]["reachable"] is True
    assert body["synchronizations"]["total"] == 1
    assert body["synchronizations"]["by_status"] == {SyncStatus.RUNNING: 1}


def test_every_route_but_health_refuses_a_missing_wrong_or_revoked_token(
    served: Served, paired: Demo
) -> None:
    revoked = served.inst.tokens.create("revoked")
    served.inst.tokens.revoke("revoked")
    for method, path in protected_routes(served, paired.key):
        for headers in (
            {},
            {"Authorization": "Bearer bbt_not-a-token"},
            {"Authorization": f"Bearer {revoked}"},
            {"Authorization": f"Basic {served.token}"},
        ):
            response = served.client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
        assert served.client.request(method, path, headers=served.auth).status_code != 401, path


def test_a_token_revoked_while_the_api_runs_is_refused_at_once(served: Served) -> None:
    assert served.get("/integrations").status_code == 200
    name = served.inst.tokens.list_tokens()[-1].name
    assert main(["--home", str(served.inst.paths.root), "api", "token", "revoke", name]) == 0
    assert served.get("/integrations").status_code == 401


def test_integrations_are_the_views_the_cli_prints_as_json(
    served: Served, paired: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = served.get("/integrations")
    one = served.get(f"/integrations/{paired.key}")
    assert listed.status_code == one.status_code == 200
    assert main(["--home", str(paired.globex.paths.root), "sync", "show", paired.key, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert one.json() == cli
    assert listed.json() == [cli]
    assert served.get("/integrations/NOPE-1").status_code == 404


def test_start_and_stop_go_through_the_service_layer(served: Served, paired: Demo) -> None:
    assert served.get(f"/integrations/{paired.key}").json()["status"] == SyncStatus.RUNNING
    stopped = served.post(f"/integrations/{paired.key}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == SyncStatus.STOPPED
    assert served.inst.sync_info(paired.key).status == SyncStatus.STOPPED
    assert (
        served.get(f"/integrations/{paired.key}").json()["status"] == SyncStatus.STOPPED
    )  # not a stale view
    again = served.post(f"/integrations/{paired.key}/stop")
    assert again.status_code == 409
    assert again.json() == {"detail": f"{paired.key} is STOPPED: only a RUNNING one can be stopped"}
    started = served.post(f"/integrations/{paired.key}/start")
    assert started.status_code == 200 and started.json()["status"] == SyncStatus.RUNNING
    assert served.post("/integrations/NOPE-1/start").status_code == 404


def test_status_and_errors_show_the_issue_a_bad_message_put_in_error(served: Served, paired: Demo) -> None:
    pair = uuid.uuid4().hex
    drop(paired, "bad-value.bac", envelope(paired, create_body("v", urgency="u9"), pair=pair))
    assert wait_until(lambda: served.get(f"/integrations/{paired.key}/status").json()["errors"] == 1, 20)
    status = served.get(f"/integrations/{paired.key}/status").json()
    assert status["channel"] == {"online": True, "error": ""}
    assert status["tracker"] == {"ok": True, "error": ""}
    assert status["incoming"][Folder.ERROR] == 1
    assert set(status["outgoing"]) <= {Folder.SEND, Folder.SENT, Folder.SEND_ERROR}
    assert status["issues_in_error"] == [
        {
            "issue": pair,
            "issue_key": "",
            "messages": 1,
            "reason_code": "VALUE_NOT_MAPPED",
            "reason_text": status["issues_in_error"][0]["reason_text"],
        }
    ]
    errors = served.get(f"/integrations/{paired.key}/errors").json()
    assert [(e["original_name"], e["folder"], e["reason_code"]) for e in errors] == [
        ("bad-value.bac", Folder.ERROR, "VALUE_NOT_MAPPED")
    ]
    assert errors == [m.to_json() for m in paired.globex.messages(paired.key, Folder.ERROR)]
    health = served.client.get("/api/1/health").json()["synchronizations"]
    assert (health["with_errors"], health["error_messages"]) == (1, 1)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition (None: not there)."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_text = sample.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if metric_name == name and found == labels:
            return float(value)
    return None


def test_metrics_count_moves_time_applies_and_read_queues_and_keys(served: Served, paired: Demo) -> None:
    with paired.globex.db.write() as s:
        side = s.exec(select(SyncSide)).one()
        side.own_key_expires = utcnow() + timedelta(days=10)
        s.add(side)
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "measured"}, as_user="alice")
    Engine(paired.acme).run_once()  # Acme sends; Globex's running engine applies
    assert wait_until(lambda: issue_by_summary(paired.globex, "GLOBEX", "measured") is not None, 20)

    def scraped() -> str:
        response = served.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    assert wait_until(lambda: (metric(scraped(), "backbone_apply_latency_seconds_count") or 0) >= 1, 20)
    text = scraped()
    moved = metric(text, "backbone_messages_total", direction="in", type="ISSUE", folder=Folder.PROCESSED)
    assert moved is not None and moved >= 1
    assert metric(text, "backbone_messages_total", direction="in", type="ISSUE", folder=Folder.RECEIVE)
    assert metric(text, "backbone_channel_error", sync=paired.key, project="GLOBEX") == 0
    expiry = metric(text, "backbone_key_expiry_seconds", sync=paired.key, project="GLOBEX", key="own")
    assert expiry is not None and 9 * 86400 < expiry <= 10 * 86400
    drop(paired, "bad.bac", envelope(paired, create_body("q", urgency="u9"), pair=uuid.uuid4().hex))
    assert wait_until(
        lambda: metric(scraped(), "backbone_queue_depth", sync=paired.key, folder=Folder.ERROR) == 1, 20
    )


def test_openapi_document_and_docs_are_served(served: Served) -> None:
    document = served.client.get("/api/1/openapi.json")
    assert document.status_code == 200
    assert "bearer" in str(document.json()["components"]["securitySchemes"]).lower()
    assert served.client.get("/api/1/docs").status_code == 200


# -- the command line -----------------------------------------------------------------------


def test_api_token_commands_show_the_secret_once_and_store_a_digest(
    home: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(home.paths.root)
    assert main(["--home", root, "api", "token", "create", "grafana"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("bbt_") and len(secret) > 40
    assert home.tokens.verify(secret) == "grafana"
    assert secret not in home.paths.database.read_bytes().decode("latin-1")
    assert main(["--home", root, "api", "token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "grafana" in listing and secret not in listing
    assert main(["--home", root, "api", "token", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert set(row) == {"name", "created", "last_used", "revoked"} and row["revoked"] is None
    assert main(["--home", root, "api", "token", "create", "grafana"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["--home", root, "api", "token", "revoke", "grafana"]) == 0
    assert home.tokens.verify(secret) is None
    assert main(["--home", root, "api", "token", "revoke", "grafana"]) == 1
    assert main(["--home", root, "api", "token", "revoke", "nobody"]) == 1
    assert "no API token named 'nobody'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--api", "0.0.0.0:8642"], "backbone: --api: 0.0.0.0:8642: not a loopback address"),
        (["--api", "192.0.2.7:1"], "backbone: --api: 192.0.2.7:1: not a loopback address"),
        (["--api", "8642"], "backbone: --api: '8642': expected HOST:PORT"),
        (["--api", "0.0.0.0:1", "--api-cert", "c.pem"], "backbone: --api-key: TLS needs both"),
        (["--api", "127.0.0.1:1", "--once"], "backbone: --api: not with --once"),
    ],
)
def test_run_refuses_a_bad_or_open_bind_in_one_line(
    home: Installation, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(["--home", str(home.paths.root), "run", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert not home.lock.held


def test_a_non_loopback_bind_is_allowed_with_tls_or_insecure_bind(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    assert parse_bind("0.0.0.0:8642", insecure=True).host == "0.0.0.0"
    assert parse_bind("[::]:8642", cert=str(cert), key=str(key)).url == "https://[::]:8642/api/1/"
    assert parse_bind("localhost:8642").url == "http://localhost:8642/api/1/"
    with pytest.raises(FieldError, match="no such file"):
        parse_bind("0.0.0.0:8642", cert=str(tmp_path / "none"), key=str(key))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_tls_serves_https(paired: Demo, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    engine = Engine(paired.globex)
    server = ApiServer(paired.globex, engine, parse_bind("127.0.0.1:0", cert=str(cert), key=str(key)))
    engine.start()
    server.start()
    try:
        assert server.url.startswith("https://")
        response = httpx.get(f"{server.url}health", verify=False)
        assert response.status_code == 200 and response.json()["status"] == "ok"
    finally:
        server.stop()
        engine.stop()


def test_run_api_serves_until_ctrl_c(paired: Demo) -> None:
    home = paired.globex.paths.root
    token = paired.globex.tokens.create("run")
    paired.globex.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "backbone_tui.cli", "--home", str(home), "run", "--api", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"REST API on (http://127\.0\.0\.1:\d+/api/1/)", first)
        assert found, first
        url = found.group(1)
        assert "engine running" in process.stdout.readline()
        assert httpx.get(f"{url}health").json()["engine"]["running"] is True
        listed = httpx.get(f"{url}integrations", headers={"Authorization": f"Bearer {token}"})
        assert [row["key"] for row in listed.json()] == [paired.key]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "engine stopped" in out
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}health")


def test_a_poller_that_sends_the_etag_back_gets_304_until_something_changes(
    served: Served, paired: Demo
) -> None:
    first = served.get("/integrations")
    etag = first.headers["etag"]
    again = served.client.get("/api/1/integrations", headers={**served.auth, "If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    other = served.client.get("/api/1/integrations", headers={**served.auth, "If-None-Match": '"other"'})
    assert other.status_code == 200 and other.content == first.content
    assert served.post(f"/integrations/{paired.key}/stop").status_code == 200  # a status change
    changed = served.client.get("/api/1/integrations", headers={**served.auth, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    metrics = served.get("/metrics")
    tag = metrics.headers["etag"]
    conditional = served.client.get("/api/1/metrics", headers={**served.auth, "If-None-Match": tag})
    assert conditional.status_code == 304 or conditional.headers["etag"] != tag  # never the same body again
    no_token = served.client.get("/api/1/integrations", headers={"If-None-Match": etag})
    assert no_token.status_code == 401  # a tag is no credential
