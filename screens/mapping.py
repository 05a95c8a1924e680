"""Small dialogs of the configuration editor: one mapping (local name from the tracker's list,
direction, value table, user matching, label), picking a name, reading a text; and how a change
and a dry run read (a text marker and a colour per change)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from engine.service import editor
from engine.service.editor import DraftModel, FieldRow, Row
from engine.vocab import Role

from .widgets import AsciiCheckbox, AsciiSelect, literal

UNBOUND = "(not bound here)"
NOT_SHARED = "(not shared)"
VALUE_KINDS = ("select", "user", "labels")


def dry_run_text(result: Any) -> Text:
    text = Text(f"{result.pairs} synced issue(s) looked at\n\n")
    for change in result.changes:
        text.append_text(change_line(change))
        text.append("\n")
    for issue, mapping, value in result.unmappable:
        text.append(f"cannot map: {issue} {mapping} = ", style="bold")
        text.append_text(literal(value))
        text.append("\n")
    for mapping, count in sorted(result.resync.items()):
        text.append(f"new mapping {mapping}: {count} issue(s) filled by a RESYNC once in force\n")
    if not (result.changes or result.unmappable):
        text.append("nothing changes")
    return text


MARKERS = {
    "added": ("+", "green"),
    "changed": ("~", "blue"),
    "narrowed": ("~", "blue"),
    "removed": ("-", "red"),
}


def change_line(change: Any) -> Text:
    """One change with a text marker (+ ~ -) and its colour, so it reads without colour too."""
    marker, colour = MARKERS.get(change.how, ("?", ""))
    line = Text(f"{marker} {change.how:<8} {change.what} {change.id}", style=colour)
    if change.detail:
        line.append(": ")
        line.append_text(literal(change.detail))
    return line


class PickDialog(ModalScreen[str | None]):
    """Choose one name from a list (what the tracker offers)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="pick.cancel")]

    def __init__(self, title: str, names: list[str]) -> None:
        super().__init__()
        self.title_text, self.names = title, names

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="pick-box"):
            yield Static(Text(self.title_text), classes="dialog-title")
            yield AsciiSelect([(n, n) for n in self.names], id="pick", compact=True, prompt="Choose")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Add", id="pick-ok", variant="primary", compact=True)
                yield Button("Cancel", id="pick-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#pick", Select).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        select = self.query_one("#pick", Select)
        if event.button.id == "pick-ok" and not select.is_blank():
            self.dismiss(str(select.value))
        elif event.button.id == "pick-cancel":
            self.dismiss(None)

    def on_select_changed(self, event: Select.Changed) -> None:
        if not event.select.is_blank():
            self.query_one("#pick-ok", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextDialog(ModalScreen[None]):
    """A text to read (dry-run findings, a diff)."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="text.close")]

    def __init__(self, title: str, text: Text) -> None:
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="text-box"):
            yield Static(Text(self.title_text), classes="dialog-title")
            with VerticalScroll():
                yield Static(self.text, id="text-body")
            yield Static(Text("escape closes"), classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


class MappingDialog(ModalScreen[Row | FieldRow | None]):
    """One mapping: the local name (from the tracker's list), direction, values, label."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="mapping.cancel"),
        Binding("ctrl+s", "ok", "Done", id="mapping.ok"),
    ]

    def __init__(self, model: DraftModel, what: str, row: Row | FieldRow) -> None:
        super().__init__()
        self.model, self.what, self.row = model, what, row
        self.secondary = model.role == Role.SECONDARY

    def names(self) -> list[str]:
        choices = self.model.choices
        if self.what == "field":
            return list(choices.fields)
        return choices.issue_types if self.what == "issue type" else choices.statuses

    def local_values(self) -> list[str]:
        row = self.row
        if not isinstance(row, FieldRow) or row.kind not in VALUE_KINDS or row.match == "email":
            return []
        if row.kind == "user":
            known = list(self.model.choices.users)
        else:
            known = list(self.model.choices.options.get(row.local, []))
        return known + [v for v in row.values if v not in known]

    def compose(self) -> ComposeResult:
        row = self.row
        names = [(n, n) for n in self.names()]
        if self.secondary:
            names = [(UNBOUND, "")] + names
        with Vertical(classes="dialog", id="mapping-box"), VerticalScroll():
            yield Static(literal(f"{self.what.capitalize()} mapping {row.id}"), classes="dialog-title")
            if self.secondary and row.label:
                yield Static(literal(f"The partner's label: {row.label}"), classes="dialog-subtitle")
            yield Label("Local name")
            yield AsciiSelect(
                names,
                value=row.local if row.local or self.secondary else Select.NULL,
                id="m-local",
                allow_blank=not self.secondary,
                compact=True,
            )
            if isinstance(row, FieldRow):
                yield Static(Text(f"Kind: {row.kind}"), id="m-kind", classes="dialog-subtitle")
                yield Label("Direction")
                yield AsciiSelect(
                    [(d, d) for d in row.within],
                    value=row.direction,
                    allow_blank=False,
                    id="m-direction",
                    compact=True,
                )
                if row.kind == "user":
                    yield Label("Users travel by")
                    yield AsciiSelect(
                        [("user name (or the values below)", "name"), ("e-mail address", "email")],
                        value=row.match,
                        allow_blank=False,
                        id="m-match",
                        compact=True,
                        disabled=self.secondary,
                    )
                values = self.local_values()
                if values:
                    yield Label("Values: which local value stands for which shared value")
                    for n, value in enumerate(values):
                        with Horizontal(classes="m-value"):
                            yield Static(literal(value), classes="m-value-name")
                            yield self.value_widget(n, value)
                    yield Label("Default (a value without a match becomes this one)")
                    yield AsciiSelect(
                        [(v, v) for v in values],
                        value=row.default if row.default in values else Select.NULL,
                        id="m-default",
                        compact=True,
                        prompt="(no default: an error names the value)",
                    )
            if not self.secondary:
                yield Label("Label the partner reads (optional; the only text that travels)")
                yield Input(row.label, id="m-label", compact=True)
            yield Static("", id="m-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Done (ctrl+s)", id="m-ok", variant="primary", compact=True)
                yield Button("Cancel", id="m-cancel", compact=True)

    def value_widget(self, n: int, value: str) -> Any:
        row = self.row
        assert isinstance(row, FieldRow)
        shared = row.values.get(value)
        if self.secondary:
            options = [(f"{v} {self.model.labels.get(v, '')}".strip(), v) for v in row.shared_values]
            return AsciiSelect(
                options,
                value=shared if shared in row.shared_values else Select.NULL,
                id=f"m-value-{n}",
                compact=True,
                prompt=NOT_SHARED,
            )
        return AsciiCheckbox(
            f"shared{f' as {shared}' if shared else ''}",
            value=shared is not None,
            id=f"m-value-{n}",
            compact=True,
        )

    def on_mount(self) -> None:
        self.query_one("#m-local", Select).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "m-ok":
            self.action_ok()
        elif event.button.id == "m-cancel":
            self.action_cancel()

    def action_ok(self) -> None:
        row = self.row
        local_select = self.query_one("#m-local", Select)
        local = "" if local_select.is_blank() else str(local_select.value)
        if not local and not self.secondary:
            self.query_one("#m-error", Static).update(Text("choose the local name"))
            self.app.bell()
            return
        if isinstance(row, FieldRow):
            if local != row.local and local:
                row.kind = self.model.choices.fields.get(local, row.kind) if not self.secondary else row.kind
            direction = str(self.query_one("#m-direction", Select).value)
            if not local and direction != "off":
                self.query_one("#m-error", Static).update(Text('an unbound field must have direction "off"'))
                self.app.bell()
                return
            row.direction = direction
            if row.kind == "user" and self.query("#m-match"):
                row.match = str(self.query_one("#m-match", Select).value)
            values = self.local_values()
            if values and row.match != "email":
                chosen: dict[str, str] = {}
                for n, value in enumerate(values):
                    widget = self.query_one(f"#m-value-{n}")
                    if isinstance(widget, Select) and not widget.is_blank():
                        chosen[value] = str(widget.value)
                    elif isinstance(widget, Checkbox) and widget.value:
                        chosen[value] = row.values.get(value) or editor.new_value_id()
                row.values = chosen
                default = self.query_one("#m-default", Select)
                row.default = None if default.is_blank() else str(default.value)
            if row.match == "email":
                row.values = {}
        row.local = local
        if self.query("#m-label"):
            row.label = self.query_one("#m-label", Input).value.strip()
        self.dismiss(row)

    def action_cancel(self) -> None:
        self.dismiss(None)
