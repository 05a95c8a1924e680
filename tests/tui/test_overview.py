"""Pilot tests of the overview against real homes (engine service API, no mocks)."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import Any, cast

from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, OptionList, Select, Static, TextArea

from engine.events import SyncChanged
from engine.runtime.demo import Demo
from engine.service.installation import Installation
from engine.store.home import EngineLock
from engine.vocab import ALL_STATUSES, SyncStatus
from screens.dialogs import ConfirmDelete, EditDialog, HelpScreen, RowMenu
from screens.troubleshoot import TroubleshootScreen
from tests.conftest import sync_all

from .conftest import make_app, run, settle, table_lines, wait_for

RUNNING_KEYS = {"ACME-BETA-1", "DELTA-ACME-1"}
STOPPED_KEYS = {"ACME-GAMMA-1", "BETA-GAMMA-1"}


def statuses(inst: Installation) -> dict[str, str]:
    return {info.key: info.status for info in inst.list_syncs()}


async def goto(pilot: Pilot[Any], key: str) -> None:
    """Put the table cursor on `key`."""
    app = pilot.app
    table = app.overview.table  # type: ignore[attr-defined]
    table.focus()
    table.move_cursor(app.overview.model.index[key])  # type: ignore[attr-defined]
    await pilot.pause()


def text_of(widget: Static) -> str:
    return str(widget.render())


# -- listing and scope ------------------------------------------------------------------------


def test_global_overview_lists_every_synchronization_with_counts(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        model = app.overview.model
        assert set(model.rows) == set(statuses(mixed))
        lines = table_lines(app)
        assert lines[0].split()[:2] == ["Name", "^"]
        row = next(line for line in lines if "ACME-BETA-1" in line)
        assert "RUNNING" in row and " 2 " in row and " 3 " in row and "12 min ago" in row
        assert row.startswith("[ ]") and row.rstrip().endswith("...")
        # a name is user data: shown literally, never parsed as markup
        assert any("[red]Acme to" in line for line in lines)
        assert "7 synchronizations" in text_of(app.overview.query_one("#counts", Static))
        assert app.sub_title == "engine off (view only)"

    run(app, scenario)


def test_project_overview_and_the_key_that_switches_scope(mixed: Installation) -> None:
    app = make_app(mixed, project="BETA")

    async def scenario(pilot: Pilot[Any]) -> None:
        model = app.overview.model
        assert set(model.rows) == {"ACME-BETA-1", "BETA-GAMMA-1"}
        assert "project BETA" in text_of(app.overview.query_one("#title", Static))
        await pilot.press("p")
        await settle(pilot)
        assert model.scope is None and len(model.rows) == 7
        await goto(pilot, "GAMMA-OMEGA-1")
        await pilot.press("p")  # back to the project the overview was opened for
        await settle(pilot)
        assert model.scope == "BETA" and set(model.rows) == {"ACME-BETA-1", "BETA-GAMMA-1"}

    run(app, scenario)


def test_global_overview_switches_to_the_cursor_rows_project(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "DELTA-ACME-1")
        await pilot.press("p")
        await settle(pilot)
        model = app.overview.model
        assert model.scope == "DELTA"
        assert set(model.rows) == {"DELTA-ACME-1", "PARTNER-DELTA-1"}
        await pilot.press("p")
        await settle(pilot)
        assert model.scope is None and len(model.rows) == 7

    run(app, scenario)


def test_sorting_by_key_and_by_clicking_a_header(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        model = app.overview.model
        names = [model.rows[key].name.casefold() for key in model.visible]
        assert names == sorted(names)
        await pilot.press("o")  # name -> key
        assert model.sort_column == "key" and model.visible == sorted(model.visible)
        await pilot.press("O")
        assert model.visible == sorted(model.visible, reverse=True)
        assert " v" in table_lines(app)[0]
        # click the "Err" header: most errors first after a second click
        table = app.overview.table
        ids = [column.id for column, _ in table.columns()]
        x = sum(width + 1 for _, width in table.columns()[: ids.index("errors")])
        await pilot.click(table, offset=(x + 1, 0))
        assert model.sort_column == "errors" and model.visible[-1] == "ACME-BETA-1"
        await pilot.click(table, offset=(x + 1, 0))
        assert model.sort_reverse and model.visible[0] == "ACME-BETA-1"

    run(app, scenario)


# -- selection --------------------------------------------------------------------------------


def test_space_toggles_the_row_and_select_all(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        model = app.overview.model
        await goto(pilot, "BETA-GAMMA-1")
        await pilot.press("space")
        assert model.selected == {"BETA-GAMMA-1"}
        assert any(line.startswith("[x]") and "BETA-GAMMA-1" in line for line in table_lines(app))
        await pilot.press("space")
        assert model.selected == set()
        await pilot.press("a")
        assert model.selected == set(model.rows)
        assert app.overview.query_one("#select-all", Checkbox).value is True
        await pilot.press("a")
        assert model.selected == set()
        await pilot.press("space", "escape")  # escape unchecks everything
        assert model.selected == set()
        # the "All" checkbox itself
        await pilot.click("#select-all")
        assert model.selected == set(model.rows)
        # clicking a row's checkbox cell toggles only that row
        await pilot.click("#select-all")
        await pilot.click(app.overview.table, offset=(1, 1 + model.index["ACME-GAMMA-1"]))
        assert model.selected == {"ACME-GAMMA-1"}

    run(app, scenario)


def test_status_dropdown_checks_every_synchronization_in_that_state(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        model = app.overview.model
        await pilot.press("space")  # something else checked first: the dropdown replaces it
        await pilot.press("v")  # opens the dropdown: the prompt, then the statuses; STOPPED is fifth
        select = app.overview.query_one("#select-status", Select)
        assert select.expanded
        await pilot.press(*["down"] * 6, "enter")
        await pilot.pause()
        assert list(ALL_STATUSES).index(SyncStatus.STOPPED) == 4
        assert model.selected == STOPPED_KEYS
        assert select.is_blank()  # ready to be used again
        assert ("information", "Checked 2 STOPPED synchronizations") in app.notices
        assert app.focused is app.overview.table  # back to the table, keys act on rows again
        await pilot.press("/", *["down"] * 2, "enter")  # the filter: the same
        await pilot.pause()
        assert app.overview.model.status_filter is not None
        assert app.focused is app.overview.table
        await pilot.press("ctrl+c")  # outside a text field: how to quit, in plain words
        assert app.notices[-1] == ("information", "Press q (or ctrl+q) to quit Backbone")

    run(app, scenario)


def test_status_filter_shows_one_state_and_keeps_the_selection(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        model = app.overview.model
        await goto(pilot, "BETA-GAMMA-1")
        await pilot.press("space")
        app.overview.query_one("#filter", Select).value = SyncStatus.RUNNING
        await pilot.pause()
        assert set(model.visible) == RUNNING_KEYS and len(model.rows) == 7
        assert "2 of 7 shown" in text_of(app.overview.query_one("#counts", Static))
        assert model.selected == {"BETA-GAMMA-1"}
        assert "1 hidden by the filter" in text_of(app.overview.query_one("#checked", Static))
        assert not any("BETA-GAMMA-1" in line for line in table_lines(app))
        # "All" checks only what is shown
        await pilot.press("a")
        assert model.selected == RUNNING_KEYS | {"BETA-GAMMA-1"}
        app.overview.query_one("#filter", Select).value = "*"
        await pilot.pause()
        assert len(model.visible) == 7

    run(app, scenario)


# -- bulk actions -----------------------------------------------------------------------------


def test_common_state_shows_the_matching_action_and_it_works_on_all(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        overview = app.overview
        overview.check_status(SyncStatus.STOPPED)
        await pilot.pause()
        start, stop = overview.query_one("#bulk-start", Button), overview.query_one("#bulk-stop", Button)
        assert start.display and not start.disabled and str(start.label) == "Start 2"
        assert not stop.display
        await pilot.press("s")
        await settle(pilot)
        assert all(statuses(mixed)[key] == SyncStatus.RUNNING for key in STOPPED_KEYS)
        assert ("information", "Started 2 synchronizations") in app.notices
        # same selection, now all RUNNING: Stop is offered; the button works too
        assert overview.model.selected == STOPPED_KEYS
        assert stop.display and not stop.disabled and not start.display
        await pilot.click("#bulk-stop")
        await settle(pilot)
        assert all(statuses(mixed)[key] == SyncStatus.STOPPED for key in STOPPED_KEYS)

    run(app, scenario)


def test_mixed_selection_greys_out_the_actions_with_a_hint(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        overview = app.overview
        for key in ("ACME-BETA-1", "ACME-GAMMA-1"):
            await goto(pilot, key)
            await pilot.press("space")
        start, stop = overview.query_one("#bulk-start", Button), overview.query_one("#bulk-stop", Button)
        assert start.display and stop.display and start.disabled and stop.disabled
        hint = text_of(overview.query_one("#bulk-hint", Static))
        assert "No common action" in hint and "1 RUNNING" in hint and "1 STOPPED" in hint
        before = statuses(mixed)
        await pilot.press("s", "x")
        await settle(pilot)
        assert statuses(mixed) == before
        assert [text for severity, text in app.notices[-2:] if "No common action" in text] == [hint, hint]
        titles = [title for title, _, _ in overview.palette_commands()]
        assert "sync: Start" not in titles and "sync: Stop" not in titles
        # a selection in a state without start/stop says so
        overview.check_status(SyncStatus.REQUEST_SENT)
        await pilot.pause()
        assert "cannot be started or stopped" in text_of(overview.query_one("#bulk-hint", Static))

    run(app, scenario)


def test_start_and_stop_without_selection_act_on_the_cursor_row(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "ACME-BETA-1")
        await pilot.press("s")  # RUNNING: says why instead of doing nothing
        await settle(pilot)
        severity, text = app.notices[-1]
        assert severity == "warning" and text.startswith("ACME-BETA-1 is RUNNING")
        assert text.endswith("only a STOPPED synchronization can start")
        await pilot.press("x")
        await settle(pilot)
        assert statuses(mixed)["ACME-BETA-1"] == SyncStatus.STOPPED
        assert ("information", "Stopped ACME-BETA-1") in app.notices
        assert app.overview.model.rows["ACME-BETA-1"].status == SyncStatus.STOPPED

    run(app, scenario)


def test_a_failed_action_is_notified(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "ACME-GAMMA-1")
        mixed.start(["ACME-GAMMA-1"])  # behind the UI's back (another admin, the CLI)
        app.overview._start_stop("start", ("ACME-GAMMA-1",))
        await settle(pilot)
        severity, text = app.notices[-1]
        assert severity == "error"
        assert text.startswith("Start ACME-GAMMA-1 failed: ACME-GAMMA-1 is RUNNING")
        assert app.overview.model.rows["ACME-GAMMA-1"].status == SyncStatus.RUNNING  # reloaded

    run(app, scenario)


# -- the row menu and its dialogs -------------------------------------------------------------


def test_row_menu_offers_what_the_state_allows_and_starts(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "BETA-GAMMA-1")
        await pilot.press("enter")
        menu = app.screen
        assert isinstance(menu, RowMenu)
        options = menu.query_one(OptionList)
        disabled = {
            options.get_option_at_index(i).id
            for i in range(options.option_count)
            if options.get_option_at_index(i).disabled
        }
        assert disabled == {"stop", "accept", "decline"}
        await pilot.press("x")  # disabled: nothing happens
        assert app.screen is menu
        await pilot.press("s")
        await settle(pilot)
        assert statuses(mixed)["BETA-GAMMA-1"] == SyncStatus.RUNNING
        # the "..." cell opens the menu too
        table = app.overview.table
        await pilot.click(table, offset=(table.size.width - 2, 1 + app.overview.model.index["ACME-BETA-1"]))
        assert isinstance(app.screen, RowMenu) and app.screen.info.key == "ACME-BETA-1"
        await pilot.press("escape")
        assert app.screen is cast(object, app.overview)  # mypy narrowed app.screen above

    run(app, scenario)


def test_edit_validates_saves_and_keeps_a_cancelled_draft(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "BETA-GAMMA-1")
        await pilot.press("e")
        dialog = app.screen
        assert isinstance(dialog, EditDialog)
        name = dialog.query_one("#edit-name", Input)
        name.value = "   "
        await pilot.pause()
        assert "must not be empty" in text_of(dialog.query_one("#edit-error", Static))
        assert dialog.query_one("#edit-save", Button).disabled
        await pilot.press("ctrl+s")
        assert app.screen is dialog  # refused
        name.value = "x" * 121
        await pilot.pause()
        assert "at most 120" in text_of(dialog.query_one("#edit-error", Static))
        name.value = "Beta and Gamma"
        dialog.query_one("#edit-description", TextArea).text = "Shared support queue"
        await pilot.pause()
        assert not dialog.query_one("#edit-save", Button).disabled
        await pilot.press("escape")  # cancel: the draft is kept
        assert mixed.sync_info("BETA-GAMMA-1").name == "Beta <-> Gamma"
        await pilot.press("e")
        edit = app.screen
        assert isinstance(edit, EditDialog)
        assert edit.query_one("#edit-name", Input).value == "Beta and Gamma"
        await pilot.click("#edit-save")
        await settle(pilot)
        info = mixed.sync_info("BETA-GAMMA-1")
        assert (info.name, info.description) == ("Beta and Gamma", "Shared support queue")
        assert ("information", "Saved BETA-GAMMA-1: Beta and Gamma") in app.notices
        assert app.overview.model.rows["BETA-GAMMA-1"].name == "Beta and Gamma"
        assert "BETA-GAMMA-1" not in app.overview.model.drafts

    run(app, scenario)


def test_troubleshoot_shows_messages_folder_by_folder_with_reasons(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "ACME-BETA-1")
        await pilot.press("t")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TroubleshootScreen)
        await pilot.press("f")  # from the error table to the folder browser
        folders = screen.query_one("#ts-folders", OptionList)
        labels = {
            folders.get_option_at_index(i).id: str(folders.get_option_at_index(i).prompt)
            for i in range(folders.option_count)
        }
        assert labels["ERROR"].split() == ["ERROR", "2"] and labels["WAITING"].split() == ["WAITING", "3"]
        assert screen.folder == "ERROR"  # errors first
        table = screen.query_one("#ts-messages")
        assert table.row_count == 2  # type: ignore[attr-defined]
        assert "VALUE_NOT_MAPPED" in str(table.get_row_at(0))  # type: ignore[attr-defined]
        await pilot.press("down", "down", "down", "down")  # ERROR -> ... -> WAITING
        assert screen.folder == "WAITING" and table.row_count == 3  # type: ignore[attr-defined]
        await pilot.press("escape")
        assert app.screen is app.overview

    run(app, scenario)


def test_troubleshoot_on_a_real_pair(paired: Demo) -> None:
    paired.acme.tracker.create_issue("ACME", "Task", {"summary": "to troubleshoot"}, as_user="alice")
    sync_all(paired)
    app = make_app(paired.acme)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("t")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TroubleshootScreen)
        real = paired.acme.messages(paired.key)
        assert screen.messages and sum(len(rows) for rows in screen.messages.values()) == len(real)
        shown = [m for rows in screen.messages.values() for m in rows if m.issue]
        assert shown and all(m.issue_key.startswith("ACME-") for m in shown)  # keys, not pair ids
        table = screen.query_one("#ts-messages")
        cells = [str(table.get_row_at(i)[3]) for i in range(table.row_count)]  # type: ignore[attr-defined]
        assert any(cell.startswith("ACME-") for cell in cells)

    run(app, scenario)


def test_support_zip_is_written_and_its_path_shown(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "ACME-BETA-1")
        await pilot.press("z")
        await settle(pilot)
        severity, text = app.notices[-1]
        assert severity == "information" and text.startswith("Support ZIP of ACME-BETA-1 written to ")
        path = Path(text.rsplit(" written to ", 1)[1])
        assert path.parent == mixed.paths.root / "support" and path.name.startswith("support-ACME-BETA-1-")
        with zipfile.ZipFile(path) as archive:
            assert "ACME-BETA-1/synchronization.json" in archive.namelist()

    run(app, scenario)


def test_delete_asks_naming_the_synchronization_and_stops_it_first(mixed: Installation) -> None:
    app = make_app(mixed)
    stopped_before_delete: list[str] = []
    mixed.events.subscribe(
        lambda event: (
            stopped_before_delete.append(event.status)
            if isinstance(event, SyncChanged) and event.sync_key == "ACME-BETA-1"
            else None
        )
    )

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "ACME-BETA-1")
        await pilot.press("d")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDelete)
        text = text_of(dialog.query_one("#delete-text", Static))
        assert "Acme <-> Beta (ACME-BETA-1)" in text and "stopped first" in text
        await pilot.press("n")
        assert "ACME-BETA-1" in statuses(mixed)
        await pilot.press("d")
        await pilot.press("y")
        await settle(pilot)
        assert "ACME-BETA-1" not in statuses(mixed)
        assert stopped_before_delete == [SyncStatus.STOPPED, "DELETED"]
        assert "ACME-BETA-1" not in app.overview.model.rows
        assert ("information", "Deleted Acme <-> Beta (ACME-BETA-1)") in app.notices

    run(app, scenario)


def test_delete_from_the_menu_and_selection_survives(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        model = app.overview.model
        model.selected.update({"ACME-GAMMA-1", "BETA-GAMMA-1"})
        app.overview.model_changed()
        await goto(pilot, "ACME-GAMMA-1")
        await pilot.press("m", "d")
        assert isinstance(app.screen, ConfirmDelete)
        await pilot.click("#delete-yes")
        await settle(pilot)
        assert model.selected == {"BETA-GAMMA-1"}
        assert app.overview.table.cursor_key is not None

    run(app, scenario)


# -- live refresh, engine, help and palette ---------------------------------------------------


def test_table_follows_the_engine_without_losing_selection_or_cursor(tmp_path: Path) -> None:
    inst = Installation(tmp_path / "home")
    for key in ("ACME", "BETA"):
        inst.tracker.create_project(key, key.title())
    first = inst.create_local(project="ACME", partner_project="BETA", user="sync-bot", name="A-B")
    second = inst.create_local(project="BETA", partner_project="ACME", user="sync-bot", name="B-A")
    inst.start([first.key])
    app = make_app(inst, run_engine=True)  # polling off: only engine events refresh the table

    async def scenario(pilot: Pilot[Any]) -> None:
        model = app.overview.model
        assert app.sub_title == "engine running" and app.engine is not None
        await goto(pilot, second.key)
        await pilot.press("space")
        reloads = app.reloads
        # an issue change: the engine's threads detect, send and apply it
        threading.Thread(
            target=lambda: inst.tracker.create_issue("ACME", "Bug", {"summary": "Live"}, as_user="alice")
        ).start()
        await wait_for(
            pilot,
            lambda: (
                model.rows[first.key].folder_counts.get("PROCESSED", 0) > 0
                and model.rows[first.key].last_activity is not None
            ),
        )
        assert app.reloads > reloads
        assert model.selected == {second.key} and app.overview.table.cursor_key == second.key
        row = next(line for line in table_lines(app) if first.key in line)
        assert "just now" in row or "min ago" in row
        # a status change made elsewhere in this process arrives as an event too
        threading.Thread(target=lambda: inst.stop([first.key])).start()
        await wait_for(pilot, lambda: model.rows[first.key].status == SyncStatus.STOPPED)

    try:
        run(app, scenario)
        assert app.engine is None and not inst.lock.held  # stopped on unmount
    finally:
        inst.close()


def test_engine_held_by_another_process_is_shown(mixed: Installation) -> None:
    other = EngineLock(mixed.paths.lock_file)
    assert other.acquire()
    app = make_app(mixed, run_engine=True)

    async def scenario(pilot: Pilot[Any]) -> None:
        assert app.engine is None
        assert "engine held by process" in text_of(app.overview.query_one("#engine-state", Static))

    try:
        run(app, scenario)
    finally:
        other.release()


def test_help_screen_lists_every_command(mixed: Installation) -> None:
    from screens.commands import ALL_COMMANDS

    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        rows = app.screen.rows()
        listed = {help_text: keys for group in rows.values() for keys, help_text in group}
        for command in ALL_COMMANDS:
            assert command.help in listed
        assert listed[next(c.help for c in ALL_COMMANDS if c.id == "overview.help")] == "?, f1"
        assert "DECLINED" in dict(rows["Statuses"])
        await pilot.press("escape")
        assert app.screen is cast(object, app.overview)  # mypy narrowed app.screen above

    run(app, scenario)


def test_command_palette_has_every_action_and_runs_it(mixed: Installation) -> None:
    from screens.commands import OVERVIEW_COMMANDS

    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        await goto(pilot, "ACME-GAMMA-1")
        titles = {title for title, _, _ in app.overview.palette_commands()}
        wanted = {
            c.title for c in OVERVIEW_COMMANDS if c.palette and c.action not in ("stop", "accept", "decline")
        }
        assert wanted <= titles
        assert {"select: Check all STOPPED (2)", "view: Show only RUNNING", "view: Sort by Err"} <= titles
        await pilot.press("ctrl+p")
        await pilot.press(*"Check all STOPPED")
        await wait_for(pilot, lambda: first_palette_hit(app).startswith("select: Check all STOPPED"))
        await pilot.press("enter")
        await settle(pilot)
        assert app.overview.model.selected == STOPPED_KEYS

    run(app, scenario)


def first_palette_hit(app: Any) -> str:
    lists = app.screen.query("CommandList")
    if not lists or not lists.first().option_count:
        return ""
    return str(lists.first().get_option_at_index(0).prompt)


def test_small_terminal_keeps_the_essentials(mixed: Installation) -> None:
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        header = table_lines(app)[0].split()
        assert {"Name", "Status", "Err", "Pend"} <= set(header)
        assert all(line.isascii() for line in table_lines(app))
        await goto(pilot, "ACME-BETA-1")
        detail = text_of(app.overview.query_one("#detail", Static))
        assert "ACME <-> BETA" in detail and "synchronizing issues" in detail

    run(app, scenario, size=(80, 24))


def test_detail_line_warns_of_a_key_about_to_expire_and_a_channel_error(mixed: Installation) -> None:
    from datetime import timedelta

    from engine.store.models import SyncSide

    from .conftest import NOW

    with mixed.db.write() as s:
        side = s.exec(
            select(SyncSide).where(SyncSide.sync_key == "ACME-BETA-1", SyncSide.project == "ACME")
        ).one()
        side.own_key_expires = NOW + timedelta(days=10)
        s.add(side)
        other = s.exec(select(SyncSide).where(SyncSide.sync_key == "ACME-GAMMA-1")).first()
        assert other is not None
        other.channel_error = "IMAP 127.0.0.1:143: login failed: [AUTHENTICATIONFAILED]"
        s.add(other)
    app = make_app(mixed)

    async def scenario(pilot: Pilot[Any]) -> None:
        detail = app.overview.query_one("#detail", Static)
        await goto(pilot, "ACME-BETA-1")
        assert "WARNING: this installation's key expires on 2026-11-30" in text_of(detail)
        await goto(pilot, "ACME-GAMMA-1")
        assert "WARNING: IMAP 127.0.0.1:143: login failed" in text_of(detail)
        await goto(pilot, "BETA-GAMMA-1")
        assert "WARNING" not in text_of(detail)

    run(app, scenario)
