"""Whole-screen SVG snapshots of the overview in its main states (fixed clock and sizes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from engine.service.installation import Installation
from engine.vocab import SyncStatus

from .conftest import make_app, settle

SnapCompare = Callable[..., bool]


def test_empty_home(snap_compare: SnapCompare, home: Installation) -> None:
    assert snap_compare(make_app(home), run_before=settle, terminal_size=(80, 24))


def test_mixed_statuses(snap_compare: SnapCompare, mixed: Installation) -> None:
    assert snap_compare(make_app(mixed), run_before=settle, terminal_size=(100, 30))


def test_selection_with_a_common_action(snap_compare: SnapCompare, mixed: Installation) -> None:
    app = make_app(mixed)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app.overview.check_status(SyncStatus.STOPPED)
        app.clear_notifications()

    assert snap_compare(app, run_before=run_before, terminal_size=(100, 30))


def test_selection_without_a_common_action(snap_compare: SnapCompare, mixed: Installation) -> None:
    app = make_app(mixed)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)

    # cursor starts on the first row by name; check it and the next two
    assert snap_compare(
        app, run_before=run_before, press=["space", "down", "space", "down", "space"], terminal_size=(80, 24)
    )


def test_edit_dialog(snap_compare: SnapCompare, mixed: Installation) -> None:
    assert snap_compare(make_app(mixed), run_before=settle, press=["down", "e"], terminal_size=(80, 24))


def test_row_menu(snap_compare: SnapCompare, mixed: Installation) -> None:
    assert snap_compare(make_app(mixed), run_before=settle, press=["enter"], terminal_size=(100, 30))


def test_delete_confirmation_project_overview(snap_compare: SnapCompare, mixed: Installation) -> None:
    assert snap_compare(
        make_app(mixed, project="ACME"), run_before=settle, press=["d"], terminal_size=(80, 24)
    )
