"""Pilot tests of the history screen: events of every issue, one issue's fields and their origin."""

from __future__ import annotations

import time
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from engine.runtime.demo import Demo
from engine.runtime.engine import Engine
from screens.history import HistoryScreen

from ..conftest import issue_by_summary, sync_all
from .conftest import make_app, run, settle


def _cells(table: DataTable[Any], column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


def test_history_of_every_issue_then_one_issue_with_its_fields(paired: Demo) -> None:
    acme_id = paired.acme.tracker.create_issue("ACME", "Task", {"summary": "watched"}, as_user="alice")
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "other"}, as_user="alice")
    sync_all(paired)
    globex = issue_by_summary(paired.globex, "GLOBEX", "watched")
    assert globex is not None
    paired.acme.tracker.update_issue(acme_id, {"description": "acme's"}, as_user="alice")
    Engine(paired.acme).run_once()
    time.sleep(0.01)
    paired.globex.tracker.update_issue(globex.id, {"description": "globex's"}, as_user="carol")
    Engine(paired.globex).run_once()
    sync_all(paired)
    app = make_app(paired.acme)
    watched = f"ACME-{acme_id}"

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("h")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        events = screen.query_one("#history-events", DataTable)
        issues = set(_cells(events, 1))
        assert watched in issues and len(issues - {"-"}) == 2
        assert "conflict" in _cells(events, 2)
        assert not screen.query_one("#history-fields", DataTable).display
        # enter on an event of the watched issue narrows to it and shows its fields
        row = _cells(events, 1).index(watched)
        events.move_cursor(row=row)
        await pilot.press("enter")
        await settle(pilot)
        assert screen.issue == watched
        assert set(_cells(events, 1)) == {watched}
        fields = screen.query_one("#history-fields", DataTable)
        assert fields.display
        by_field = {str(fields.get_row_at(i)[0]): fields.get_row_at(i) for i in range(fields.row_count)}
        assert str(by_field["description"][1]) == '"globex\'s"'
        assert str(by_field["description"][2]) == "partner"
        assert str(by_field["summary"][2]) == "here" and "sent seq 1" in str(by_field["summary"][4])
        # an issue typed by hand, then back to every issue
        await pilot.press("a")
        await settle(pilot)
        assert len(set(_cells(events, 1)) - {"-"}) == 2
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*watched, "enter")
        await settle(pilot)
        assert set(_cells(events, 1)) == {watched}
        await pilot.press("escape")
        assert not isinstance(app.screen, HistoryScreen)

    run(app, scenario)
