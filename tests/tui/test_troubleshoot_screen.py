"""Pilot tests of the troubleshoot screen: Analyze's banners, the error table with checks and
actions (a reason asked and recorded), live refresh that keeps the cursor and the checks, and the
global view; real homes and a real engine pass."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import DataTable, OptionList, TextArea

from engine.runtime.demo import Demo
from engine.store.models import History
from engine.vocab import Reason
from screens.review import MessageDialog
from screens.troubleshoot import ActionMenu, TroubleshootScreen

from ..test_bad_input import create_body, drop, envelope, run_globex
from .conftest import make_app, run, settle, wait_for


def _unmapped(paired: Demo, summary: str) -> str:
    """A partner issue whose priority value has no mapping here: its create waits in ERROR."""
    pair = uuid.uuid4().hex
    drop(paired, f"{summary}.bac", envelope(paired, create_body(summary, urgency="u9"), pair=pair))
    run_globex(paired)
    return pair


def test_banners_error_table_and_a_skip_with_a_reason(paired: Demo) -> None:
    first, second = _unmapped(paired, "one"), _unmapped(paired, "two")
    app = make_app(paired.globex)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("t")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TroubleshootScreen)
        banners = screen.query_one("#ts-banners", OptionList)
        assert banners.display and banners.option_count >= 1
        assert "VALUE_NOT_MAPPED" in str(banners.get_option_at_index(0).prompt) or "ERROR" in str(
            banners.get_option_at_index(0).prompt
        )
        table = screen.query_one("#ts-problems", DataTable)
        assert table.row_count == 2
        assert {row.reason_code for row in screen.problems} == {Reason.VALUE_NOT_MAPPED}
        assert {row.pair_id for row in screen.problems} == {first, second}
        await pilot.press("space", "space")  # check both (the cursor moves down)
        assert len(screen.checked) == 2
        await pilot.press("enter")  # the actions that apply to the checked rows
        menu = app.screen
        assert isinstance(menu, ActionMenu)
        options = menu.query_one("#menu-options", OptionList)
        enabled = {
            options.get_option_at_index(i).id
            for i in range(options.option_count)
            if not options.get_option_at_index(i).disabled
        }
        assert enabled == {"retry", "skip", "resync", "resend"}
        await pilot.press("escape")
        await pilot.press("k")
        dialog = app.screen
        assert isinstance(dialog, MessageDialog)
        await pilot.press("ctrl+s")  # no reason: refused, the dialog stays
        assert app.screen is dialog
        dialog.query_one("#message-text", TextArea).insert("the partner sent a test value")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, TroubleshootScreen)
        assert table.row_count == 0 and not screen.checked
        assert any("skipped" in text for _, text in app.notices)
        with paired.globex.db.session() as s:
            notes = [h.text for h in s.exec(select(History).where(History.kind == "operator")).all()]
        assert len(notes) == 2 and all("the partner sent a test value" in text for text in notes)

    run(app, scenario)


def test_the_table_follows_the_engine_and_keeps_cursor_and_checks(paired: Demo) -> None:
    _unmapped(paired, "a")
    _unmapped(paired, "b")
    app = make_app(paired.globex)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("t")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TroubleshootScreen)
        table = screen.query_one("#ts-problems", DataTable)
        assert table.row_count == 2
        await pilot.press("space")  # checks the first, cursor on the second
        checked, cursor = set(screen.checked), table.cursor_row
        _unmapped(paired, "c")  # the engine files a third while the screen is open
        await wait_for(pilot, lambda: table.row_count == 3)
        assert screen.checked == checked and table.cursor_row == cursor
        assert str(table.get_row_at(0)[0]) == "[x]" and str(table.get_row_at(2)[0]) == "[ ]"

    run(app, scenario)


def test_the_global_view_lists_every_synchronization(paired: Demo) -> None:
    _unmapped(paired, "global")
    app = make_app(paired.globex)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("T")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TroubleshootScreen) and screen.key is None
        table = screen.query_one("#ts-problems", DataTable)
        assert table.row_count == 1 and str(table.get_row_at(0)[1]) == paired.key
        banners = screen.query_one("#ts-banners", OptionList)
        assert paired.key in str(banners.get_option_at_index(0).prompt)
        await pilot.press("y")  # resync the row's issue: it is not synced here, so it says so
        await settle(pilot)
        assert app.notices

    run(app, scenario)
