"""The new-synchronization wizard (SPEC section 2; the source documents' creation walk-through):
pages with Back and Next, each checked before the next, errors next to the field they name.

Primary: project and synchronization user, protocol, the mail accounts (with "Test connection")
or the exchange folder, encryption and review mode, name and description, the handshake file.
Secondary: the partner's handshake file, its contents to confirm (the key fingerprint read out by
the partner), project and user, the same channel pages, then create (and accept at once, or not).
"""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Select, Static, TextArea

from engine.errors import BackboneError, FieldError, TrackerOffline
from engine.service.forms import (
    HandshakeSummary,
    ImapSettings,
    MailSettings,
    SmtpSettings,
    check_receive,
    check_send,
    handshake_summary,
    receive_problems,
    send_problems,
)
from engine.service.trackers import EMBEDDED
from engine.vocab import Protocol

from .driver import Driver
from .widgets import AsciiCheckbox, AsciiRadioButton, AsciiSelect, literal
from .wizard_forms import (
    FIELD_PAGES,
    TITLES,
    Created,
    PathSuggester,
    WizardDraft,
    field_row,
    restore_values,
    server_fields,
    snapshot_values,
)

USER_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class NewSyncWizard(ModalScreen[Created | None]):
    """Creates a synchronization, primary or secondary; dismisses with what it created."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="wizard.cancel"),
        # priority: the scrolling page area would take pgup/pgdn for itself
        Binding("ctrl+n,pagedown", "next", "Next", id="wizard.next", priority=True),
        Binding("pageup", "back", "Back", id="wizard.back", priority=True),
    ]

    def __init__(self, driver: Driver, draft: WizardDraft | None = None) -> None:
        super().__init__()
        self.driver = driver
        self.draft = draft or WizardDraft()
        self.page = "role"
        self.summary: HandshakeSummary | None = None
        self.created: Created | None = None
        self.busy = False
        installation = driver.installation
        self.projects = installation.queries.projects()
        self.trackers = installation.trackers.accounts()  # the embedded one first
        self._tracker_shown = EMBEDDED

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        projects = [(f"{key} - {name}", key) for key, name in self.projects]
        with Vertical(id="wizard-box", classes="dialog"):
            yield Static("", id="wizard-title", classes="dialog-title")
            with VerticalScroll(id="wizard-pages"):
                with Vertical(id="page-role", classes="w-page"), RadioSet(id="role", compact=True):
                    yield AsciiRadioButton(
                        "Start a new synchronization: this side is the primary (it defines the mappings)",
                        id="role-primary",
                        value=True,
                    )
                    yield AsciiRadioButton(
                        "Answer a partner's request from its handshake file: this side is the secondary",
                        id="role-secondary",
                    )
                with Vertical(id="page-handshake", classes="w-page"):
                    yield from field_row(
                        "Handshake file (tab completes the path)",
                        Input(id="handshake", suggester=PathSuggester(), compact=True),
                        "handshake",
                        "The file the partner's admin gave you, e.g. ~/acme-handshake.json",
                    )
                with Vertical(id="page-summary", classes="w-page"):
                    yield Static("", id="summary-text")
                    yield AsciiCheckbox(
                        "The fingerprint is the one the partner read out to me",
                        id="fingerprint-ok",
                        compact=True,
                    )
                    yield Static("", id="err-fingerprint-ok", classes="dialog-error w-error")
                with Vertical(id="page-project", classes="w-page"):
                    if len(self.trackers) > 1:  # a Jira or Redmine was added (tracker add)
                        yield from field_row(
                            "Tracker the local project lives in",
                            AsciiSelect(
                                [
                                    (f"{t.name} - {t.kind}" + (f" at {t.url}" if t.url else ""), t.name)
                                    for t in self.trackers
                                ],
                                value=EMBEDDED,
                                allow_blank=False,
                                id="tracker",
                                compact=True,
                            ),
                            "tracker",
                            "Its projects are read from it when chosen.",
                        )
                    yield from field_row(
                        "Local project",
                        AsciiSelect(projects, id="project", compact=True, prompt="Choose a project"),
                        "project",
                    )
                    yield from field_row(
                        "Synchronization user",
                        Input("backbone", id="user", compact=True),
                        "user",
                        "Cannot be changed later. Its changes are never sent back to the partner.",
                    )
                with Vertical(id="page-protocol", classes="w-page"):
                    with RadioSet(id="protocol", compact=True):
                        yield AsciiRadioButton(
                            "E-mail (recommended): SMTP out, IMAP in", id="protocol-email", value=True
                        )
                        yield AsciiRadioButton(
                            "File exchange: a folder both sides can reach", id="protocol-file"
                        )
                    yield Static(Text("The protocol cannot be switched later."), classes="w-hint")
                    yield Static("", id="err-protocol", classes="dialog-error w-error")
                with Vertical(id="page-receive", classes="w-page"):
                    yield from server_fields("receive", ImapSettings())
                    yield from field_row(
                        "Folder", Input("INBOX", id="receive-folder", compact=True), "receive-folder"
                    )
                    with Horizontal(classes="w-buttons"):
                        yield Button("Test connection", id="test-receive", compact=True)
                    yield Static("", id="result-receive", classes="w-result")
                with Vertical(id="page-send", classes="w-page"):
                    with Horizontal(classes="w-buttons"):
                        yield Button("Copy credentials from Receive", id="copy-credentials", compact=True)
                    yield from server_fields("send", SmtpSettings())
                    yield from field_row(
                        "This side's address (From)",
                        Input(id="send-from_addr", compact=True),
                        "send-from_addr",
                    )
                    yield from field_row(
                        "The partner's address (To)",
                        Input(id="send-to_addr", compact=True),
                        "send-to_addr",
                        "The primary learns it from the partner's first message; a secondary has it "
                        "from the handshake file.",
                    )
                    with Horizontal(classes="w-buttons"):
                        yield Button("Test connection", id="test-send", compact=True)
                    yield Static("", id="result-send", classes="w-result")
                with Vertical(id="page-exchange", classes="w-page"):
                    yield from field_row(
                        "Exchange folder (blank: a folder in this home)",
                        Input(id="exchange", suggester=PathSuggester(), compact=True),
                        "exchange",
                        "Created with SEND and RECEIVE. To share it with the partner, SEND and RECEIVE "
                        "may be replaced by symbolic links to the partner's RECEIVE and SEND.",
                    )
                with Vertical(id="page-security", classes="w-page"):
                    yield AsciiCheckbox(
                        "Encrypt and sign every message (OpenPGP)", value=True, id="encryption", compact=True
                    )
                    yield Static(
                        Text("Recommended; the partner's key is pinned at pairing."), classes="w-hint"
                    )
                    yield AsciiCheckbox(
                        "Review mode: configuration changes are drafts the partner accepts or declines",
                        id="review",
                        compact=True,
                    )
                    yield Static(Text("Review mode cannot be changed later."), classes="w-hint")
                with Vertical(id="page-name", classes="w-page"):
                    yield from field_row("Name", Input(id="name", compact=True), "name")
                    yield Label("Description", classes="w-label")
                    yield TextArea(id="description", soft_wrap=True, show_line_numbers=False, compact=True)
                    yield from field_row(
                        "The partner's project key (optional)",
                        Input(id="partner_project", compact=True),
                        "partner_project",
                        "Only names the synchronization, e.g. ACME-GLOBEX-1.",
                    )
                with Vertical(id="page-handshake_out", classes="w-page"):
                    yield from field_row(
                        "Write the handshake file to",
                        Input(id="handshake_out", suggester=PathSuggester(), compact=True),
                        "handshake_out",
                        "A new file in an existing folder. It holds the pairing secret: deliver it securely.",
                    )
                with Vertical(id="page-accept", classes="w-page"):
                    yield AsciiCheckbox(
                        "Accept the request now (else it waits as INCOMING REQUEST)",
                        value=True,
                        id="accept-now",
                        compact=True,
                    )
                with Vertical(id="page-done", classes="w-page"):
                    yield Static("", id="done-text")
            yield Static("", id="wizard-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Back (pgup)", id="wizard-back", compact=True)
                yield Button("Next (pgdn)", id="wizard-next", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="wizard-cancel", compact=True)

    def on_mount(self) -> None:
        self.restore(self.draft.values)
        self.show(self.draft.page if self.draft.page in self.pages() else "role")

    # -- values ---------------------------------------------------------------------------

    def restore(self, values: dict[str, Any]) -> None:
        restore_values(self, values)

    def snapshot(self) -> dict[str, Any]:
        return snapshot_values(self)

    def text(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def checked(self, widget_id: str) -> bool:
        return self.query_one(f"#{widget_id}", Checkbox).value

    @property
    def primary(self) -> bool:
        return self.query_one("#role-primary", RadioButton).value

    @property
    def protocol(self) -> str:
        if not self.primary:
            return self.summary.protocol if self.summary else Protocol.FILE
        return Protocol.EMAIL if self.query_one("#protocol-email", RadioButton).value else Protocol.FILE

    def project(self) -> str | None:
        select = self.query_one("#project", Select)
        return None if select.is_blank() else str(select.value)

    def tracker(self) -> str:
        """The tracker the local project lives in (the embedded one unless an account is chosen)."""
        found = self.query("#tracker").results(Select)
        select = next(iter(found), None)
        return EMBEDDED if select is None or select.is_blank() else str(select.value)

    @on(Select.Changed, "#tracker")
    def tracker_chosen(self, event: Select.Changed) -> None:
        """Read the chosen tracker's projects (over the network for Jira or Redmine) in a worker;
        its account's user becomes the synchronization user unless one was typed."""
        name = self.tracker()
        if name == self._tracker_shown:
            return
        installation = self.driver.installation
        self.clear_errors()

        def work() -> tuple[str, list[tuple[str, str]]]:
            try:
                return name, installation.queries.projects(tracker=name)
            except (BackboneError, TrackerOffline) as exc:
                raise FieldError("tracker", f"{name}: its projects could not be read: {exc}") from None

        self._run(f"Read the projects of {name}", work, self._projects_read)

    def _projects_read(self, result: tuple[str, list[tuple[str, str]]]) -> None:
        name, projects = result
        self._tracker_shown, self.projects = name, projects
        self.query_one("#project", Select).set_options([(f"{key} - {title}", key) for key, title in projects])
        account = next((t for t in self.trackers if t.name == name), None)
        user = self.query_one("#user", Input)
        if (
            account is not None
            and account.user
            and user.value in ("backbone", *(t.user for t in self.trackers))
        ):
            user.value = account.user  # its own writes are then recognised as echoes

    def server(self, prefix: str) -> dict[str, Any]:
        port = self.text(f"{prefix}-port")
        tls = self.query_one(f"#{prefix}-tls", Select)
        return {
            "host": self.text(f"{prefix}-host"),
            "port": int(port) if port.isdigit() else -1,
            "tls": "" if tls.is_blank() else str(tls.value),
            "username": self.text(f"{prefix}-username"),
            "password": self.query_one(f"#{prefix}-password", Input).value,
        }

    def receive_settings(self) -> ImapSettings:
        return ImapSettings(**self.server("receive"), folder=self.text("receive-folder"))

    def send_settings(self) -> SmtpSettings:
        return SmtpSettings(
            **self.server("send"), from_addr=self.text("send-from_addr"), to_addr=self.text("send-to_addr")
        )

    # -- pages ----------------------------------------------------------------------------

    def pages(self) -> list[str]:
        channel = ["receive", "send"] if self.protocol == Protocol.EMAIL else ["exchange"]
        if self.primary:
            return ["role", "project", "protocol", *channel, "security", "name", "handshake_out", "done"]
        return ["role", "handshake", "summary", "project", *channel, "accept", "done"]

    def show(self, page: str) -> None:
        self.page = page
        for container in self.query(".w-page"):
            container.display = container.id == f"page-{page}"
        pages = self.pages()
        number = pages.index(page) + 1 if page in pages else 0
        role = "primary" if self.primary else "secondary"
        heading = f"New synchronization ({role}) - step {number} of {len(pages)}: {TITLES[page]}"
        if page == "role":
            heading = f"New synchronization - {TITLES[page]}"
        self.query_one("#wizard-title", Static).update(Text(heading))
        self.query_one("#wizard-back", Button).display = page not in ("role", "done")
        self.query_one("#wizard-cancel", Button).display = page != "done"
        creates = page in ("handshake_out", "accept")
        self.query_one("#wizard-next", Button).label = (
            "Close" if page == "done" else ("Create (pgdn)" if creates else "Next (pgdn)")
        )
        self.query_one("#wizard-error", Static).update("")
        if page == "send" and self.summary is not None and not self.text("send-to_addr"):
            self.query_one("#send-to_addr", Input).value = self.summary.partner_address
        if page == "handshake_out" and not self.text("handshake_out"):
            self.query_one(
                "#handshake_out", Input
            ).value = f"~/{(self.project() or 'backbone').lower()}-handshake.json"
        if page == "name" and not self.text("name"):
            self.query_one("#name", Input).value = f"{self.project() or 'New'} synchronization"
        first = self.query_one(f"#page-{page}").query("Input, Select, RadioSet, Checkbox, TextArea")
        if first:
            first.first().focus()
        else:
            self.query_one("#wizard-next", Button).focus()

    def clear_errors(self) -> None:
        for error in self.query(".w-error"):
            error.update("")  # type: ignore[attr-defined]
            error.remove_class("-shown")
        self.query_one("#wizard-error", Static).update("")

    def error(self, widget_id: str, text: str) -> None:
        """Show `text` under the input `widget_id` (or at the bottom) and focus it."""
        found = self.query(f"#err-{widget_id}")
        if found:
            found.first().update(literal(text))  # type: ignore[attr-defined]
            found.first().add_class("-shown")
            self.query_one(f"#{widget_id}").focus()
        else:
            self.query_one("#wizard-error", Static).update(literal(text))
        self.app.bell()

    def problem(self) -> tuple[str, str] | None:
        """What keeps the current page from going on: (input id, text)."""
        page = self.page
        if page == "handshake" and not self.text("handshake"):
            return "handshake", "choose the handshake file the partner gave you"
        if (
            page == "summary"
            and self.summary
            and self.summary.fingerprint
            and not self.checked("fingerprint-ok")
        ):
            return "fingerprint-ok", "compare the fingerprint with the partner first (by phone, in person)"
        if page == "project":
            if self.project() is None:
                return "project", "choose the local project" + (
                    "" if self.projects else " (none yet: create one)"
                )
            user = self.text("user")
            if not user or len(user) > 64 or not set(user) <= USER_CHARS:
                return "user", "expected a user name (letters, digits, - _ .)"
        if page in ("receive", "send"):
            if not self.text(f"{page}-port").isdigit():
                return f"{page}-port", "expected a port number (e.g. 993 for IMAP over TLS, 587 for SMTP)"
            checks = receive_problems(self.receive_settings()) if page == "receive" else []
            if page == "send":
                checks = send_problems(self.send_settings())
            if checks:
                name, text = checks[0]
                return f"{page}-{name}", text
        if page == "name":
            name = self.text("name")
            if not name or len(name) > 120:
                return "name", "expected 1-120 characters"
            partner = self.text("partner_project")
            if partner and not (partner.isalnum() and partner.isupper() and len(partner) <= 20):
                return "partner_project", "expected a project key like GLOBEX (or nothing)"
        if page == "handshake_out" and not self.text("handshake_out"):
            return "handshake_out", "where should the handshake file go?"
        return None

    # -- actions --------------------------------------------------------------------------

    def action_next(self) -> None:
        if self.busy:
            return
        if self.page == "done":
            self.dismiss(self.created)
            return
        self.clear_errors()
        problem = self.problem()
        if problem:
            self.error(*problem)
            return
        if self.page == "handshake":
            self.read_handshake()
        elif self.page in ("handshake_out", "accept"):
            self.create()
        else:
            pages = self.pages()
            self.show(pages[pages.index(self.page) + 1])

    def action_back(self) -> None:
        pages = self.pages()
        if self.busy or self.page not in pages or self.page in ("role", "done"):
            return
        self.show(pages[pages.index(self.page) - 1])

    def action_cancel(self) -> None:
        if self.page == "done":
            self.dismiss(self.created)
            return
        self.draft.values, self.draft.page = self.snapshot(), self.page
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button = event.button.id
        if button == "wizard-next":
            self.action_next()
        elif button == "wizard-back":
            self.action_back()
        elif button == "wizard-cancel":
            self.action_cancel()
        elif button == "copy-credentials":
            for name in ("username", "password"):
                self.query_one(f"#send-{name}", Input).value = self.query_one(f"#receive-{name}", Input).value
            if not self.text("send-host"):
                self.query_one("#send-host", Input).value = self.text("receive-host")
            if not self.text("send-from_addr") and "@" in self.text("receive-username"):
                self.query_one("#send-from_addr", Input).value = self.text("receive-username")
            self.app.notify("Copied the user name and password from Receive E-Mails")
        elif button in ("test-receive", "test-send"):
            self.test_connection(button.removeprefix("test-"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.show(self.page)  # the step count depends on the role and the protocol

    # -- background work ------------------------------------------------------------------

    def _run(self, title: str, work: Any, done: Any) -> None:
        """Run `work` in a worker; a BackboneError goes next to its field instead of a toast."""
        self.busy = True

        def guarded() -> tuple[bool, Any]:
            try:
                return True, work()
            except FieldError as exc:
                return False, exc
            except BackboneError as exc:
                return False, exc

        def finished(result: tuple[bool, Any]) -> None:
            self.busy = False
            ok, value = result
            if ok:
                done(value)
            else:
                self.failed(value)

        self.driver.submit(title, guarded, finished)

    def failed(self, exc: BackboneError) -> None:
        if isinstance(exc, FieldError) and exc.field in FIELD_PAGES:
            page, widget_id = FIELD_PAGES[exc.field]
            if page in self.pages():
                self.show(page)
            self.error(widget_id, exc.text)
        else:
            self.error("", str(exc))

    def test_connection(self, which: str) -> None:
        result = self.query_one(f"#result-{which}", Static)
        problem = self.problem() if self.page == which else None
        if problem:
            self.error(*problem)
            return
        result.update(Text("Testing..."))
        receive, send = self.receive_settings(), self.send_settings()

        def work() -> str:
            return check_receive(receive) if which == "receive" else check_send(send)

        def shown(text: str) -> None:
            result.update(Text.assemble(("OK: ", "bold"), literal(text)))

        def guarded() -> tuple[bool, str]:
            try:
                return True, work()
            except BackboneError as exc:
                return False, str(exc)

        def done(outcome: tuple[bool, str]) -> None:
            ok, text = outcome
            if ok:
                shown(text)
            else:
                result.update(Text.assemble(("FAILED: ", "bold"), literal(text)))

        self.driver.submit(f"Test the {which} connection", guarded, done)

    def read_handshake(self) -> None:
        installation = self.driver.installation
        path = os.path.expanduser(self.text("handshake"))

        def read() -> HandshakeSummary:
            try:
                return handshake_summary(installation, path)
            except FieldError:
                raise
            except BackboneError as exc:
                raise FieldError("handshake", str(exc)) from None

        def shown(summary: HandshakeSummary) -> None:
            self.summary = summary
            rows = Text()
            for label, value in summary.lines():
                rows.append(f"{label + ':':<18}", style="bold")
                rows.append_text(literal(value))
                rows.append("\n")
            if summary.fingerprint:
                rows.append("\nAsk the partner to read out the key fingerprint and compare it.", style="bold")
            self.query_one("#summary-text", Static).update(rows)
            self.query_one("#fingerprint-ok", Checkbox).display = bool(summary.fingerprint)
            self.show("summary")

        self._run("Read the handshake file", read, shown)

    def mail(self) -> MailSettings | None:
        if self.protocol != Protocol.EMAIL:
            return None
        return MailSettings(self.receive_settings(), self.send_settings())

    def create(self) -> None:
        installation = self.driver.installation
        project, user, mail = self.project() or "", self.text("user"), self.mail()
        tracker = self.tracker()
        exchange = (
            os.path.expanduser(self.text("exchange")) or None if self.protocol == Protocol.FILE else None
        )
        if self.primary:
            options: dict[str, Any] = {
                "project": project,
                "tracker": tracker,
                "user": user,
                "protocol": self.protocol,
                "name": self.text("name"),
                "description": self.query_one("#description", TextArea).text,
                "partner_project": self.text("partner_project") or None,
                "handshake_out": os.path.expanduser(self.text("handshake_out")),
                "exchange": exchange,
                "encryption": self.checked("encryption"),
                "review": self.checked("review"),
                "mail": mail,
                "address": mail.send.from_addr if mail else "",
            }

            def work() -> Created:
                info, path = installation.create_primary(**options)
                return Created(info, path, installation.own_key()[0] if options["encryption"] else "")

        else:
            summary = self.summary
            assert summary is not None
            accept = self.checked("accept-now")

            def work() -> Created:
                info = installation.create_secondary(
                    handshake=summary.path,
                    project=project,
                    tracker=tracker,
                    user=user,
                    exchange=exchange,
                    expected_fingerprint=summary.fingerprint or None,
                    mail=mail,
                    address=mail.send.from_addr if mail else "",
                )
                if accept:
                    info = installation.accept(info.key)
                return Created(info)

        self._run("Create the synchronization", work, self.finished)

    def finished(self, created: Created) -> None:
        self.created = created
        self.draft.values, self.draft.page = {}, "role"
        info = created.info
        text = Text.assemble(
            ("Created ", "bold"), literal(f"{info.name} ({info.key})"), f": {info.status}\n\n"
        )
        if created.handshake is not None:
            text.append("The handshake file is at\n  ")
            text.append_text(literal(str(created.handshake)))
            text.append("\n\nDeliver it securely to the partner's admin (not through the channel itself).")
            if created.fingerprint:
                spaced = " ".join(
                    created.fingerprint[i : i + 4] for i in range(0, len(created.fingerprint), 4)
                )
                text.append("\nRead this key fingerprint out to the partner, who compares it:\n  ")
                text.append(spaced, style="bold")
            text.append("\n\nOnce the partner accepts, the status becomes HANDSHAKE, then STOPPED.")
        else:
            text.append(f"\n{info.status_detail}")
        self.query_one("#done-text", Static).update(text)
        self.show("done")
