"""Pilot tests of the admin's screens: answering a request, the wizards, configuring, publishing
and reviewing drafts; real homes, real engines (no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList

from engine.runtime.demo import Demo, request_pair
from engine.runtime.engine import Engine
from engine.vocab import SyncStatus
from screens.dialogs import Confirm, RowMenu

from .conftest import make_app, run, settle, wait_for


@pytest.fixture
def requested(tmp_path: Path) -> Iterator[Demo]:
    """Acme's request and Globex's side of it (INCOMING REQUEST), file channel, encrypted."""
    demo = request_pair(tmp_path / "demo")
    yield demo
    demo.close()


def test_an_incoming_request_is_accepted_from_the_row_menu_and_followed_live(requested: Demo) -> None:
    app = make_app(requested.globex, run_engine=True, poll_interval=0.2)

    async def scenario(pilot: Pilot[Any]) -> None:
        assert app.overview.model.rows[requested.key].status == SyncStatus.INCOMING_REQUEST
        app.overview.table.focus()
        await pilot.press("enter")
        menu = app.screen
        assert isinstance(menu, RowMenu)
        options = menu.query_one("#menu-options", OptionList)
        enabled = {
            options.get_option_at_index(i).id
            for i in range(options.option_count)
            if not options.get_option_at_index(i).disabled
        }
        assert {"accept", "decline"} <= enabled and "start" not in enabled
        await pilot.press("y")
        await settle(pilot)
        assert app.overview.model.rows[requested.key].status == SyncStatus.HANDSHAKE
        acme = Engine(requested.acme)

        def paired_live() -> bool:  # Acme's engine (another process in real life) answers in turn
            acme.run_once()
            return app.overview.model.rows[requested.key].status == SyncStatus.STOPPED

        await wait_for(pilot, paired_live)
        await wait_for(
            pilot,
            lambda: (
                acme.run_once() >= 0 and requested.acme.sync_info(requested.key).status == SyncStatus.STOPPED
            ),
        )

    run(app, scenario)


def test_declining_a_request_asks_first(requested: Demo) -> None:
    app = make_app(requested.globex)

    async def scenario(pilot: Pilot[Any]) -> None:
        app.overview.table.focus()
        assert app.overview.check_action("accept", ()) and app.overview.check_action("decline", ())
        await pilot.press("N")
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")  # cancel: nothing sent
        await settle(pilot)
        assert requested.globex.sync_info(requested.key).status == SyncStatus.INCOMING_REQUEST
        await pilot.press("N", "y")
        await settle(pilot)
        assert app.overview.model.rows[requested.key].status == SyncStatus.DECLINED
        assert app.overview.check_action("accept", ()) is None
        Engine(requested.globex).run_once()
        Engine(requested.acme).run_once()
        assert requested.acme.sync_info(requested.key).status == SyncStatus.DECLINED

    run(app, scenario)
