"""Form pieces of the creation wizard: labelled fields with their error line, the mail server
fields, path completion, and what the wizard keeps and returns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, RadioButton, RadioSet, Select, Static, TextArea

from engine.service.forms import TLS_MODES, ImapSettings, SmtpSettings
from engine.service.views import SyncInfo

from .widgets import AsciiSelect

# page id -> title
TITLES = {
    "role": "What do you want to do?",
    "handshake": "The partner's handshake file",
    "summary": "Check the partner's request",
    "project": "Local project and synchronization user",
    "protocol": "How messages travel",
    "receive": "Receive e-mails (IMAP)",
    "send": "Send e-mails (SMTP)",
    "exchange": "Exchange folder",
    "security": "Encryption and review mode",
    "name": "Name and description",
    "handshake_out": "Write the handshake file",
    "accept": "Create",
    "done": "Done",
}
# an engine FieldError's field -> (page, the input that shows it)
FIELD_PAGES = {
    "project": ("project", "project"),
    "tracker": ("project", "tracker"),
    "user": ("project", "user"),
    "protocol": ("protocol", "protocol"),
    "exchange": ("exchange", "exchange"),
    "mail": ("receive", "receive-host"),
    "handshake_out": ("handshake_out", "handshake_out"),
    "name": ("name", "name"),
    "handshake": ("handshake", "handshake"),
}


class PathSuggester(Suggester):
    """Completes a file path from what the folder holds (a folder gets a trailing `/`)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        folder, _, start = expanded.rpartition("/")
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            return None
        for name in names:
            if name.startswith(start) and name != start and not name.startswith("."):
                found = os.path.join(folder, name) if folder else name
                if os.path.isdir(found):
                    found += "/"
                return value + found[len(expanded) :]
        return None


@dataclass
class WizardDraft:
    """What was typed, kept when the wizard is cancelled and offered the next time."""

    values: dict[str, Any] = field(default_factory=dict)
    page: str = "role"


@dataclass(frozen=True)
class Created:
    """What the last page shows: the synchronization and, for a primary, its handshake file."""

    info: SyncInfo
    handshake: Path | None = None
    fingerprint: str = ""


def field_row(label: str, widget: Any, name: str, hint: str = "") -> ComposeResult:
    """A label, the input, an optional hint and the line where its error shows."""
    yield Label(label, classes="w-label")
    yield widget
    if hint:
        yield Static(Text(hint), classes="w-hint")
    yield Static("", id=f"err-{name}", classes="dialog-error w-error")


def server_fields(prefix: str, defaults: ImapSettings | SmtpSettings) -> ComposeResult:
    yield from field_row(
        "Server host", Input(defaults.host, id=f"{prefix}-host", compact=True), f"{prefix}-host"
    )
    yield from field_row(
        "Port",
        Input(str(defaults.port), id=f"{prefix}-port", restrict=r"\d*", compact=True),
        f"{prefix}-port",
    )
    yield from field_row(
        "Connection security (tls: implicit TLS, starttls, none: plain - only on a trusted network)",
        AsciiSelect(
            [(mode, mode) for mode in TLS_MODES],
            value=defaults.tls,
            allow_blank=False,
            id=f"{prefix}-tls",
            compact=True,
        ),
        f"{prefix}-tls",
    )
    yield from field_row("User name", Input(id=f"{prefix}-username", compact=True), f"{prefix}-username")
    yield from field_row(
        "Password", Input(id=f"{prefix}-password", password=True, compact=True), f"{prefix}-password"
    )


def restore_values(screen: Widget, values: dict[str, Any]) -> None:
    """Put back what a cancelled wizard held (widget id -> value)."""
    for widget_id, value in values.items():
        widgets = screen.query(f"#{widget_id}")
        if not widgets:
            continue
        widget = widgets.first()
        if isinstance(widget, Input | Checkbox):
            widget.value = value
        elif isinstance(widget, TextArea):
            widget.text = value
        elif isinstance(widget, Select) and value is not None:
            widget.value = value
        elif isinstance(widget, RadioSet):
            for button in widget.query(RadioButton):
                button.value = button.id == value


def snapshot_values(screen: Widget) -> dict[str, Any]:
    """Every input's value by widget id (a radio set: the id of its pressed button)."""
    values: dict[str, Any] = {}
    for widget in screen.query("Input, Checkbox, TextArea, Select, RadioSet"):
        if widget.id is None or isinstance(widget, RadioButton):
            continue
        if isinstance(widget, Input | Checkbox):
            values[widget.id] = widget.value
        elif isinstance(widget, TextArea):
            values[widget.id] = widget.text
        elif isinstance(widget, Select):
            values[widget.id] = None if widget.is_blank() else widget.value
        elif isinstance(widget, RadioSet):
            pressed = widget.pressed_button
            values[widget.id] = pressed.id if pressed is not None else None
    return values
