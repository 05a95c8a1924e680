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
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
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

from .dialogs import HelpScreen
from .driver import Driver
from .mapping import UNBOUND, MappingDialog, PickDialog, TextDialog, dry_run_text
from .widgets import AsciiCheckbox, AsciiSelect, literal

TABLES = {"types": "issue type", "fields": "field", "statuses": "status"}
TABLE_KEYS = {"issue type": "types", "field": "fields", "status": "statuses"}
FILTER_DIRECTIONS = ("to_partner", "from_partner")


class ConfigureScreen(Screen[None]):
    """Edits one side's draft; `kept` receives the model when the screen closes unsaved."""

    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", id="configure.help", tooltip="Every key of this screen"),
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

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self))

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
