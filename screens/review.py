"""Publishing a draft and reviewing what the partner sent (SPEC sections 3-4).

`PublishDialog` requires the message to the partner and shows the diff it sends and the dry-run
summary. `ReviewScreen` shows the partner's message first, then each change with a text marker
(`+` added, `~` changed, `-` removed) and its colour, a count per tab, the detail of the change under
the cursor, and Accept / Decline."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label, OptionList, Static, TabbedContent, TabPane, TextArea
from textual.widgets.option_list import Option

from engine.service.views import SyncInfo
from engine.vocab import Role

from .mapping import change_line, dry_run_text
from .widgets import AsciiCheckbox, literal

MESSAGE_MAX = 4000
TAB_OF = {
    "issue type": "Issue types",
    "field": "Fields",
    "status": "Statuses",
    "subtasks": "Sub-tasks & links",
}
TAB_OF["links"] = "Sub-tasks & links"
TABS = ("Issue types", "Fields", "Statuses", "Comments & attachments", "Sub-tasks & links")


def tab_of(change: Any) -> str:
    """The configure tab a change belongs to (what is not a mapping is a setting of comments
    and attachments, or of sub-tasks and links)."""
    if change.id in ("subtasks", "links"):
        return "Sub-tasks & links"
    return TAB_OF.get(change.what, "Comments & attachments")


@dataclass(frozen=True)
class PublishChoice:
    message: str
    start: bool


class PublishDialog(ModalScreen[PublishChoice | None]):
    """What publishing sends; the message is required on the primary (and for a proposal)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="publish.cancel"),
        Binding("ctrl+s", "publish", "Publish", id="publish.ok"),
        Binding(
            "ctrl+t", "toggle_start", "Start too", id="publish.start", tooltip="Start once in force, or not"
        ),
    ]

    def __init__(
        self, info: SyncInfo, role: str, changes: list[Any], dry_run: Any, message: str = ""
    ) -> None:
        super().__init__()
        self.info, self.role, self.changes, self.dry_run, self.message = info, role, changes, dry_run, message

    def compose(self) -> ComposeResult:
        primary = self.role != Role.SECONDARY
        what = "Publish version" if primary else "Bind and put in force"
        with Vertical(classes="dialog", id="publish-box"):
            yield Static(literal(f"{what}: {self.info.name} ({self.info.key})"), classes="dialog-title")
            with VerticalScroll(id="publish-diff"):
                diff = Text()
                for change in self.changes:
                    diff.append_text(change_line(change))
                    diff.append("\n")
                if not self.changes:
                    diff.append(
                        "No change of the shared terms: only this side's names change (nothing is sent).\n"
                    )
                diff.append("\n")
                diff.append_text(dry_run_text(self.dry_run))
                yield Static(diff, id="publish-changes")
            yield Label(
                "Message to the partner (required)" if primary else "Message to the partner (for a proposal)"
            )
            yield TextArea(
                self.message, id="publish-message", soft_wrap=True, show_line_numbers=False, compact=True
            )
            yield AsciiCheckbox(
                "Start synchronizing once the version is in force (ctrl+t)", id="publish-start", compact=True
            )
            yield Static("", id="publish-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Publish (ctrl+s)", id="publish-ok", variant="primary", compact=True)
                yield Button("Cancel", id="publish-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#publish-message", TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "publish-ok":
            self.action_publish()
        else:
            self.action_cancel()

    def action_toggle_start(self) -> None:
        start = self.query_one("#publish-start", Checkbox)
        start.value = not start.value

    def action_publish(self) -> None:
        message = self.query_one("#publish-message", TextArea).text.strip()
        problem = ""
        if self.role != Role.SECONDARY and not message:
            problem = "Say what changed, for the partner: the message is required"
        elif len(message) > MESSAGE_MAX:
            problem = f"At most {MESSAGE_MAX} characters (now {len(message)})"
        if problem:
            self.query_one("#publish-error", Static).update(Text(problem))
            self.app.bell()
            return
        self.dismiss(PublishChoice(message, self.query_one("#publish-start", Checkbox).value))

    def action_cancel(self) -> None:
        self.message = self.query_one("#publish-message", TextArea).text
        self.dismiss(None)


class ReviewScreen(ModalScreen[str | None]):
    """The partner's version (or proposal): message, changes, detail; returns accept or decline."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="review.close"),
        Binding("y", "answer('accept')", "Accept", id="review.accept", show=True),
        Binding("N", "answer('decline')", "Decline", id="review.decline", show=True),
    ]

    def __init__(self, info: SyncInfo, incoming: Any) -> None:
        super().__init__()
        self.info, self.incoming = info, incoming

    def compose(self) -> ComposeResult:
        incoming = self.incoming
        what = "proposal" if incoming.proposal else f"version {incoming.version}"
        counts = Counter(tab_of(c) for c in incoming.changes)
        tabs = "  ".join(f"{tab} ({n})" for tab, n in sorted(counts.items())) or "no changes"
        with Vertical(classes="dialog", id="review-box"):
            yield Static(
                literal(
                    f"The partner's {what} for {self.info.name} ({self.info.key}); "
                    f"version {incoming.in_force} in force here"
                ),
                classes="dialog-title",
            )
            yield Static(Text.assemble(("Message: ", "bold"), literal(incoming.message)), id="review-message")
            yield Static(Text(f"Changes by tab: {tabs}"), id="review-tabs", classes="dialog-subtitle")
            with TabbedContent(id="review-tabbed"):
                with TabPane(f"All ({len(incoming.changes)})", id="rv-all"):
                    yield self.changes_list("review-changes", lambda c: True)
                for n, tab in enumerate(TABS):
                    marked = f"* {tab} ({counts[tab]})" if counts[tab] else tab
                    with TabPane(marked, id=f"rv-{n}"):
                        yield self.changes_list(f"review-changes-{n}", lambda c, tab=tab: tab_of(c) == tab)
            yield Static("", id="review-detail")
            yield Static(Text("+ added  ~ changed  - removed"), classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                accept = "Accept (y)" if incoming.proposal else "Accept: bind it (y)"
                yield Button(accept, id="review-accept", variant="primary", compact=True)
                yield Button(
                    "Decline... (N)",
                    id="review-decline",
                    variant="error",
                    compact=True,
                    disabled=not self.info.review,
                )
                yield Button("Close", id="review-close", compact=True)

    def changes_list(self, list_id: str, wanted: Any) -> OptionList:
        return OptionList(
            *(Option(change_line(c), id=str(n)) for n, c in enumerate(self.incoming.changes) if wanted(c)),
            id=list_id,
            compact=True,
            classes="review-changes",
        )

    def on_mount(self) -> None:
        self.query_one("#review-changes", OptionList).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        lists = event.pane.query(OptionList)
        if lists:
            lists.first().focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        change = self.incoming.changes[int(event.option.id or 0)]
        detail = Text.assemble((f"{change.what} {change.id}", "bold"), f": {change.how}")
        if change.detail:
            detail.append(" - ")
            detail.append_text(literal(change.detail))
        self.query_one("#review-detail", Static).update(detail)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "review-close":
            self.dismiss(None)
        else:
            self.action_answer(str(event.button.id).removeprefix("review-"))

    def action_answer(self, answer: str) -> None:
        if answer == "decline" and not self.info.review:
            self.app.notify("Declining is for review mode: bind the new version instead", severity="warning")
            return
        self.dismiss(answer)

    def action_close(self) -> None:
        self.dismiss(None)


class MessageDialog(ModalScreen[str | None]):
    """Asks for a message to the partner (why a draft is declined)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="message.cancel"),
        Binding("ctrl+s", "ok", "Send", id="message.ok"),
    ]

    def __init__(self, title: str, label: str, text: str = "", ok: str = "Send") -> None:
        super().__init__()
        self.title_text, self.label, self.text = title, label, text  # `text`: kept on cancel
        self.ok = ok

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="message-box"):
            yield Static(Text(self.title_text), classes="dialog-title")
            yield Label(self.label)
            yield TextArea(
                self.text, id="message-text", soft_wrap=True, show_line_numbers=False, compact=True
            )
            yield Static("", id="message-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.ok} (ctrl+s)", id="message-ok", variant="primary", compact=True)
                yield Button("Cancel", id="message-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#message-text", TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "message-ok":
            self.action_ok()
        else:
            self.action_cancel()

    def action_ok(self) -> None:
        text = self.query_one("#message-text", TextArea).text.strip()
        if not text or len(text) > MESSAGE_MAX:
            self.query_one("#message-error", Static).update(Text(f"Required: 1-{MESSAGE_MAX} characters"))
            self.app.bell()
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.text = self.query_one("#message-text", TextArea).text
        self.dismiss(None)
