"""Troubleshooting: Analyze's problems as banners, the error table with checks and actions, and the
folder browser; one synchronization or all of them, refreshed live."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import ContentSwitcher, DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from engine.service.analysis import Analysis, Finding
from engine.service.installation import MessageInfo, SyncInfo
from engine.service.troubleshooting import ACTION_LABELS, REASON_REQUIRED, ActionResult, ProblemRow

from .dialogs import Confirm, HelpScreen
from .driver import Driver
from .folders import FolderBrowser
from .model import as_utc
from .review import MessageDialog
from .widgets import literal

PROBLEM_COLUMNS = ("", "Sync", "Folder", "Reason", "Occurred in", "Triggered by", "When", "Tries", "Detail")
ROW_ACTIONS = ("retry", "skip", "resync", "resend", "recreate", "ignore")  # what acts on checked rows
CONFIRMED = {"recreate": "Recreate"}  # asked with a yes/no; the reason dialog confirms the others
SEVERITY_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "dim"}
LIVE_DELAY = 0.5  # engine events within this time cause one reload

Loaded = tuple[list[Analysis], list[ProblemRow], list[MessageInfo]]


class ActionMenu(ModalScreen[str | None]):
    """The actions that apply to the checked rows (or the row under the cursor)."""

    BINDINGS = [Binding("escape", "dismiss_menu", "Close", id="actions.close")]

    def __init__(self, title: str, actions: list[tuple[str, bool]]) -> None:
        super().__init__()
        self.title_text, self.actions = title, actions

    def compose(self) -> ComposeResult:
        with Vertical(id="menu-box", classes="dialog"):
            yield Static(Text(self.title_text), classes="dialog-title")
            yield OptionList(
                *(
                    Option(
                        Text.assemble(
                            (f"{KEYS[action]}  ", "bold"),
                            ACTION_LABELS[action],
                            "" if enabled else " (not for these rows)",
                        ),
                        id=action,
                        disabled=not enabled,
                    )
                    for action, enabled in self.actions
                ),
                id="menu-options",
                compact=True,
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_dismiss_menu(self) -> None:
        self.dismiss(None)


KEYS = {"retry": "r", "skip": "k", "resync": "y", "resend": "e", "recreate": "c", "ignore": "i"}


class TroubleshootScreen(Screen[None]):
    """One synchronization (`info`) or, without it, every synchronization of the installation."""

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="troubleshoot.back", tooltip="Back to the overview"),
        Binding(
            "space", "toggle_row", "Check", id="troubleshoot.toggle", tooltip="Check the row under the cursor"
        ),
        Binding("a", "toggle_all", "All", id="troubleshoot.all", tooltip="Check every row, or none"),
        Binding(
            "enter,m", "menu", "Actions", id="troubleshoot.menu", tooltip="What applies to the checked rows"
        ),
        *(
            Binding(
                key,
                f"act('{action}')",
                action.capitalize(),
                show=action in ("retry", "skip"),
                id=f"troubleshoot.{action}",
                tooltip=f"{ACTION_LABELS[action]}: the checked rows",
            )
            for action, key in KEYS.items()
        ),
        Binding("h", "history", "History", id="troubleshoot.history", tooltip="The issue's history"),
        Binding("f", "switch", "Folders", id="troubleshoot.folders", tooltip="Folder browser / error table"),
        Binding(
            "ctrl+r,f5",
            "reload",
            "Analyze",
            id="troubleshoot.reload",
            tooltip="Analyze again, testing the channel (mail log-in, exchange folders)",
        ),
        Binding("question_mark", "help", "Help", id="troubleshoot.help", tooltip="These keys"),
    ]

    def __init__(self, driver: Driver, info: SyncInfo | None = None) -> None:
        super().__init__()
        self.driver = driver
        self.info = info
        self.key = info.key if info else None
        self.analyses: list[Analysis] = []
        self.banners: list[tuple[str, Finding]] = []
        self.problems: list[ProblemRow] = []
        self.checked: set[int] = set()  # message ids, kept across reloads while the rows exist
        self._live_pending = False
        self._reason_drafts: dict[str, str] = {}  # a cancelled reason, kept for the next try

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        title = f"Troubleshoot {self.info.name} ({self.info.key})" if self.info else "Troubleshoot all"
        yield Static(literal(title), id="ts-title", classes="titlebar")
        yield Static(Text("Analyzing..."), id="ts-status")
        yield OptionList(id="ts-banners", compact=True)
        with ContentSwitcher(initial="ts-problems-view", id="ts-switcher"):
            with Vertical(id="ts-problems-view"):
                yield DataTable(id="ts-problems", cursor_type="row", zebra_stripes=True)
                yield Static("", id="ts-problem-detail")
            yield FolderBrowser(id="ts-body")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#ts-problems", DataTable)
        for column in PROBLEM_COLUMNS:
            if column == "Sync" and self.key is not None:
                continue
            table.add_column(column, key=column or "check")
        table.focus()
        self.action_reload()

    @property
    def folder(self) -> str | None:
        """The folder the folder browser shows."""
        return self.query_one(FolderBrowser).folder

    @property
    def messages(self) -> dict[str, list[MessageInfo]]:
        return self.query_one(FolderBrowser).messages

    # -- loading --------------------------------------------------------------------------

    def action_reload(self, check_channel: bool = True) -> None:
        key, installation = self.key, self.driver.installation

        def load() -> Loaded:
            if key is None:
                return installation.analyze_all(check_channels=check_channel), installation.problems(None), []
            return (
                [installation.analyze(key, check_channel=check_channel)],
                installation.problems(key),
                installation.messages(key),
            )

        self.driver.submit(f"Analyze {key or 'every synchronization'}", load, self._loaded)

    def engine_changed(self) -> None:
        """The engine moved messages or changed a status: reload soon (events coalesce)."""
        if not self._live_pending and self.is_attached:
            self._live_pending = True
            self.set_timer(LIVE_DELAY, self._live_reload)

    def _live_reload(self) -> None:
        self._live_pending = False
        if self.is_attached:
            self.action_reload(check_channel=False)

    def _loaded(self, result: Loaded) -> None:
        if not self.is_attached:
            return
        self.analyses, self.problems, messages = result
        self._show_banners()
        self._show_problems()
        if self.key is not None:
            self.query_one(FolderBrowser).show(messages)

    def _show_banners(self) -> None:
        self.banners = [(a.key, finding) for a in self.analyses for finding in a.problems]
        options = self.query_one("#ts-banners", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        for n, (key, finding) in enumerate(self.banners):
            fix = finding.fixes[0] if finding.fixes else None
            prompt = Text.assemble(
                (f"{finding.severity.upper():<7} ", SEVERITY_STYLE.get(finding.severity, "")),
                literal(f"{key}: " if self.key is None else ""),
                literal(finding.text),
                (f"  -> {fix.label}" if fix else "", "bold"),
            )
            options.add_option(Option(prompt, id=str(n)))
        options.display = bool(self.banners)
        if self.banners and highlighted is not None:
            options.highlighted = min(highlighted, len(self.banners) - 1)
        status = self.query_one("#ts-status", Static)
        if self.info is not None and self.analyses:
            analysis = self.analyses[0]
            checked = "channel tested" if analysis.channel_checked else "channel not tested (ctrl+r tests it)"
            status.update(
                Text(
                    f"{analysis.status}: {analysis.status_detail} - {len(analysis.problems)} problem(s), "
                    f"{len(self.problems)} message(s) to look at; {checked}"
                )
            )
        else:
            troubled = sum(bool(a.problems) for a in self.analyses)
            status.update(
                Text(
                    f"{troubled} of {len(self.analyses)} synchronization(s) with problems, "
                    f"{len(self.problems)} message(s) to look at"
                )
            )

    def _show_problems(self) -> None:
        table = self.query_one("#ts-problems", DataTable)
        cursor = self._cursor_row()
        cursor_key = cursor.message_id if cursor is not None else None
        cursor_index = table.cursor_row
        present = {row.message_id for row in self.problems}
        self.checked &= present
        table.clear()
        for row in self.problems:
            cells = [Text("[x]" if row.message_id in self.checked else "[ ]")]
            if self.key is None:
                cells.append(literal(row.sync_key))
            cells += [
                Text(row.folder, style="bold" if row.folder == "ERROR" else ""),
                literal(row.reason_code or "-"),
                literal(row.issue_key or "-"),
                literal(_triggered_by(row)),
                Text(f"{as_utc(row.updated):%Y-%m-%d %H:%M}"),
                Text(str(row.attempts)),
                literal(" ".join(row.reason_text.split())[:70]),
            ]
            table.add_row(*cells, key=str(row.message_id))
        if not self.problems:
            self.query_one("#ts-problem-detail", Static).update(Text("Nothing waits in an error folder."))
            return
        if cursor_key in present:
            table.move_cursor(row=table.get_row_index(str(cursor_key)))
        else:
            table.move_cursor(row=min(max(cursor_index, 0), len(self.problems) - 1))
        self._show_detail()

    def _show_detail(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        actions = ", ".join(f"{KEYS[a]} {ACTION_LABELS[a]}" for a in row.actions if a in KEYS) or "none here"
        self.query_one("#ts-problem-detail", Static).update(
            Text.assemble(
                (f"{row.folder} {row.reason_code}: ", "bold"),
                literal(row.reason_text or "-"),
                f"\n{row.direction} {row.message_type} message {row.message_uuid or '-'}; actions: {actions}",
            )
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "ts-problems":
            self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "ts-problems":  # enter: the table's own binding comes first
            event.stop()
            self.action_menu()

    # -- selection ------------------------------------------------------------------------

    def _cursor_row(self) -> ProblemRow | None:
        table = self.query_one("#ts-problems", DataTable)
        if not self.problems or table.row_count == 0:
            return None
        index = table.cursor_row
        return self.problems[index] if 0 <= index < len(self.problems) else None

    def targets(self) -> list[ProblemRow]:
        """The checked rows, or the row under the cursor when none is checked."""
        if self.checked:
            return [row for row in self.problems if row.message_id in self.checked]
        row = self._cursor_row()
        return [row] if row is not None else []

    def action_toggle_row(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        self.checked ^= {row.message_id}
        table = self.query_one("#ts-problems", DataTable)
        table.update_cell(
            str(row.message_id), "check", Text("[x]" if row.message_id in self.checked else "[ ]")
        )
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_toggle_all(self) -> None:
        everything = {row.message_id for row in self.problems}
        self.checked = set() if self.checked == everything else everything
        self._show_problems()

    # -- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        in_folders = self.query_one(ContentSwitcher).current == "ts-body" if self.is_mounted else False
        return not (in_folders and action in ("toggle_row", "toggle_all", "menu", "act"))

    def action_menu(self) -> None:
        banners = self.query_one("#ts-banners", OptionList)
        if banners.has_focus:
            self._fix_banner()
            return
        rows = self.targets()
        if not rows:
            self.app.notify("Nothing to act on: no message waits in an error folder", severity="warning")
            return
        allowed = {action for row in rows for action in row.actions}
        title = f"{len(rows)} message(s): what to do"

        def chosen(action: str | None) -> None:
            if action:
                self.action_act(action)

        self.app.push_screen(ActionMenu(title, [(a, a in allowed) for a in ROW_ACTIONS]), chosen)

    def action_act(self, action: str) -> None:
        rows = [row for row in self.targets() if action in row.actions]
        if not rows:
            self.app.notify(
                f"{ACTION_LABELS[action]} does not apply to the chosen message(s)", severity="warning"
            )
            return
        by_key: dict[str, list[str]] = {}
        for row in rows:
            issues = by_key.setdefault(row.sync_key, [])
            if row.issue and row.issue not in issues:
                issues.append(row.issue)
        count = sum(len(issues) for issues in by_key.values())
        names = ", ".join(issue for issues in by_key.values() for issue in issues)
        what = f"{ACTION_LABELS[action]}: {count} issue(s) ({names[:80]})"
        self._confirm_then(action, what, lambda reason: self._run(action, by_key, reason))

    def _confirm_then(self, action: str, what: str, run: Callable[[str], None]) -> None:
        """Ask what the action needs (a reason, or a yes), then run it."""
        if action in REASON_REQUIRED:

            def reasoned(reason: str | None) -> None:
                if reason is None:
                    return
                self._reason_drafts.pop(action, None)
                run(reason)

            dialog = MessageDialog(
                what,
                "Why? (recorded in the issue's history)",
                self._reason_drafts.get(action, ""),
                ok=ACTION_LABELS[action].split(" (")[0],
            )
            self.app.push_screen(dialog, reasoned)
            return
        if action in CONFIRMED:
            self.app.push_screen(
                Confirm(what, Text("The partner is asked for the issue's full snapshot."), CONFIRMED[action]),
                lambda yes: run("") if yes else None,
            )
            return
        run("")

    def _run(self, action: str, by_key: dict[str, list[str]], reason: str) -> None:
        troubleshooting = self.driver.installation.troubleshooting

        def work() -> list[ActionResult]:
            return [troubleshooting.act(key, action, issues, reason) for key, issues in by_key.items()]

        def done(results: list[ActionResult]) -> None:
            self.app.notify("; ".join(result.text for result in results), timeout=10)
            self.checked.clear()
            self.action_reload(check_channel=False)

        self.driver.submit(ACTION_LABELS[action], work, done)

    def _fix_banner(self) -> None:
        index = self.query_one("#ts-banners", OptionList).highlighted
        if index is None or index >= len(self.banners):
            return
        key, finding = self.banners[index]
        fix = finding.fixes[0] if finding.fixes else None
        if fix is None:
            self.app.notify(finding.text, severity="warning")
            return
        if fix.name in ROW_ACTIONS and finding.issues:
            self._confirm_then(
                fix.name,
                f"{fix.label}: {', '.join(finding.issues)[:80]}",
                lambda reason: self._run(fix.name, {key: list(finding.issues)}, reason),
            )
        elif fix.name in ("skip_change", "start"):
            troubleshooting = self.driver.installation.troubleshooting

            def done(result: ActionResult) -> None:
                self.app.notify(result.text, timeout=10)
                self.action_reload(check_channel=False)

            def run(reason: str) -> None:
                self.driver.submit(fix.label, lambda: troubleshooting.act(key, fix.name, [], reason), done)

            self._confirm_then(fix.name, f"{fix.label} ({key})", run)
        else:
            self.app.notify(f"{fix.label}: {fix.command or 'see the text'}", timeout=15)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "ts-banners":
            event.stop()
            self._fix_banner()

    def action_history(self) -> None:
        from .history import HistoryScreen

        row = self._cursor_row()
        info = self.info
        if info is None and row is not None:
            info = next((i for i in self.driver.installation.list_syncs() if i.key == row.sync_key), None)
        if info is None:
            return
        self.app.push_screen(HistoryScreen(self.driver, info, row.issue_key or None if row else None))

    def action_switch(self) -> None:
        if self.key is None:
            self.app.notify(
                "The folder browser shows one synchronization: open it from its row", severity="warning"
            )
            return
        switcher = self.query_one(ContentSwitcher)
        switcher.current = "ts-body" if switcher.current == "ts-problems-view" else "ts-problems-view"
        target = "#ts-folders" if switcher.current == "ts-body" else "#ts-problems"
        self.query_one(target).focus()
        self.refresh_bindings()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self))

    def action_back(self) -> None:
        self.dismiss(None)


def _triggered_by(row: ProblemRow) -> str:
    """The partner's issue (by the pair id both sides share) and the message that brought it."""
    pair = f"pair {row.pair_id[:8]}" if row.pair_id else "-"
    numbered = f" seq {row.seq}" if row.seq else ""
    return f"{pair} {row.message_type or 'file'}{numbered}"
