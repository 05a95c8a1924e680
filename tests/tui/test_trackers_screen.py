"""The trackers screen (`K`) against a real Redmine: add an account (errors under their field),
test it, see a refusal of wrong credentials, change them back, remove it after asking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from engine.service.installation import Installation
from screens.trackers import TrackerForm, TrackersScreen
from tests.redmine_server import RedmineServer, redmine  # noqa: F401 - the session fixture

from .conftest import make_app, run, settle


def _screen(pilot: Pilot[Any]) -> TrackersScreen:
    screen = pilot.app.screen
    assert isinstance(screen, TrackersScreen), screen
    return screen


def _form(pilot: Pilot[Any]) -> TrackerForm:
    screen = pilot.app.screen
    assert isinstance(screen, TrackerForm), screen
    return screen


def _cell(screen: TrackersScreen, name: str, column: str) -> str:
    return str(screen.query_one("#trackers", DataTable).get_cell(name, column))


def _text(screen: Any, widget_id: str) -> str:
    return str(screen.query_one(f"#{widget_id}", Static).render())


def _fill(form: TrackerForm, **values: str) -> None:
    for widget_id, value in values.items():
        widget = form.query_one(f"#{widget_id}")
        assert isinstance(widget, Input | Select)
        widget.value = value


def test_add_test_refuse_change_and_remove_a_redmine(tmp_path: Path, redmine: RedmineServer) -> None:  # noqa: F811
    inst = Installation(tmp_path / "home")
    inst.tracker.create_project("ACME", "Acme")
    app = make_app(inst)
    sync_marker, write_marker = redmine.marker_field_ids

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("K")
        await settle(pilot)
        screen = _screen(pilot)
        assert _cell(screen, "embedded", "State") == "always there"
        await pilot.press("a")
        await settle(pilot)
        form = _form(pilot)
        assert form.focused is form.query_one("#name", Input)  # typing goes to the first field
        assert form.query_one("#auth", Select).value == "token"  # a new Jira: Cloud's e-mail + token
        _fill(form, kind="redmine")
        await pilot.pause()
        assert form.query_one("#auth", Select).value == "apikey"
        assert not form.query_one("#api-row").display  # Jira only
        _fill(form, name="redmine", url="redmine.local", user=redmine.sync_login, secret=redmine.sync_key)
        _fill(form, options=f"sync_marker_field_id={sync_marker} write_marker_field_id={write_marker}")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "expected http(s)://host" in _text(form, "err-url")  # the engine's check, at its field
        _fill(form, url=redmine.url)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert pilot.app.screen is screen and _cell(screen, "redmine", "State") == "ok"
        assert "Tracker redmine saved" in _text(screen, "tracker-result")

        table = screen.query_one("#trackers", DataTable)
        table.move_cursor(row=table.get_row_index("redmine"))
        await pilot.press("t")
        await settle(pilot)
        result = _text(screen, "tracker-result")
        assert "reachable and authenticated as sync-bot" in result and "All checks passed" in result

        await pilot.press("u")  # wrong credentials: the test fails and the account remembers it
        await settle(pilot)
        options = _form(pilot).query_one("#options", Input).value
        assert options == f"sync_marker_field_id={sync_marker} write_marker_field_id={write_marker}"
        _fill(_form(pilot), secret="0" * 40)
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert "FAILED: tracker redmine: the credentials were refused" in _text(screen, "tracker-result")
        assert _cell(screen, "redmine", "State").startswith("credentials refused")
        await pilot.press("u")  # the secret field left empty keeps the stored one; a new one clears it
        await settle(pilot)
        _fill(_form(pilot), secret=redmine.sync_key)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert _cell(screen, "redmine", "State") == "ok"

        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert "Tracker redmine removed" in _text(screen, "tracker-result")
        assert [info.name for info in inst.trackers.accounts()] == ["embedded"]
        await pilot.press("escape")
        await settle(pilot)
        assert pilot.app.screen is pilot.app.overview  # type: ignore[attr-defined]

    try:
        run(app, scenario, size=(120, 45))
    finally:
        inst.close()


def test_changing_a_jira_shows_what_is_stored(tmp_path: Path) -> None:
    inst = Installation(tmp_path / "home")
    inst.trackers.add(
        "jira", "jira", "https://acme.example", auth="pat", user="sync-bot", secret="s", api_version=2
    )
    app = make_app(inst)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("K")
        await settle(pilot)
        await pilot.press("down", "u")
        await settle(pilot)
        form = _form(pilot)
        assert form.query_one("#auth", Select).value == "pat"  # not reset to the kind's first
        assert form.query_one("#api_version", Select).value == "2" and form.query_one("#api-row").display
        assert form.query_one("#secret", Input).value == ""  # never shown
        _fill(form, poll="0.05")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "from 0.1 to 3600" in _text(form, "err-poll")
        await pilot.press("escape")
        await settle(pilot)
        assert inst.trackers.info("jira").poll_interval == 1.0

    try:
        run(app, scenario, size=(120, 45))
    finally:
        inst.close()
