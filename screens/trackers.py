"""The trackers of the installation: the embedded one and the Jira and Redmine accounts, with the
synchronizations on each and whether a tracker refused its credentials; add, change (new
credentials), test and remove them (the CLI's `tracker add|update|list|test|remove`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Select, Static

from engine.errors import BackboneError, FieldError, TrackerOffline
from engine.service.trackers import AUTHS, EMBEDDED, TrackerInfo, parse_options

from .dialogs import Confirm
from .driver import Driver
from .widgets import AsciiSelect, literal
from .wizard_forms import field_row

COLUMNS = ("Name", "Kind", "Address", "API", "Auth", "User", "Used by", "State")
API_VERSIONS = [("3 - Cloud", "3"), ("2 - Server / Data Center", "2")]
# an engine FieldError's field -> the form's input that shows it
FORM_FIELDS = {
    "name": "name",
    "kind": "kind",
    "url": "url",
    "api_version": "api_version",
    "auth": "auth",
    "user": "user",
    "secret": "secret",
    "poll_interval": "poll",
    "options": "options",
}


@dataclass(frozen=True)
class Tested:
    """What `tracker test` said: each check that passed, and the first that failed ("" : none)."""

    name: str
    lines: tuple[str, ...]
    failure: str = ""


class TrackerForm(ModalScreen[TrackerInfo | None]):
    """Add an account, or change one (`existing`): the engine checks every value and its error
    shows under the field it names. The secret is typed hidden; changing an account keeps the
    old one when the field is left empty, and a refusal of the old credentials is cleared."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="tracker_form.cancel"),
        Binding("ctrl+s", "save", "Save", id="tracker_form.save"),
    ]

    def __init__(self, driver: Driver, existing: TrackerInfo | None = None) -> None:
        super().__init__()
        self.driver = driver
        self.existing = existing
        self.busy = False

    def compose(self) -> ComposeResult:
        old = self.existing
        kind = old.kind if old else "jira"
        title = f"Change tracker {old.name}" if old else "Add a Jira or Redmine"
        with Vertical(id="tracker-form", classes="dialog"):
            yield Static(literal(title), classes="dialog-title")
            with VerticalScroll(id="tracker-fields"):
                yield from field_row(
                    "Name (lower-case letters, digits, - and _)",
                    Input(old.name if old else "", id="name", compact=True, disabled=old is not None),
                    "name",
                )
                yield from field_row(
                    "Kind",
                    AsciiSelect(
                        [("Jira", "jira"), ("Redmine", "redmine")],
                        value=kind,
                        allow_blank=False,
                        id="kind",
                        compact=True,
                        disabled=old is not None,
                    ),
                    "kind",
                )
                yield from field_row(
                    "Address",
                    Input(old.url if old else "", placeholder="https://", id="url", compact=True),
                    "url",
                )
                with Vertical(id="api-row", classes="w-page"):
                    yield from field_row(
                        "Jira REST API",
                        AsciiSelect(
                            API_VERSIONS,
                            value=str(old.api_version) if old and old.api_version else "3",
                            allow_blank=False,
                            id="api_version",
                            compact=True,
                        ),
                        "api_version",
                    )
                yield from field_row(
                    "Authentication",
                    AsciiSelect(
                        _auths(kind),
                        value=old.auth if old else AUTHS[kind][0],
                        allow_blank=False,
                        id="auth",
                        compact=True,
                    ),
                    "auth",
                )
                yield from field_row(
                    "Synchronization user's login there",
                    Input(old.user if old else "", id="user", compact=True),
                    "user",
                    "Its own changes are recognised as echoes and never sent back.",
                )
                yield from field_row(
                    "Secret (password, API token or key)",
                    Input(id="secret", password=True, compact=True),
                    "secret",
                    "Leave empty to keep the one stored."
                    if old
                    else "Stored in the home; never shown again.",
                )
                yield from field_row(
                    "Poll interval (seconds)",
                    Input(f"{old.poll_interval:g}" if old else "1", id="poll", compact=True),
                    "poll",
                )
                yield from field_row(
                    "Options (NAME=VALUE, space separated)",
                    Input(_options_text(old.options) if old else "", id="options", compact=True),
                    "options",
                    "e.g. sync_marker_field_id=7 write_marker_field_id=8 (Redmine)",
                )
            yield Static("", id="err-form", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", id="form-save", variant="primary", compact=True)
                yield Button("Cancel", id="form-cancel", compact=True)

    def on_mount(self) -> None:
        self._show_jira_fields()
        self.query_one("#url" if self.existing else "#name", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "kind":
            auth = self.query_one("#auth", Select)
            kept = auth.value if auth.value in AUTHS[self.kind()] else AUTHS[self.kind()][0]
            auth.set_options(_auths(self.kind()))
            auth.value = kept  # the stored one when the form opens, else the kind's first
            self._show_jira_fields()

    def _show_jira_fields(self) -> None:
        self.query_one("#api-row").display = self.kind() == "jira"

    def kind(self) -> str:
        return str(self.query_one("#kind", Select).value)

    def text(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def error(self, field: str, text: str) -> None:
        for shown in self.query(".w-error.-shown"):
            shown.remove_class("-shown")
        target = FORM_FIELDS.get(field)
        if target:
            error = self.query_one(f"#err-{target}", Static)
            error.update(literal(text))
            error.add_class("-shown")
            self.query_one(f"#{target}").focus()
            self.query_one("#err-form", Static).update("")
        else:
            self.query_one("#err-form", Static).update(literal(text))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "form-save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        if self.busy:
            return
        try:
            poll = float(self.text("poll")) if self.text("poll") else None
        except ValueError:
            self.error("poll_interval", "expected seconds, e.g. 1 or 0.5")
            return
        trackers = self.driver.installation.trackers
        kind, secret = self.kind(), self.query_one("#secret", Input).value
        api_version = int(str(self.query_one("#api_version", Select).value)) if kind == "jira" else 0
        values: dict[str, Any] = {
            "url": self.text("url"),
            "auth": str(self.query_one("#auth", Select).value),
            "user": self.text("user"),
            "api_version": api_version,
            "poll_interval": poll,
        }
        existing, name, options_text = self.existing, self.text("name"), self.text("options")

        def work() -> TrackerInfo | FieldError | BackboneError:
            try:
                options = parse_options(options_text.split()) if options_text else None
                if existing is None:
                    return trackers.add(name, kind, secret=secret, options=options, **values)
                return trackers.update(existing.name, secret=secret or None, options=options, **values)
            except BackboneError as exc:  # FieldError too: shown under its field
                return exc

        self.busy = True
        self.driver.submit(f"Save tracker {name or (existing.name if existing else '')}", work, self._saved)

    def _saved(self, result: TrackerInfo | BackboneError) -> None:
        self.busy = False
        if isinstance(result, FieldError):
            self.error(result.field, result.text)
        elif isinstance(result, BackboneError):
            self.error("", str(result))
        else:
            self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TrackersScreen(Screen[None]):
    """Every tracker with the synchronizations on it; `a` add, `enter`/`u` change, `t` test,
    `d` remove (asked first; refused while used), `r` read again."""

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="trackers.back", tooltip="Back to the overview"),
        Binding("a", "add", "Add", id="trackers.add", tooltip="Add a Jira or Redmine"),
        Binding("u", "change", "Change", id="trackers.change", tooltip="New credentials, address, poll"),
        Binding("t", "test", "Test", id="trackers.test", tooltip="Reach it, log in, check permissions"),
        Binding("d,delete", "remove", "Remove", id="trackers.remove", tooltip="Remove an unused account"),
        Binding("r", "reload", "Refresh", id="trackers.refresh", tooltip="Read the accounts again"),
    ]

    def __init__(self, driver: Driver) -> None:
        super().__init__()
        self.driver = driver
        self.infos: list[TrackerInfo] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("Trackers"), classes="titlebar")
        yield DataTable(id="trackers", cursor_type="row", zebra_stripes=True)
        yield Static("", id="tracker-result")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#trackers", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        table.focus()
        self.action_reload()

    def action_reload(self) -> None:
        self.driver.submit("Read the trackers", self.driver.installation.trackers.accounts, self._loaded)

    def _loaded(self, infos: list[TrackerInfo]) -> None:
        if not self.is_attached:
            return
        self.infos = infos
        table = self.query_one("#trackers", DataTable)
        chosen = self.current()
        table.clear()
        for info in infos:
            state = (
                Text(f"credentials refused: {info.problem}", style="bold")
                if info.problem
                else Text("ok" if info.name != EMBEDDED else "always there")
            )
            table.add_row(
                literal(info.name),
                literal(info.kind),
                literal(info.url or "-"),
                Text(str(info.api_version or "-")),
                literal(info.auth or "-"),
                literal(info.user or "-"),
                literal(", ".join(info.used_by) or "-"),
                state,
                key=info.name,
            )
        names = [info.name for info in infos]
        if chosen is not None and chosen.name in names:
            table.move_cursor(row=names.index(chosen.name))

    def current(self) -> TrackerInfo | None:
        table = self.query_one("#trackers", DataTable)
        if not self.infos or table.cursor_row >= len(self.infos):
            return None
        return self.infos[table.cursor_row]

    def say(self, text: Text) -> None:
        self.query_one("#tracker-result", Static).update(text)

    def _account(self) -> TrackerInfo | None:
        info = self.current()
        if info is None or info.name == EMBEDDED:
            self.say(Text("The embedded tracker needs no account: choose a Jira or Redmine row."))
            self.app.bell()
            return None
        return info

    def action_add(self) -> None:
        self.app.push_screen(TrackerForm(self.driver), self._saved)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_change()

    def action_change(self) -> None:
        info = self._account()
        if info is not None:
            self.app.push_screen(TrackerForm(self.driver, info), self._saved)

    def _saved(self, info: TrackerInfo | None) -> None:
        if info is None:
            return
        self.say(
            literal(f"Tracker {info.name} saved ({info.kind} at {info.url}, as {info.user}); t tests it.")
        )
        self.action_reload()
        self.driver.request_reload()  # the overview shows a cleared refusal at once

    def action_test(self) -> None:
        info = self.current()
        if info is None:
            return
        trackers, name = self.driver.installation.trackers, info.name
        project = self._project_of(info)
        self.say(literal(f"Testing {name}{f' with project {project}' if project else ''}..."))

        def work() -> Tested:
            try:
                return Tested(name, tuple(trackers.test(name, project)))
            except BackboneError as exc:
                return Tested(name, (), str(exc))
            except TrackerOffline as exc:
                return Tested(name, (), f"tracker {name}: not reachable: {exc}")

        self.driver.submit(f"Test tracker {name}", work, self._tested)

    def _project_of(self, info: TrackerInfo) -> str | None:
        """A project a synchronization on this tracker uses (its permissions are checked there)."""
        for key in info.used_by:
            for side in self.driver.installation.queries.sides_of(key):
                if side.tracker == info.name:
                    return side.project
        return None

    def _tested(self, tested: Tested) -> None:
        if not self.is_attached:
            return
        text = Text("\n".join(tested.lines))
        if tested.failure:
            text.append(("\n" if tested.lines else "") + "FAILED: ", style="bold")
            text.append_text(literal(tested.failure))
        else:
            text.append("\nAll checks passed.", style="bold")
        self.say(text)
        self.action_reload()

    def action_remove(self) -> None:
        info = self._account()
        if info is None:
            return
        if info.used_by:
            self.say(
                literal(f"Tracker {info.name} is used by {', '.join(info.used_by)}: delete those first.")
            )
            self.app.bell()
            return
        name, trackers = info.name, self.driver.installation.trackers

        def answered(yes: bool | None) -> None:
            if yes:
                self.driver.submit(
                    f"Remove tracker {name}", lambda: trackers.remove(name), self._removed(name)
                )

        question = Text.assemble("Remove the account ", literal(name), " and its stored secret?")
        self.app.push_screen(Confirm(f"Remove tracker {name}", question, "Remove"), answered)

    def _removed(self, name: str) -> Any:
        def done(_: object) -> None:
            self.say(literal(f"Tracker {name} removed."))
            self.action_reload()

        return done

    def action_back(self) -> None:
        self.dismiss(None)


def _auths(kind: str) -> list[tuple[str, str]]:
    labels = {
        "basic": "basic: login and password (Server/DC)",
        "token": "token: e-mail address and API token (Cloud)",
        "pat": "pat: a personal access token (Server/DC; the login names the user)",
        "apikey": "apikey: the user's API key",
    }
    return [(labels[auth], auth) for auth in AUTHS[kind]]


def _options_text(options: dict[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in sorted(options.items()) if name != "poll_interval")
