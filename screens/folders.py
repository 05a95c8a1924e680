"""The folder browser of the troubleshoot screen: folders with counts, the chosen one's messages."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from engine.service.installation import MessageInfo
from engine.vocab import ERROR_FOLDERS, Folder

from .model import as_utc
from .widgets import literal

FOLDER_ORDER: tuple[str, ...] = (
    Folder.ERROR,
    Folder.REJECTED,
    Folder.SEND_ERROR,
    Folder.MISSING,
    Folder.WAITING,
    Folder.OFFLINE,
    Folder.RECEIVE,
    Folder.SEND,
    Folder.UNKNOWN,
    Folder.OUTDATED,
    Folder.SENT,
    Folder.PROCESSED,
)
MAX_ROWS = 500
MESSAGE_COLUMNS = ("Id", "Dir", "Type", "Issue", "Seq", "Reason", "Detail", "Updated")


class FolderBrowser(Horizontal):
    """Folders with counts on the left, the chosen folder's messages on the right."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.messages: dict[str, list[MessageInfo]] = {}
        self.folder: str | None = None

    def compose(self) -> ComposeResult:
        yield OptionList(id="ts-folders")
        with Vertical(id="ts-right"):
            yield Static("", id="ts-folder")
            yield DataTable(id="ts-messages", cursor_type="row", zebra_stripes=True)
            yield Static("", id="ts-detail")

    def on_mount(self) -> None:
        table = self.query_one("#ts-messages", DataTable)
        for column in MESSAGE_COLUMNS:
            table.add_column(column, key=column)

    def show(self, messages: list[MessageInfo]) -> None:
        """Group the messages by folder and show the chosen folder again (errors first at start)."""
        grouped: dict[str, list[MessageInfo]] = {name: [] for name in FOLDER_ORDER}
        for message in messages:
            grouped.setdefault(message.folder, []).append(message)
        self.messages = grouped
        options = self.query_one("#ts-folders", OptionList)
        highlighted = self.folder
        options.clear_options()
        options.add_options(
            [
                Option(
                    Text.assemble(
                        f"{name:<11}",
                        (
                            f"{len(grouped[name]):>6}",
                            "bold" if grouped[name] and name in ERROR_FOLDERS else "",
                        ),
                    ),
                    id=name,
                )
                for name in grouped
            ]
        )
        if highlighted is None:
            highlighted = next(
                (name for name in grouped if grouped[name] and name in ERROR_FOLDERS),
                next((name for name in grouped if grouped[name]), FOLDER_ORDER[0]),
            )
        options.highlighted = list(grouped).index(highlighted)
        self.show_folder(highlighted)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "ts-folders" and event.option.id:
            self.show_folder(event.option.id)

    def show_folder(self, folder: str) -> None:
        self.folder = folder
        table = self.query_one("#ts-messages", DataTable)
        table.clear()
        rows = self.messages.get(folder, [])
        for message in rows[-MAX_ROWS:]:
            table.add_row(
                Text(str(message.id)),
                Text(message.direction),
                literal(message.type),
                literal(_issue(message)),
                Text(f"{message.epoch}.{message.seq}"),
                literal(message.reason_code or "-"),
                literal(_one_line(message.reason_text, 60)),
                Text(f"{as_utc(message.updated):%Y-%m-%d %H:%M}"),
                key=str(message.id),
            )
        shown = f", the last {MAX_ROWS} shown" if len(rows) > MAX_ROWS else ""
        self.query_one("#ts-folder", Static).update(
            Text.assemble(
                (folder, "bold"), f" - {len(rows)} message(s){shown}: {_FOLDER_HELP.get(folder, '')}"
            )
        )
        self.query_one("#ts-detail", Static).update(
            Text("Move to a message for its reason and file." if rows else "")
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "ts-messages" or self.folder is None or event.row_key.value is None:
            return
        wanted = event.row_key.value
        message = next((m for m in self.messages.get(self.folder, []) if str(m.id) == wanted), None)
        if message is None:
            return
        hold = f" held under {message.hold}" if message.hold else ""
        issue = f" issue {_issue(message)}" if message.issue else ""
        if message.issue and message.issue_key:
            issue += f" (pair {message.issue[:8]})"
        self.query_one("#ts-detail", Static).update(
            Text.assemble(
                (f"#{message.id} {message.direction} {message.type}{issue}{hold}: ", "bold"),
                literal(message.reason_code or "no reason"),
                " - ",
                literal(message.reason_text or "-"),
                f"\nfile {message.file} ({message.size} bytes)",
            )
        )


def _one_line(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."


_FOLDER_HELP: dict[str, str] = {
    Folder.ERROR: "Could not be applied; later messages of the same issue are held behind it.",
    Folder.REJECTED: "Failed to decrypt, not signed by the partner, or not a valid envelope.",
    Folder.SEND_ERROR: "Sending failed; retried with back-off.",
    Folder.MISSING: "Needs an issue that is not synced yet (parent, link target).",
    Folder.WAITING: "Earlier sequence ids have not arrived; applied when the gap closes.",
    Folder.OFFLINE: "The tracker was unreachable; retried with back-off.",
    Folder.RECEIVE: "Received from the partner, not yet processed.",
    Folder.SEND: "Waiting to be sent to the partner.",
    Folder.UNKNOWN: "Files in RECEIVE that are not .bac messages.",
    Folder.OUTDATED: "Older sequence ids or an old epoch (duplicates, replays).",
    Folder.SENT: "Handed to the channel.",
    Folder.PROCESSED: "Applied successfully.",
}


def _issue(message: MessageInfo) -> str:
    """The local issue key; before the issue exists here, the start of its pair id."""
    if message.issue_key:
        return message.issue_key
    return f"new {message.issue[:8]}" if message.issue else "-"
