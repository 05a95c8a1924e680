"""The overview model and the table layout, without running an app."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

from rich.cells import cell_len

from engine.service.installation import Installation
from engine.vocab import SyncStatus
from screens.model import START, STOP, OverviewModel, format_age
from screens.sync_table import COLUMNS, fit, layout_columns

from .conftest import NOW


def test_apply_reports_changes_and_keeps_the_selection(mixed: Installation) -> None:
    model = OverviewModel()
    first = model.apply(mixed.list_syncs())
    assert first.order_changed and len(first.changed) == 7
    model.toggle("ACME-BETA-1")
    model.toggle("BETA-GAMMA-1")
    again = model.apply(mixed.list_syncs())
    assert not again.changed and not again.order_changed
    rows = [
        replace(i, status=SyncStatus.STOPPED) if i.key == "ACME-BETA-1" else i
        for i in mixed.list_syncs()
        if i.key != "BETA-GAMMA-1"
    ]
    diff = model.apply(rows)
    assert diff.changed == {"ACME-BETA-1", "BETA-GAMMA-1"}
    assert model.selected == {"ACME-BETA-1"}


def test_the_first_load_repaints_even_when_empty() -> None:
    model = OverviewModel()
    assert model.apply([]).order_changed and model.loaded
    assert not model.apply([]).order_changed


def test_bulk_state_follows_the_seed_rules(mixed: Installation) -> None:
    model = OverviewModel()
    model.apply(mixed.list_syncs())
    assert model.bulk().action is None and "space" in model.bulk().hint
    assert model.select_status(SyncStatus.STOPPED) == 2
    assert model.bulk().action == START
    model.select_status(SyncStatus.RUNNING)
    assert model.bulk().action == STOP
    model.toggle("ACME-GAMMA-1")
    state = model.bulk()
    assert state.action is None and "2 RUNNING, 1 STOPPED" in state.hint


def test_filter_and_sort(mixed: Installation) -> None:
    model = OverviewModel()
    model.apply(mixed.list_syncs())
    model.set_filter(SyncStatus.RUNNING)
    assert set(model.visible) == {"ACME-BETA-1", "DELTA-ACME-1"}
    model.set_visible_selected(True)
    assert model.all_visible_selected and model.hidden_selected == 0
    model.set_filter(None)
    assert model.hidden_selected == 0 and not model.all_visible_selected
    model.sort_by("status")
    assert [model.rows[k].status for k in model.visible][:1] == [SyncStatus.REQUEST_SENT]
    model.sort_by("status")
    assert model.sort_reverse
    model.sort_by("activity", reverse=True)
    assert model.visible[:2] == ["ACME-BETA-1", "DELTA-ACME-1"]


def test_format_age_and_cells() -> None:
    assert format_age(None, NOW) == "-"
    assert format_age(NOW - timedelta(seconds=5), NOW) == "just now"
    assert format_age(NOW - timedelta(minutes=59), NOW) == "59 min ago"
    assert format_age((NOW - timedelta(hours=2)).replace(tzinfo=None), NOW) == "2 h ago"
    assert format_age(NOW - timedelta(days=40), NOW) == "2026-10-11"
    assert fit("abcdef", 4) == "abc~" and fit("ab", 4, right=True) == "  ab"
    assert cell_len(fit("日本語", 4)) == 4 and fit("日本語", 4).endswith("~")


def test_layout_fits_every_width() -> None:
    for width in (60, 79, 80, 99, 100, 120, 160, 250):
        layout = layout_columns(width)
        used = sum(size for _, size in layout) + len(layout) - 1
        assert used <= max(width, 42)
        ids = [column.id for column, _ in layout]
        assert {"check", "name", "status", "menu"} <= set(ids)
    assert len(layout_columns(160)) == len(COLUMNS)


def test_engine_events_coalesce_but_failures_are_never_dropped() -> None:
    from backbone_tui.app import EngineEvent
    from engine.events import EngineFailed, MessageMoved, SyncChanged

    changed = EngineEvent(SyncChanged("A-1", "RUNNING"))
    moved = EngineEvent(MessageMoved("A-1", 3, "SENT", ""))
    failed = EngineEvent(EngineFailed("disk full"))
    assert moved.can_replace(changed) and changed.can_replace(moved)
    assert not moved.can_replace(failed) and not failed.can_replace(changed)


def test_engine_does_not_import_textual() -> None:
    code = (
        "import importlib, pkgutil, sys, engine; "  # every module of every room
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(engine.__path__, 'engine.')]; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'screens', 'backbone_tui')]; "
        "sys.exit(f'engine imports {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
