"""The synchronizations overview: all projects or one, with selection, bulk and per-row actions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Checkbox, Footer, Label, Select, Static

from engine.service.editor import DraftModel
from engine.service.installation import SyncInfo
from engine.service.support import create_support_zip
from engine.vocab import ALL_STATUSES as SYNC_STATUSES
from engine.vocab import SyncStatus

from .commands import OVERVIEW_COMMANDS, TABLE_COMMANDS
from .dialogs import Confirm, ConfirmDelete, EditDialog, EditResult, HelpScreen, RowMenu
from .drafts import DraftActions
from .driver import Driver
from .history import HistoryScreen
from .model import START, STOP, OverviewModel, action_for, format_age
from .sync_table import COLUMNS, SORTABLE, SyncTable
from .trackers import TrackersScreen
from .troubleshoot import TroubleshootScreen
from .widgets import AsciiCheckbox, AsciiSelect, literal
from .wizard import NewSyncWizard
from .wizard_forms import Created, WizardDraft

ALL_STATUSES = "*"
ROW_ACTIONS = ("edit", "configure", "publish", "review", "troubleshoot", "history", "support_zip", "delete")
REQUEST_ACTIONS = ("accept", "decline")  # an INCOMING REQUEST's answers
PaletteEntry = tuple[str, str, Callable[[], object]]


class OverviewScreen(DraftActions):
    """Lists synchronizations (all, or one project's); the model keeps selection and filters."""

    AUTO_FOCUS = "#syncs"
    BINDINGS = [command.binding() for command in OVERVIEW_COMMANDS]

    def __init__(self, driver: Driver, project: str | None = None) -> None:
        super().__init__()
        self.driver = driver
        self.launch_project = project
        self.model = OverviewModel(scope=project)
        self.wizard_draft = WizardDraft()  # what a cancelled wizard held, offered again
        self.config_drafts: dict[tuple[str, str], DraftModel] = {}  # unsaved editor models
        self.publish_messages: dict[str, str] = {}  # a cancelled publish's message
        self.decline_messages: dict[str, str] = {}  # a cancelled decline's message

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="titlebar", classes="titlebar"):
            yield Static(id="title")
            yield Static(id="engine-state")
        with Horizontal(id="toolbar"):
            yield AsciiCheckbox(
                "All",
                id="select-all",
                compact=True,
                tooltip="Check or uncheck every shown synchronization (a)",
            )
            yield AsciiSelect(
                [(status, status) for status in SYNC_STATUSES],
                prompt="Check by status",
                id="select-status",
                compact=True,
                tooltip="Check every synchronization in this status (v)",
            )
            yield Label("Show:", id="filter-label")
            yield AsciiSelect(
                [("All statuses", ALL_STATUSES)] + [(s, s) for s in SYNC_STATUSES],
                allow_blank=False,
                value=ALL_STATUSES,
                id="filter",
                compact=True,
                tooltip="Show only synchronizations in this status (/)",
            )
            yield Static(id="counts")
        with Horizontal(id="actionbar"):
            yield Static(id="checked")
            yield Button("Start", id="bulk-start", variant="success", compact=True)
            yield Button("Stop", id="bulk-stop", variant="warning", compact=True)
            yield Static(id="bulk-hint")
        yield SyncTable(self.model, self.driver.now, id="syncs")
        yield Static(id="detail")
        yield Footer(compact=True)

    @property
    def table(self) -> SyncTable:
        return self.query_one("#syncs", SyncTable)

    def on_mount(self) -> None:
        self.watch(self.app, "sub_title", self._show_engine_state)
        self.update_bars()

    def _show_engine_state(self, state: str) -> None:
        self.query_one("#engine-state", Static).update(Text(state))

    # -- model to widgets -----------------------------------------------------------------

    def apply_syncs(self, scope: str | None, syncs: list[SyncInfo]) -> bool:
        """Show a reload's result by diff; False when it belongs to another scope."""
        if scope != self.model.scope:
            return False
        if not self.query("#syncs"):  # the app is closing: its widgets are gone already
            return True
        with self.app.batch_update():
            diff = self.model.apply(syncs)
            if diff.changed or diff.order_changed:
                self.table.refresh_rows(diff.changed, diff.order_changed)
            self.update_bars()
        return True

    def model_changed(self) -> None:
        """The selection, filter or sort changed here: repaint the table and the bars."""
        with self.app.batch_update():
            self.table.refresh_rows()
            self.update_bars()

    def update_bars(self) -> None:
        model = self.model
        scope = f"project {model.scope}" if model.scope else "all projects"
        self.query_one("#title", Static).update(Text(f"Backbone - Synchronizations - {scope}"))
        select_all = self.query_one("#select-all", Checkbox)
        with select_all.prevent(Checkbox.Changed):
            select_all.value = model.all_visible_selected
        total, shown = len(model.rows), len(model.visible)
        counts = f"{total} synchronization{'s' if total != 1 else ''}"
        if model.status_filter:
            counts = f"{shown} of {total} shown"
        self.query_one("#counts", Static).update(Text(counts if model.loaded else "loading..."))
        self._update_actionbar()
        self._update_detail()
        self.refresh_bindings()

    def _update_actionbar(self) -> None:
        bulk = self.model.bulk()
        start, stop = self.query_one("#bulk-start", Button), self.query_one("#bulk-stop", Button)
        count = len(bulk.keys)
        hidden = self.model.hidden_selected
        checked = f"{count} checked" + (f" ({hidden} hidden by the filter)" if hidden else "") + ":"
        self.query_one("#checked", Static).update(Text(checked if count else ""))
        start.label = f"Start {count}" if bulk.action == START else "Start"
        stop.label = f"Stop {count}" if bulk.action == STOP else "Stop"
        start.display = bool(count) and bulk.action in (START, None)
        stop.display = bool(count) and bulk.action in (STOP, None)
        start.disabled = bulk.action != START
        stop.disabled = bulk.action != STOP
        self.query_one("#bulk-hint", Static).update(Text(bulk.hint))
        self.query_one("#actionbar").set_class(bool(count) and bulk.action is None, "-no-common-action")

    def _update_detail(self) -> None:
        detail = self.query_one("#detail", Static)
        info = self.cursor_info()
        if info is None:
            detail.update("")
            return
        partner = f"{info.local_project} <-> {info.partner_project or '?'}"
        problems = (info.key_warning(self.driver.now()), info.channel_error, info.tracker_error)
        warnings = [text for text in problems if text]
        line = Text.assemble(
            (info.key, "bold"),
            ": ",
            (info.status, "bold"),
            " - ",
            Text.assemble(("WARNING: ", "bold"), literal("; ".join(warnings)))
            if warnings
            else literal(info.status_detail or "-"),
            f"\n{info.role}  {info.protocol}  {partner}  draft {info.draft_state}  errors {info.errors}"
            f"  pending {info.pending}  activity {format_age(info.last_activity, self.driver.now())}",
        )
        if info.description:
            line.append("  ")
            line.append_text(literal(" ".join(info.description.split())))
        detail.update(line)

    def cursor_info(self) -> SyncInfo | None:
        if not self.is_mounted:
            return None
        key = self.table.cursor_key
        return self.model.rows.get(key) if key else None

    # -- table and toolbar events ---------------------------------------------------------

    def on_sync_table_cursor_moved(self, event: SyncTable.CursorMoved) -> None:
        self._update_detail()
        self.refresh_bindings()

    def on_sync_table_toggle_row(self, event: SyncTable.ToggleRow) -> None:
        self.model.toggle(event.key)
        self.model_changed()

    def on_sync_table_open_menu(self, event: SyncTable.OpenMenu) -> None:
        self.open_menu(event.key)

    def on_sync_table_sort_by(self, event: SyncTable.SortBy) -> None:
        self.model.sort_by(event.column)
        self.model_changed()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "select-all":
            self.model.set_visible_selected(event.value)
            self.model_changed()

    def on_select_changed(self, event: Select.Changed) -> None:
        value = event.value
        if event.select.id == "select-status":
            if isinstance(value, str):
                self.check_status(value)
                event.select.clear()
                self.table.focus()
        elif event.select.id == "filter" and isinstance(value, str):
            self.model.set_filter(None if value == ALL_STATUSES else value)
            self.model_changed()
            self.table.focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "bulk-start":
            self.action_start()
        elif event.button.id == "bulk-stop":
            self.action_stop()

    # -- availability (footer, palette, keys) ---------------------------------------------

    def targets(self, action: str) -> tuple[str, ...]:
        """Keys `action` (start/stop) works on: the checked ones if any, else the cursor row."""
        if self.model.selected:
            bulk = self.model.bulk()
            return bulk.keys if bulk.action == action else ()
        info = self.cursor_info()
        return (info.key,) if info is not None and action_for(info.status) == action else ()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.is_mounted:
            return True
        if action in (START, STOP):  # a key that cannot act says why (see _start_stop)
            return True if self.model.selected or self.cursor_info() is not None else None
        if action in ROW_ACTIONS:
            return True if self.cursor_info() is not None else None
        if action in REQUEST_ACTIONS:
            info = self.cursor_info()
            return True if info is not None and info.status == SyncStatus.INCOMING_REQUEST else None
        return True

    # -- selection and view actions -------------------------------------------------------

    def check_status(self, status: str) -> None:
        count = self.model.select_status(status)
        self.model_changed()
        self.app.notify(f"Checked {count} {status} synchronization{'s' if count != 1 else ''}")

    def action_select_all(self) -> None:
        self.model.set_visible_selected(not self.model.all_visible_selected)
        self.model_changed()

    def action_clear_selection(self) -> None:
        if self.model.selected:
            self.model.selected.clear()
            self.model_changed()

    def action_pick_select_status(self) -> None:
        select = self.query_one("#select-status", Select)
        select.focus()
        select.expanded = True

    def action_pick_filter(self) -> None:
        select = self.query_one("#filter", Select)
        select.focus()
        select.expanded = True

    def set_filter(self, status: str | None) -> None:
        self.query_one("#filter", Select).value = status or ALL_STATUSES

    def action_sort_next(self) -> None:
        index = SORTABLE.index(self.model.sort_column)
        self.model.sort_by(SORTABLE[(index + 1) % len(SORTABLE)], reverse=False)
        self.model_changed()

    def action_sort_reverse(self) -> None:
        self.model.sort_by(self.model.sort_column, reverse=not self.model.sort_reverse)
        self.model_changed()

    def sort_by(self, column: str) -> None:
        self.model.sort_by(column, reverse=False)
        self.model_changed()

    def action_toggle_scope(self) -> None:
        if self.model.scope is not None:
            target = None
        else:
            info = self.cursor_info()
            target = self.launch_project or (info.local_project if info else None)
            if not target:
                self.app.notify(
                    "No project to show: move the cursor to a synchronization first", severity="warning"
                )
                return
        self.model.set_scope(target)
        self.model_changed()
        self.driver.request_reload()

    def action_refresh(self) -> None:
        self.driver.request_reload()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    # -- synchronization actions ----------------------------------------------------------

    def action_start(self) -> None:
        self._start_stop(START)

    def action_stop(self) -> None:
        self._start_stop(STOP)

    def _start_stop(self, action: str, keys: tuple[str, ...] | None = None) -> None:
        keys = keys if keys is not None else self.targets(action)
        if not keys:
            self.app.notify(self._why_not(action), severity="warning")
            return
        installation = self.driver.installation
        work = installation.start if action == START else installation.stop
        what = keys[0] if len(keys) == 1 else f"{len(keys)} synchronizations"
        verb = "Started" if action == START else "Stopped"

        def done(result: object) -> None:
            self.app.notify(f"{verb} {what}")

        self.driver.submit(f"{action.capitalize()} {what}", lambda: work(list(keys)), done)

    def _why_not(self, action: str) -> str:
        """Why `action` (start/stop) has nothing to act on: the mix checked, or the row's status."""
        if self.model.selected:
            return self.model.bulk().hint or f"Nothing to {action}"
        info = self.cursor_info()
        if info is None:
            return f"Nothing to {action}: no synchronization here yet"
        wanted = SyncStatus.STOPPED if action == START else SyncStatus.RUNNING
        detail = f" ({info.status_detail})" if info.status_detail else ""
        return f"{info.key} is {info.status}{detail}: only a {wanted} synchronization can {action}"

    def row_info(self, key: str) -> SyncInfo | None:
        return self.model.rows.get(key)

    def _row_key(self) -> str | None:
        info = self.cursor_info()
        return info.key if info else None

    def action_edit(self) -> None:
        if key := self._row_key():
            self.edit(key)

    def action_configure(self) -> None:
        if key := self._row_key():
            self.configure(key)

    def action_troubleshoot(self) -> None:
        if key := self._row_key():
            self.troubleshoot(key)

    def action_troubleshoot_all(self) -> None:
        self.app.push_screen(TroubleshootScreen(self.driver, None))

    def action_trackers(self) -> None:
        self.app.push_screen(TrackersScreen(self.driver), lambda _: self.driver.request_reload())

    def action_history(self) -> None:
        if key := self._row_key():
            self.history(key)

    def action_support_zip(self) -> None:
        if key := self._row_key():
            self.support_zip(key)

    def action_delete(self) -> None:
        if key := self._row_key():
            self.delete(key)

    def action_new_sync(self) -> None:
        def closed(created: Created | None) -> None:
            if created is not None:
                self.app.notify(f"Created {created.info.key}: {created.info.status}")
                self.driver.request_reload()
            elif self.wizard_draft.values:
                self.app.notify("New synchronization cancelled; what you typed is kept for next time")

        self.app.push_screen(NewSyncWizard(self.driver, self.wizard_draft), closed)

    def action_accept(self) -> None:
        if key := self._row_key():
            self.accept(key)

    def action_decline(self) -> None:
        if key := self._row_key():
            self.decline(key)

    def accept(self, key: str) -> None:
        """Accept an incoming request: the pairing runs (HANDSHAKE) and ends STOPPED, shown live."""
        installation = self.driver.installation
        self.driver.submit(
            f"Accept {key}",
            lambda: installation.accept(key),
            lambda info: self.app.notify(f"Accepted {key}: {info.status}, {info.status_detail}"),
        )

    def decline(self, key: str) -> None:
        info = self.model.rows.get(key)
        if info is None:
            return
        installation = self.driver.installation
        text = Text.assemble(
            "Decline the request ",
            (info.name, "bold"),
            f" ({key}) from the partner?\n",
            "The partner is told; this synchronization then only waits to be deleted.",
        )

        def confirmed(answer: bool | None) -> None:
            if answer:
                self.driver.submit(
                    f"Decline {key}",
                    lambda: installation.decline(key),
                    lambda _: self.app.notify(f"Declined the request {key}"),
                )

        self.app.push_screen(Confirm("Decline the request?", text, "Decline"), confirmed)

    def open_menu(self, key: str) -> None:
        info = self.model.rows.get(key)
        if info is None:
            return

        def chosen(action: str | None) -> None:
            if action in (START, STOP):
                self._start_stop(action, (key,))
            elif action in ROW_ACTIONS or action in REQUEST_ACTIONS:
                getattr(self, action)(key)

        self.app.push_screen(RowMenu(info), chosen)

    def edit(self, key: str) -> None:
        info = self.model.rows.get(key)
        if info is None:
            return
        drafts = self.model.drafts

        def closed(result: EditResult | None) -> None:
            if result is None:
                return
            values = (result.name, result.description)
            if not result.saved:
                if values != (info.name, info.description):
                    drafts[key] = values
                    self.app.notify(f"Edit of {key} cancelled; the draft is kept for next time")
                else:
                    drafts.pop(key, None)
                return
            drafts[key] = values  # kept until the save succeeds

            def saved(updated: SyncInfo) -> None:
                drafts.pop(key, None)
                self.app.notify(f"Saved {key}: {updated.name}")

            self.driver.submit(
                f"Edit {key}",
                lambda: self.driver.installation.edit(key, name=result.name, description=result.description),
                saved,
            )

        self.app.push_screen(EditDialog(info, drafts.get(key)), closed)

    def troubleshoot(self, key: str) -> None:
        info = self.model.rows.get(key)
        if info is not None:
            self.app.push_screen(TroubleshootScreen(self.driver, info))

    def history(self, key: str, issue: str | None = None) -> None:
        info = self.model.rows.get(key)
        if info is not None:
            self.app.push_screen(HistoryScreen(self.driver, info, issue))

    def support_zip(self, key: str) -> None:
        installation = self.driver.installation
        self.driver.submit(
            f"Create the support ZIP of {key}",
            lambda: create_support_zip(installation, key),
            lambda path: self.app.notify(f"Support ZIP of {key} written to {path}", timeout=30),
        )

    def delete(self, key: str) -> None:
        info = self.model.rows.get(key)
        if info is None:
            return
        installation = self.driver.installation

        def work() -> None:
            if installation.sync_info(key).status == SyncStatus.RUNNING:
                installation.stop([key])
            installation.delete(key)

        def confirmed(answer: bool | None) -> None:
            if answer:
                self.driver.submit(
                    f"Delete {key}", work, lambda _: self.app.notify(f"Deleted {info.name} ({key})")
                )

        self.app.push_screen(ConfirmDelete(info), confirmed)

    # -- command palette ------------------------------------------------------------------

    def palette_commands(self) -> Iterator[PaletteEntry]:
        """Every command that applies now, plus one per status and per column."""
        table = self.table
        for command in TABLE_COMMANDS:
            if table.cursor_key is not None:
                yield command.title, command.help, partial(table.run_action, command.action)
        for command in OVERVIEW_COMMANDS:
            available = self.targets(command.action) if command.action in (START, STOP) else True
            if command.palette and available and self.check_action(command.action, ()):
                yield command.title, command.help, partial(self.run_action, command.action)
        counts = self.model.status_counts()
        for status in SYNC_STATUSES:
            if counts.get(status):
                yield (
                    f"select: Check all {status} ({counts[status]})",
                    f"Check exactly the synchronizations in {status}",
                    partial(self.check_status, status),
                )
                yield (
                    f"view: Show only {status}",
                    f"Filter the table to {status}",
                    partial(self.set_filter, status),
                )
        if self.model.status_filter:
            yield "view: Show all statuses", "Remove the status filter", partial(self.set_filter, None)
        for column in COLUMNS:
            if column.id in SORTABLE:
                yield (
                    f"view: Sort by {column.label}",
                    f"Sort the table by {column.label}",
                    partial(self.sort_by, column.id),
                )
