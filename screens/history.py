"""The history of a synchronization or one of its issues, and which message set each field."""

from __future__ import annotations

import json

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from engine.service.history import FieldOrigin, HistoryEntry
from engine.service.installation import SyncInfo

from .driver import Driver
from .model import as_utc
from .widgets import literal

EVENT_COLUMNS = ("When (UTC)", "Issue", "What", "Detail")
FIELD_COLUMNS = ("Field", "Value", "Set by", "Changed", "Message")
KIND_STYLE = {"conflict": "bold", "operator": "bold", "skip": "bold", "resend": "italic"}


class HistoryScreen(Screen[None]):
    """Events newest last; with an issue chosen, its fields and the message that set each."""

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="history.back", tooltip="Back to where you came from"),
        Binding("r", "reload", "Refresh", id="history.refresh", tooltip="Read the history again"),
        Binding("slash,i", "filter", "Issue", id="history.issue", tooltip="Show one issue (its key)"),
        Binding("a", "all_issues", "All issues", id="history.all", tooltip="Every issue again"),
    ]

    def __init__(self, driver: Driver, info: SyncInfo, issue: str | None = None) -> None:
        super().__init__()
        self.driver = driver
        self.info = info
        self.issue = issue
        self.entries: list[HistoryEntry] = []
        self.origins: list[FieldOrigin] = []

    def compose(self) -> ComposeResult:
        yield Static(literal(f"History of {self.info.name} ({self.info.key})"), classes="titlebar")
        yield Input(
            value=self.issue or "",
            placeholder="an issue key (enter shows its history and fields); empty: every issue",
            id="history-issue",
        )
        yield Static("", id="history-summary")
        yield DataTable(id="history-events", cursor_type="row", zebra_stripes=True)
        yield Static("", id="history-fields-title")
        yield DataTable(id="history-fields", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        events = self.query_one("#history-events", DataTable)
        for column in EVENT_COLUMNS:
            events.add_column(column, key=column)
        fields = self.query_one("#history-fields", DataTable)
        for column in FIELD_COLUMNS:
            fields.add_column(column, key=column)
        events.focus()
        self.action_reload()

    def action_reload(self) -> None:
        key, issue, history = self.info.key, self.issue, self.driver.installation.issue_history

        def load() -> tuple[list[HistoryEntry], list[FieldOrigin]]:
            return history.history(key, issue), history.provenance(key, issue) if issue else []

        self.driver.submit(f"Load the history of {issue or key}", load, self._loaded)

    def _loaded(self, result: tuple[list[HistoryEntry], list[FieldOrigin]]) -> None:
        if not self.is_attached:
            return
        self.entries, self.origins = result
        events = self.query_one("#history-events", DataTable)
        events.clear()
        for n, entry in enumerate(self.entries):
            events.add_row(
                Text(f"{as_utc(entry.at):%Y-%m-%d %H:%M:%S}"),
                literal(entry.issue_key or "-"),
                Text(entry.kind, style=KIND_STYLE.get(entry.kind, "")),
                literal(entry.text),
                key=str(n),
            )
        if self.entries:
            events.move_cursor(row=len(self.entries) - 1)  # the newest
        conflicts = sum(entry.kind == "conflict" for entry in self.entries)
        what = f"issue {self.issue}" if self.issue else "every issue"
        self.query_one("#history-summary", Static).update(
            Text(
                f"{what}: {len(self.entries)} event(s), {conflicts} conflict(s). "
                + ("Enter on an event shows that issue." if not self.issue else "")
            )
        )
        fields = self.query_one("#history-fields", DataTable)
        fields.clear()
        fields.display = bool(self.issue)
        title = self.query_one("#history-fields-title", Static)
        title.display = bool(self.issue)
        title.update(Text("Fields: the value both sides agreed on, who set it, and the message that did"))
        for n, origin in enumerate(self.origins):
            fields.add_row(
                literal(origin.field),
                literal(json.dumps(origin.local_value, ensure_ascii=False)[:60]),
                Text("here" if origin.origin == "local" else "partner"),
                literal(origin.at[:19]),
                literal(_message_ref(origin)),
                key=str(n),
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.issue = event.value.strip() or None
        self.query_one("#history-events", DataTable).focus()
        self.action_reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "history-events" or self.issue or event.row_key.value is None:
            return
        entry = self.entries[int(event.row_key.value)]
        if entry.issue_key:
            self.issue = entry.issue_key
            self.query_one("#history-issue", Input).value = entry.issue_key
            self.action_reload()

    def action_filter(self) -> None:
        self.query_one("#history-issue", Input).focus()

    def action_all_issues(self) -> None:
        self.issue = None
        self.query_one("#history-issue", Input).value = ""
        self.action_reload()

    def action_back(self) -> None:
        self.dismiss(None)


def _message_ref(origin: FieldOrigin) -> str:
    """Which message carried a field's value, as a person reads it."""
    if not origin.direction:
        return "-"
    arrow = "sent" if origin.direction == "out" else "received"
    kept = f" ({origin.message_folder})" if origin.message_id else " (no longer kept)"
    return f"{arrow} seq {origin.seq} of epoch {origin.epoch}{kept}"
