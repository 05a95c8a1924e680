"""The configuration editor (SPEC section 4): tabs for issue types, fields, statuses, comments and
attachments, sub-tasks and links, on one side's draft (engine.service.editor).

The primary adds, changes and removes mappings, picks local names from what its tracker offers and
writes the labels its partner reads; the secondary binds the partner's ids to its own names and
narrows directions. Unsaved changes are kept when the screen closes or a save fails."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Input,
    Label,
    Select,
    Static,
    TabbedContent,
    TabPane,
)

from engine.errors import BackboneError
from engine.service import editor
from engine.service.editor import DraftModel, FieldRow, Filter, Row
from engine.vocab import Role

from .driver import Driver
from .widgets import AsciiCheckbox, AsciiSelect, literal

UNBOUND = "(not bound here)"
NOT_SHARED = "(not shared)"
TABLES = {"types": "issue type", "fields": "field", "statuses": "status"}
TABLE_KEYS = {"issue type": "types", "field": "fields", "status": "statuses"}
VALUE_KINDS = ("select", "user", "labels")
FILTER_DIRECTIONS = ("to_partner", "from_partner")


class ConfigureScreen(Screen[None]):
    """Edits one side's draft; `kept` receives the model when the screen closes unsaved."""

    BINDINGS = [
        Binding(
            "escape",
            "close",
            "Close",
            id="configure.close",
            tooltip="Close; unsaved changes are kept for next time",
        ),
        Binding(
            "enter",
            "edit_row",
            "Edit",
            id="configure.edit",
            show=True,
            tooltip="Edit the mapping under the cursor",
        ),
        *(
            Binding(
                str(n),
                f"tab('{pane}')",
                title,
                id=f"configure.tab_{pane}",
                show=False,
                tooltip=f"Show {title}",
            )
            for n, (pane, title) in enumerate(
                (
                    ("types", "Issue types"),
                    ("fields", "Fields"),
                    ("statuses", "Statuses"),
                    ("comments", "Comments & attachments"),
                    ("links", "Sub-tasks & links"),
                ),
                start=1,
            )
        ),
        Binding(
            "a",
            "add_row",
            "Add",
            id="configure.add",
            show=True,
            tooltip="Map another issue type, field or status",
        ),
        Binding("delete,minus", "remove_row", "Remove", id="configure.remove", show=True, key_display="del"),
        Binding(
            "ctrl+s",
            "save",
            "Save draft",
            id="configure.save",
            show=True,
            tooltip="Save the draft (in force: unchanged)",
        ),
        Binding(
            "L",
            "label_all",
            "Label all",
            id="configure.label_all",
            show=False,
            tooltip="Label every mapping with its local name",
        ),
        Binding(
            "B",
            "bind_by_labels",
            "Bind by labels",
            id="configure.bind_by_labels",
            show=False,
            tooltip="Bind ids whose labels are local names",
        ),
        Binding(
            "D",
            "dry_run",
            "Dry run",
            id="configure.dry_run",
            show=True,
            tooltip="Save, then check the draft against every synced issue",
        ),
        Binding(
            "P",
            "publish",
            "Publish...",
            id="configure.publish",
            show=True,
            tooltip="Save, then publish the draft",
        ),
    ]

    def __init__(
        self,
        driver: Driver,
        model: DraftModel,
        *,
        kept: Callable[[DraftModel | None], None],
        publish: Callable[[str], None],
        changed: bool = False,
    ) -> None:
        super().__init__()
        self.driver = driver
        self.model = model
        self.kept = kept
        self.publish_from_here = publish
        self.changed = changed  # edited here and not saved

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        model = self.model
        yield Static(id="cf-title", classes="titlebar")
        with TabbedContent(id="cf-tabs"):
            for pane, title in (("types", "Issue types"), ("fields", "Fields"), ("statuses", "Statuses")):
                with TabPane(title, id=f"tab-{pane}"):
                    yield DataTable(id=f"t-{pane}", cursor_type="row", zebra_stripes=True)
            with TabPane("Comments & attachments", id="tab-comments"), VerticalScroll():
                for name in ("comments", "attachments"):
                    yield Label(f"{name.capitalize()} (within: {', '.join(model.within[name])})")
                    yield AsciiSelect(
                        [(d, d) for d in model.within[name]],
                        value=getattr(model, name),
                        allow_blank=False,
                        id=f"cf-{name}",
                        compact=True,
                    )
                yield Label("Largest attachment (bytes)")
                yield Input(str(model.attachment_max_bytes), id="cf-max-bytes", restrict=r"\d*", compact=True)
                for direction in FILTER_DIRECTIONS:
                    found = model.filters.get(direction) or Filter(model.attachment_max_bytes, [], "")
                    yield Label(
                        f"Attachments {direction.replace('_', ' ')}: size, types (image/*, ...), names"
                    )
                    with Horizontal(classes="cf-filter"):
                        yield Input(
                            str(found.max_bytes), id=f"cf-{direction}-max", restrict=r"\d*", compact=True
                        )
                        yield Input(
                            ", ".join(found.types),
                            placeholder="any type",
                            id=f"cf-{direction}-types",
                            compact=True,
                        )
                        yield Input(
                            found.names,
                            placeholder="any name (*.pdf)",
                            id=f"cf-{direction}-names",
                            compact=True,
                        )
            with TabPane("Sub-tasks & links", id="tab-links"):
                yield AsciiCheckbox(
                    "Synchronize sub-tasks", value=model.subtasks, id="cf-subtasks", compact=True
                )
                yield AsciiCheckbox("Synchronize issue links", value=model.links, id="cf-links", compact=True)
        yield Static("", id="cf-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        columns = (
            ("Partner id", "Partner's label", "Local name")
            if self.model.role == Role.SECONDARY
            else ("Local name", "Id", "Label for the partner")
        )
        for pane in ("types", "statuses"):
            self.query_one(f"#t-{pane}", DataTable).add_columns(*columns)
        self.query_one("#t-fields", DataTable).add_columns(
            "Local name", "Kind", "Direction", "Values", "Id", "Label"
        )
        self.refresh_tables()
        self.query_one("#t-types", DataTable).focus()

    def refresh_tables(self) -> None:
        model = self.model
        secondary = model.role == Role.SECONDARY
        for pane, rows in (("types", model.issue_types), ("statuses", model.statuses)):
            table = self.query_one(f"#t-{pane}", DataTable)
            cursor = table.cursor_row
            table.clear()
            for row in rows:
                cells = (
                    (row.id, row.label or "-", row.local or UNBOUND)
                    if secondary
                    else (row.local, row.id, row.label)
                )
                table.add_row(*(literal(c) for c in cells), key=row.id)
            table.move_cursor(row=min(cursor, max(len(rows) - 1, 0)))
        table = self.query_one("#t-fields", DataTable)
        cursor = table.cursor_row
        table.clear()
        for f in model.fields:
            values = (
                ", ".join(f"{k}={v}" for k, v in f.values.items())
                if f.values
                else ("by e-mail" if f.match == "email" else "-")
            )
            table.add_row(
                literal(f.local or UNBOUND),
                literal(f.kind),
                literal(f.direction),
                literal(values[:40]),
                literal(f.id),
                literal(f.label or "-"),
                key=f.id,
            )
        table.move_cursor(row=min(cursor, max(len(model.fields) - 1, 0)))
        self.show_title()

    def show_title(self) -> None:
        model = self.model
        state = "unsaved changes" if self.changed else ("draft saved" if model.dirty else "no draft")
        pending = f", version {model.pending} pending" if model.pending else ""
        self.query_one("#cf-title", Static).update(
            Text(
                f"Configure {model.key} - {model.role}, project {model.project} - "
                f"version {model.version} in force{pending} - {state}"
            )
        )

    def say(self, text: str, *, error: bool = False) -> None:
        self.query_one("#cf-status", Static).update(Text(text, style="bold red" if error else ""))

    # -- the current table row ------------------------------------------------------------

    def current(self) -> tuple[str, Row | FieldRow] | None:
        tabs = self.query_one("#cf-tabs", TabbedContent)
        pane = (tabs.active or "").removeprefix("tab-")
        if pane not in TABLES:
            return None
        table = self.query_one(f"#t-{pane}", DataTable)
        rows = self.rows_of(TABLES[pane])
        if not rows or table.cursor_row >= len(rows):
            return TABLES[pane], None  # type: ignore[return-value]
        return TABLES[pane], rows[table.cursor_row]

    def rows_of(self, what: str) -> list[Any]:
        if what == "field":
            return self.model.fields
        return self.model.issue_types if what == "issue type" else self.model.statuses

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("add_row", "remove_row", "label_all"):
            return True if self.model.can_add else None
        if action == "bind_by_labels":
            return None if self.model.can_add else True
        return True

    def action_tab(self, pane: str) -> None:
        self.query_one("#cf-tabs", TabbedContent).active = f"tab-{pane}"
        target = self.query(f"#t-{pane}") or self.query_one(f"#tab-{pane}").query("Select, Checkbox")
        if target:
            target.first().focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_edit_row()

    def action_edit_row(self) -> None:
        found = self.current()
        if found is None or found[1] is None:
            return
        what, row = found
        self.app.push_screen(
            MappingDialog(self.model, what, deepcopy(row)), lambda edited: self.edited(row, edited)
        )

    def edited(self, row: Row | FieldRow, edited: Row | FieldRow | None) -> None:
        if edited is None:
            return
        row.__dict__.update(edited.__dict__)
        self.changed = True
        self.refresh_tables()

    def action_add_row(self) -> None:
        found = self.current()
        if found is None:
            self.app.notify("Add works on the issue types, fields and statuses tabs", severity="warning")
            return
        what = found[0]
        offered = self.model.unbound_locals(what)
        if not offered:
            self.app.notify(f"Every {what} of {self.model.project} is mapped already", severity="warning")
            return

        def chosen(local: str | None) -> None:
            if local:
                row = self.model.new_row(what, local)
                self.changed = True
                self.refresh_tables()
                table = self.query_one(f"#t-{TABLE_KEYS[what]}", DataTable)
                table.move_cursor(row=table.row_count - 1)
                self.say(f"Added {what} {local} as {row.id}; Enter edits it")

        self.app.push_screen(PickDialog(f"Map which {what}?", offered), chosen)

    def action_remove_row(self) -> None:
        found = self.current()
        if found is None or found[1] is None:
            return
        what, row = found
        rows = self.rows_of(what)
        rows.remove(row)
        self.changed = True
        self.refresh_tables()
        self.say(f"Removed {what} mapping {row.id} ({row.local}); the partner sees it removed once published")

    def action_label_all(self) -> None:
        count = self.model.label_with_local_names()
        self.changed = self.changed or bool(count)
        self.refresh_tables()
        self.say(
            f"Labelled {count} mapping(s) and value(s) with their local names: the partner will read them"
        )

    def action_bind_by_labels(self) -> None:
        count = self.model.bind_by_labels()
        self.changed = self.changed or bool(count)
        self.refresh_tables()
        left = sum(1 for r in [*self.model.issue_types, *self.model.statuses] if not r.local)
        self.say(f"Bound {count} id(s) to the local names their labels give; {left} type(s)/status(es) left")

    def read_settings(self) -> None:
        model = self.model
        for name in ("comments", "attachments"):
            setattr(model, name, str(self.query_one(f"#cf-{name}", Select).value))
        model.attachment_max_bytes = int(self.query_one("#cf-max-bytes", Input).value or 0)
        model.subtasks = self.query_one("#cf-subtasks", Checkbox).value
        model.links = self.query_one("#cf-links", Checkbox).value
        for direction in FILTER_DIRECTIONS:
            size = int(self.query_one(f"#cf-{direction}-max", Input).value or 0)
            types = [
                t.strip()
                for t in self.query_one(f"#cf-{direction}-types", Input).value.split(",")
                if t.strip()
            ]
            names = self.query_one(f"#cf-{direction}-names", Input).value.strip()
            if types or names or size != model.attachment_max_bytes or direction in model.filters:
                model.filters[direction] = Filter(size, types, names)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.changed = True

    def on_select_changed(self, event: Select.Changed) -> None:
        self.changed = True

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.changed = True

    # -- saving, dry run, publishing ------------------------------------------------------

    def save_then(self, then: Callable[[], None] | None = None) -> None:
        """Save the model as the draft (in a worker); on failure say why and keep it here."""
        self.read_settings()
        installation, model = self.driver.installation, self.model

        def work() -> str:
            try:
                editor.save(installation, model)
            except BackboneError as exc:
                return str(exc)
            return ""

        def done(problem: str) -> None:
            if problem:
                self.say(f"Not saved: {problem}", error=True)
                self.app.bell()
                return
            self.changed, self.model.dirty = False, True
            self.show_title()
            self.say("Draft saved (the version in force is unchanged until you publish)")
            if then is not None:
                then()

        self.driver.submit(f"Save the draft of {model.key}", work, done)

    def action_save(self) -> None:
        self.save_then()

    def action_dry_run(self) -> None:
        installation, model = self.driver.installation, self.model

        def run() -> None:
            self.driver.submit(
                f"Dry run of {model.key}",
                lambda: installation.config_dry_run(model.key, model.project),
                lambda result: self.app.push_screen(
                    TextDialog(f"Dry run of {model.key}", dry_run_text(result))
                ),
            )

        self.save_then(run)

    def action_publish(self) -> None:
        self.save_then(lambda: self.publish_from_here(self.model.project))

    def action_close(self) -> None:
        if self.changed:
            self.read_settings()
            self.kept(self.model)
            self.app.notify(f"Unsaved changes of {self.model.key} kept: configure again to go on")
        else:
            self.kept(None)
        self.dismiss(None)


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
