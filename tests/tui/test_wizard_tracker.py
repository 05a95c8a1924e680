"""The wizard with a Redmine added: the local project may live in it (its projects read from the
real Redmine when it is chosen, its account's user proposed as the synchronization user), and an
unreachable tracker is an error under the tracker field, not a crash."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Select

from engine.service.installation import Installation
from tests.mailserver import free_port
from tests.redmine_server import RedmineServer, redmine  # noqa: F401 - the session fixture

from .conftest import make_app, run, settle
from .test_wizard import error_of, next_page, put, wizard


def _with_redmine(tmp_path: Path, server: RedmineServer, url: str | None = None) -> Installation:
    inst = Installation(tmp_path / "acme")
    inst.tracker.create_project("ACME", "Acme")
    sync_marker, write_marker = server.marker_field_ids
    inst.trackers.add(
        "redmine",
        "redmine",
        url or server.url,
        auth="apikey",
        user=server.sync_login,
        secret=server.sync_key,
        options={"sync_marker_field_id": sync_marker, "write_marker_field_id": write_marker},
    )
    return inst


def test_a_primary_whose_project_lives_in_redmine(tmp_path: Path, redmine: RedmineServer) -> None:  # noqa: F811
    project = redmine.new_project(f"w{uuid.uuid4().hex[:10]}")
    acme = _with_redmine(tmp_path, redmine)
    app = make_app(acme)
    out = tmp_path / "hs.json"

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("n")
        screen = wizard(pilot)
        await next_page(pilot, "project")
        assert screen.query_one("#tracker", Select).value == "embedded"
        put(screen, tracker="redmine")
        await settle(pilot)
        options = [str(value) for _, value in screen.query_one("#project", Select)._options]
        assert project in options and "ACME" not in options
        assert screen.query_one("#user", Input).value == redmine.sync_login  # its echoes are known
        put(screen, project=project)
        await next_page(pilot, "protocol")
        put(screen, protocol__file=True)
        await pilot.pause()
        await next_page(pilot, "exchange")
        put(screen, exchange=str(tmp_path / "exchange"))
        await next_page(pilot, "security")
        await next_page(pilot, "name")
        put(screen, name="Web <-> Globex", partner_project="GLOBEX")
        await next_page(pilot, "handshake_out")
        put(screen, handshake_out=str(out))
        await next_page(pilot, "done")

    try:
        run(app, scenario)
        (side,) = acme.queries.sides_of(acme.list_syncs()[0].key)
        assert (side.tracker, side.project) == ("redmine", project) and out.is_file()
    finally:
        acme.close()


def test_an_unreachable_tracker_is_named_under_its_field(tmp_path: Path, redmine: RedmineServer) -> None:  # noqa: F811
    acme = _with_redmine(tmp_path, redmine, url=f"http://127.0.0.1:{free_port()}")
    app = make_app(acme)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("n")
        screen = wizard(pilot)
        await next_page(pilot, "project")
        put(screen, tracker="redmine")
        await settle(pilot, timeout=60)
        assert "redmine: its projects could not be read" in error_of(screen, "tracker")
        options = [str(value) for _, value in screen.query_one("#project", Select)._options]
        assert "ACME" in options  # still the embedded tracker's
        assert screen.tracker() == "redmine"

    try:
        run(app, scenario)
    finally:
        acme.close()
