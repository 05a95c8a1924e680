"""Modal dialogs of the overview: row actions menu, edit, delete confirmation, configuration, help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from engine.service.installation import SyncInfo
from engine.vocab import SyncStatus

from .commands import ALL_COMMANDS, NAVIGATION_HELP
from .model import START, STOP, action_for
from .widgets import literal

NAME_MAX = 120
DESCRIPTION_MAX = 2000

# action id, label, key shown in the menu
MENU_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("accept", "Accept the request", "y"),
    ("decline", "Decline the request...", "N"),
    (START, "Start", "s"),
    (STOP, "Stop", "x"),
    ("edit", "Edit name and description...", "e"),
    ("configure", "Configure the mappings...", "c"),
    ("publish", "Publish the draft...", "P"),
    ("review", "Review the partner's draft...", "i"),
    ("troubleshoot", "Troubleshoot...", "t"),
    ("history", "History...", "h"),
    ("support_zip", "Create support ZIP", "z"),
    ("delete", "Delete...", "d"),
)


class RowMenu(ModalScreen[str | None]):
    """The "..." menu of one synchronization; returns the chosen action id."""

    BINDINGS = [
        Binding("escape", "dismiss_menu", "Close", id="menu.close"),
        *(
            Binding(key, f"choose('{action}')", label, show=False, id=f"menu.{action}")
            for action, label, key in MENU_ITEMS
        ),
    ]

    def __init__(self, info: SyncInfo) -> None:
        super().__init__()
        self.info = info

    def enabled(self, action: str) -> bool:
        if action in (START, STOP):
            return action_for(self.info.status) == action
        if action in ("accept", "decline"):
            return self.info.status == SyncStatus.INCOMING_REQUEST
        return True

    def compose(self) -> ComposeResult:
        with Vertical(id="menu-box", classes="dialog"):
            yield Static(literal(f"{self.info.name} ({self.info.key})"), classes="dialog-title")
            yield Static(Text(f"Status: {self.info.status}"), classes="dialog-subtitle")
            yield OptionList(
                *(
                    Option(
                        Text.assemble((f"{key}  ", "bold"), label, self._why_not(action)),
                        id=action,
                        disabled=not self.enabled(action),
                    )
                    for action, label, key in MENU_ITEMS
                ),
                id="menu-options",
                compact=True,
            )

    def _why_not(self, action: str) -> str:
        if self.enabled(action):
            return ""
        if action in ("accept", "decline"):
            return f" (only for an {SyncStatus.INCOMING_REQUEST})"
        wanted = SyncStatus.STOPPED if action == START else SyncStatus.RUNNING
        return f" (only when {wanted})"

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_choose(self, action: str) -> None:
        if self.enabled(action):
            self.dismiss(action)
        else:
            self.app.bell()

    def action_dismiss_menu(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class EditResult:
    saved: bool
    name: str
    description: str


def validate_name(name: str) -> str | None:
    """The problem with a synchronization name, or None (same rules as the engine)."""
    stripped = name.strip()
    if not stripped:
        return "Name: must not be empty"
    if len(stripped) > NAME_MAX:
        return f"Name: at most {NAME_MAX} characters (now {len(stripped)})"
    return None


def validate_description(description: str) -> str | None:
    if len(description) > DESCRIPTION_MAX:
        return f"Description: at most {DESCRIPTION_MAX} characters (now {len(description)})"
    return None


class EditDialog(ModalScreen[EditResult]):
    """Name and description; cancelling returns the draft so that it can be offered again."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="edit.cancel"),
        Binding("ctrl+s", "save", "Save", id="edit.save"),
    ]

    def __init__(self, info: SyncInfo, draft: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.info = info
        self.initial = draft or (info.name, info.description)

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box", classes="dialog"):
            yield Static(literal(f"Edit {self.info.key}"), classes="dialog-title")
            yield Label("Name")
            yield Input(self.initial[0], id="edit-name", compact=True)
            yield Label("Description")
            yield TextArea(
                self.initial[1], id="edit-description", soft_wrap=True, show_line_numbers=False, compact=True
            )
            yield Static("", id="edit-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="edit-save", variant="primary", compact=True)
                yield Button("Cancel", id="edit-cancel", compact=True)

    def values(self) -> tuple[str, str]:
        return self.query_one("#edit-name", Input).value, self.query_one("#edit-description", TextArea).text

    def problem(self) -> str | None:
        name, description = self.values()
        return validate_name(name) or validate_description(description)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show_problem(self.problem())

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self._show_problem(self.problem())

    def _show_problem(self, problem: str | None) -> None:
        self.query_one("#edit-error", Static).update(Text(problem or ""))
        self.query_one("#edit-save", Button).disabled = problem is not None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "edit-save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        problem = self.problem()
        if problem:
            self._show_problem(problem)
            self.app.bell()
            return
        name, description = self.values()
        self.dismiss(EditResult(True, name.strip(), description))

    def action_cancel(self) -> None:
        name, description = self.values()
        self.dismiss(EditResult(False, name, description))


class Confirm(ModalScreen[bool]):
    """Asks before an action that cannot be undone; `n`/escape (the default button) cancels."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel", id="confirm.cancel"),
        Binding("y", "answer(True)", "Confirm", id="confirm.yes"),
    ]

    def __init__(self, title: str, text: Text, yes: str) -> None:
        super().__init__()
        self.title_text, self.text, self.yes = title, text, yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static(Text(self.title_text), classes="dialog-title")
            yield Static(self.text, id="confirm-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", id="confirm-yes", variant="error", compact=True)
                yield Button("Cancel (n)", id="confirm-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ConfirmDelete(ModalScreen[bool]):
    """Asks before deleting a synchronization, naming it."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel", id="delete.cancel"),
        Binding("y", "answer(True)", "Delete", id="delete.confirm"),
    ]

    def __init__(self, info: SyncInfo) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        running = ""
        if self.info.status == SyncStatus.RUNNING:
            running = " It is RUNNING and will be stopped first."
        with Vertical(id="delete-box", classes="dialog"):
            yield Static(Text("Delete synchronization?"), classes="dialog-title")
            yield Static(
                Text.assemble(
                    "Delete ",
                    (self.info.name, "bold"),
                    f" ({self.info.key})?{running}\n",
                    "Its message files move to data/deleted/; this cannot be undone.",
                ),
                id="delete-text",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Delete (y)", id="delete-yes", variant="error", compact=True)
                yield Button("Cancel (n)", id="delete-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#delete-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "delete-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class HelpScreen(ModalScreen[None]):
    """Every key and command, from the same declarations as the footer and the palette."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close", id="help.close")]

    def __init__(self, screen: Screen[Any] | None = None) -> None:
        super().__init__()
        self.about = screen  # another screen's keys instead of the overview's

    def rows(self) -> dict[str, list[tuple[str, str]]]:
        """Group -> (keys as currently bound, what they do)."""
        if self.about is not None:
            return {
                self.about.__class__.__name__.removesuffix("Screen"): [
                    (", ".join(_key_name(k) for k in b.key.split(",")), str(b.tooltip or b.description))
                    for b in self.about.BINDINGS
                    if isinstance(b, Binding) and b.id
                ]
            }
        keymap: dict[str, str] = getattr(self.app, "_keymap", {}) or {}
        groups: dict[str, list[tuple[str, str]]] = {}
        for command in ALL_COMMANDS:
            keys = keymap.get(command.id, command.key)
            shown = ", ".join(_key_name(key) for key in keys.split(","))
            groups.setdefault(command.group, []).append((shown, command.help))
        groups["Navigation"] = list(NAVIGATION_HELP)
        groups["Statuses"] = list(STATUS_HELP)
        return groups

    def compose(self) -> ComposeResult:
        grid = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        grid.add_column("keys", no_wrap=True, style="bold", min_width=12)
        grid.add_column("what", ratio=1)
        for group, rows in self.rows().items():
            grid.add_row(Text(group, style="bold underline"), "")
            for keys, help_text in rows:
                grid.add_row(f" {keys}", help_text)
            grid.add_row("", "")
        with Vertical(id="help-box", classes="dialog"):
            yield Static(Text("Backbone - keys and commands"), classes="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(grid, id="help-text")
            yield Static(Text("escape closes; ctrl+p finds any command by name"), classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


STATUS_HELP: tuple[tuple[str, str], ...] = (
    (SyncStatus.RUNNING, "Issue updates are synchronized according to the configuration."),
    (SyncStatus.STOPPED, "Paired and idle: no issue updates are synchronized."),
    (SyncStatus.REQUEST_SENT, "Waiting for the partner to accept the request."),
    (SyncStatus.INCOMING_REQUEST, "Requested by the partner: accept (y) or decline (N) it."),
    (SyncStatus.HANDSHAKE, "Both sides exist; pairing messages are being exchanged."),
    (SyncStatus.DECLINED, "The request was declined. Please delete it."),
    (SyncStatus.WAITING_FOR_PARTNER, "A configuration was published; the partner has not completed it."),
    (SyncStatus.UPDATE_REQUIRED, "A new configuration arrived and must be completed before running."),
    ("Err / Pend", "Messages in ERROR, REJECTED, SEND_ERROR / in RECEIVE, WAITING, MISSING, OFFLINE, SEND."),
)

_KEY_NAMES = {"question_mark": "?", "slash": "/", "escape": "esc", "delete": "del"}


def _key_name(key: str) -> str:
    key = key.strip()
    return _KEY_NAMES.get(key, key)
