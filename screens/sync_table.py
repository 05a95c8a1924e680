"""The synchronizations table: a Line API widget that renders only the lines on screen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.service.installation import SyncInfo
from engine.vocab import SyncStatus

from .commands import TABLE_COMMANDS
from .model import OverviewModel, format_age


@dataclass(frozen=True)
class Column:
    id: str
    label: str
    width: int
    priority: int  # 0 always shown; higher numbers are dropped first on narrow terminals
    right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("check", "", 3, 0),
    Column("name", "Name", 14, 0),
    Column("key", "Key", 15, 2),
    Column("project", "Project", 8, 3),
    Column("partner", "Partner", 8, 3),
    Column("role", "Role", 9, 6),
    Column("protocol", "Proto", 5, 6),
    Column("status", "Status", 19, 0),
    Column("draft", "Draft", 15, 5),
    Column("errors", "Err", 5, 1, right=True),
    Column("pending", "Pend", 5, 1, right=True),
    Column("activity", "Activity", 10, 4),
    Column("menu", "", 3, 0),
)
COLUMN_IDS = tuple(column.id for column in COLUMNS)
SORTABLE = tuple(column.id for column in COLUMNS if column.id not in ("check", "menu"))
NAME_MAX_WIDTH = 40
CHECKED, UNCHECKED, MENU, ELLIPSIS = "[x]", "[ ]", "...", "~"
STATUS_CLASS: dict[str, str] = {
    SyncStatus.RUNNING: "ok",
    SyncStatus.STOPPED: "idle",
    SyncStatus.DECLINED: "bad",
    SyncStatus.INCOMING_REQUEST: "todo",
    SyncStatus.UPDATE_REQUIRED: "todo",
    SyncStatus.REQUEST_SENT: "wait",
    SyncStatus.HANDSHAKE: "wait",
    SyncStatus.WAITING_FOR_PARTNER: "wait",
}


def layout_columns(width: int) -> list[tuple[Column, int]]:
    """The columns that fit `width` cells (one space between columns) and their widths."""
    chosen = [column for column in COLUMNS if column.priority == 0]
    used = sum(column.width for column in chosen) + len(chosen) - 1
    for priority in sorted({column.priority for column in COLUMNS} - {0}):
        group = [column for column in COLUMNS if column.priority == priority]
        extra = sum(column.width + 1 for column in group)
        if used + extra <= width:
            chosen += group
            used += extra
    spare = max(0, width - used)
    order = {column.id: index for index, column in enumerate(COLUMNS)}
    result = []
    for column in sorted(chosen, key=lambda c: order[c.id]):
        size = column.width
        if column.id == "name":
            size = min(NAME_MAX_WIDTH, size + spare)
        result.append((column, size))
    return result


def fit(text: str, width: int, right: bool = False) -> str:
    """`text` padded or cut (with a `~`) to exactly `width` cells."""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + ELLIPSIS if width > 1 else set_cell_size(text, width)
    padding = " " * (width - cell_len(text))
    return padding + text if right else text + padding


def _printable(text: str) -> str:
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def cell_text(info: SyncInfo, column: str, checked: bool, now: datetime) -> str:
    if column == "check":
        return CHECKED if checked else UNCHECKED
    if column == "menu":
        return MENU
    value: object = {
        "name": info.name,
        "key": info.key,
        "project": info.local_project,
        "partner": info.partner_project,
        "role": info.role,
        "protocol": info.protocol,
        "status": info.status,
        "draft": info.draft_state + (" *" if info.draft_edited else ""),
        "errors": info.errors,
        "pending": info.pending,
    }.get(column)
    if column == "activity":
        return format_age(info.last_activity, now)
    return _printable(str(value))


class SyncTable(ScrollView, can_focus=True):
    """Rows of `OverviewModel.visible`; posts messages, the screen changes the model."""

    BINDINGS = [
        *(command.binding() for command in TABLE_COMMANDS),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    COMPONENT_CLASSES = {
        "sync-table--header",
        "sync-table--sorted",
        "sync-table--cursor",
        "sync-table--cursor-blur",
        "sync-table--checked",
        "sync-table--check",
        "sync-table--muted",
        "sync-table--errors",
        "sync-table--pending",
        "sync-table--menu",
        "sync-table--notice",
        "sync-table--status-ok",
        "sync-table--status-idle",
        "sync-table--status-bad",
        "sync-table--status-todo",
        "sync-table--status-wait",
    }

    class CursorMoved(Message):
        def __init__(self, key: str | None) -> None:
            super().__init__()
            self.key = key

    class ToggleRow(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class OpenMenu(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class SortBy(Message):
        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    def __init__(self, model: OverviewModel, now: Callable[[], datetime], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self.now = now
        self.cursor = 0
        self.cursor_key: str | None = None
        self._layout_width = -1
        self._layout: list[tuple[Column, int]] = []

    # -- model to screen ------------------------------------------------------------------

    def refresh_rows(self, changed: frozenset[str] | None = None, order_changed: bool = True) -> None:
        """Follow the model: keep the cursor on its synchronization, repaint what changed."""
        model = self.model
        if self.cursor_key is not None and self.cursor_key in model.index:
            self.cursor = model.index[self.cursor_key]
        self.cursor = max(0, min(self.cursor, len(model.visible) - 1))
        self.virtual_size = Size(self.size.width, len(model.visible) + 1)
        self._set_cursor_key()
        if order_changed or changed is None:
            self.refresh()
            return
        top = int(self.scroll_y)
        for key in changed:
            position = model.index.get(key)
            if position is not None and top <= position < top + self.size.height:
                self.refresh_line(position + 1)

    def _set_cursor_key(self) -> None:
        row = self.model.row_at(self.cursor)
        key = row.key if row else None
        if key != self.cursor_key:
            self.cursor_key = key
            self.refresh_bindings()
            self.post_message(self.CursorMoved(key))

    def move_cursor(self, position: int) -> None:
        if not self.model.visible:
            return
        self.cursor = max(0, min(position, len(self.model.visible) - 1))
        self._set_cursor_key()
        self._scroll_to_cursor()
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        body = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + body:
            self.scroll_to(y=self.cursor - body + 1, animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(self.size.width, len(self.model.visible) + 1)
        self._scroll_to_cursor()

    # -- actions --------------------------------------------------------------------------

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor - max(1, self.size.height - 2))

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor + max(1, self.size.height - 2))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self.model.visible) - 1)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_row", "open_menu"):
            return True if self.cursor_key is not None else None
        return True

    def action_toggle_row(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.ToggleRow(self.cursor_key))

    def action_open_menu(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.OpenMenu(self.cursor_key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        column = self.column_at(offset.x)
        if offset.y == 0:
            if column is not None and column in SORTABLE:
                self.post_message(self.SortBy(column))
            return
        position = int(self.scroll_y) + offset.y - 1
        if not 0 <= position < len(self.model.visible):
            return
        self.move_cursor(position)
        key = self.model.visible[position]
        if column == "check":
            self.post_message(self.ToggleRow(key))
        elif column == "menu" or event.chain == 2:
            self.post_message(self.OpenMenu(key))

    def column_at(self, x: int) -> str | None:
        start = 0
        for column, width in self.columns():
            if start <= x < start + width + 1:
                return column.id
            start += width + 1
        return None

    # -- rendering ------------------------------------------------------------------------

    def columns(self) -> list[tuple[Column, int]]:
        width = self.size.width
        if width != self._layout_width:
            self._layout_width, self._layout = width, layout_columns(width)
        return self._layout

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"sync-table--{name}", partial=True)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            return self._header(width, base)
        model = self.model
        position = int(self.scroll_y) + y - 1
        row = model.row_at(position)
        if row is None:
            return self._notice(y, width, base)
        checked = row.key in model.selected
        row_style = base + self._style("checked") if checked else base
        cursor = position == self.cursor
        cursor_style = self._style("cursor" if self.has_focus else "cursor-blur") if cursor else None
        now = self.now()
        segments: list[Segment] = []
        for index, (column, size) in enumerate(self.columns()):
            if index:
                segments.append(Segment(" ", cursor_style and row_style + cursor_style or row_style))
            text = fit(cell_text(row, column.id, checked, now), size, column.right)
            style = row_style + self._cell_style(row, column.id, checked)
            if cursor_style is not None:
                style += cursor_style
            segments.append(Segment(text, style))
        fill = row_style + cursor_style if cursor_style is not None else row_style
        return Strip(segments).crop_extend(0, width, fill)

    def _cell_style(self, row: SyncInfo, column: str, checked: bool) -> Style:
        if column == "status":
            return self._style(f"status-{STATUS_CLASS.get(row.status, 'wait')}")
        if column == "errors":
            return self._style("errors" if row.errors else "muted")
        if column == "pending":
            return self._style("pending" if row.pending else "muted")
        if column == "check":
            return self._style("check") if checked else Style()
        if column == "menu":
            return self._style("menu")
        if column in ("role", "protocol", "draft", "activity"):
            return self._style("muted")
        return Style()

    def _header(self, width: int, base: Style) -> Strip:
        style = base + self._style("header")
        sorted_style = style + self._style("sorted")
        model = self.model
        segments: list[Segment] = []
        for index, (column, size) in enumerate(self.columns()):
            if index:
                segments.append(Segment(" ", style))
            label = column.label
            if column.id == model.sort_column:
                marker = " v" if model.sort_reverse else " ^"
                label = set_cell_size(label, max(0, size - 2)).rstrip() + marker
            text = fit(label, size, column.right)
            segments.append(Segment(text, sorted_style if column.id == model.sort_column else style))
        return Strip(segments).crop_extend(0, width, style)

    def _notice(self, y: int, width: int, base: Style) -> Strip:
        model = self.model
        if y == 2:
            if not model.loaded:
                text = "Loading synchronizations..."
            elif not model.rows:
                scope = f" for project {model.scope}" if model.scope else ""
                text = f"No synchronizations{scope} yet."
            elif not model.visible:
                text = f"No synchronization is {model.status_filter}."
            else:
                return Strip.blank(width, base)
        elif y == 3 and model.loaded and not model.visible:
            if not model.rows:
                text = "Create one with 'backbone sync create' (or try 'backbone demo DIR')."
            else:
                text = "Press / to change the status filter."
        else:
            return Strip.blank(width, base)
        style = base + self._style("notice")
        return Strip([Segment("  " + text, style)]).crop_extend(0, width, base)
