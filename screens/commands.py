"""Every command of the overview, declared once: footer, help screen, palette and keymap use it."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Command:
    """One user command: its binding id (for keymaps), default key, action and texts."""

    id: str
    key: str
    action: str
    label: str  # footer
    title: str  # command palette ("group: what")
    help: str  # help screen, palette help line, footer tooltip
    group: str
    show: bool = False
    key_display: str | None = None
    palette: bool = True

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action,
            self.label,
            show=self.show,
            key_display=self.key_display,
            tooltip=self.help,
            id=self.id,
        )


TABLE_COMMANDS: tuple[Command, ...] = (
    Command(
        "table.toggle",
        "space",
        "toggle_row",
        "Check",
        "sync: Check or uncheck the row",
        "Toggle the checkbox of the synchronization under the cursor",
        "Selection",
        show=True,
        key_display="space",
    ),
    Command(
        "table.menu",
        "enter,m",
        "open_menu",
        "Menu",
        "sync: Actions menu of the row",
        "Open the actions menu (...) of the synchronization under the cursor",
        "Actions",
        show=True,
        key_display="enter",
    ),
)

OVERVIEW_COMMANDS: tuple[Command, ...] = (
    Command(
        "overview.start",
        "s",
        "start",
        "Start",
        "sync: Start",
        "Start the checked synchronizations (all STOPPED), or the one under the cursor",
        "Actions",
        show=True,
    ),
    Command(
        "overview.stop",
        "x",
        "stop",
        "Stop",
        "sync: Stop",
        "Stop the checked synchronizations (all RUNNING), or the one under the cursor",
        "Actions",
        show=True,
    ),
    Command(
        "overview.edit",
        "e",
        "edit",
        "Edit",
        "sync: Edit name and description",
        "Edit the name and description of the synchronization under the cursor",
        "Actions",
    ),
    Command(
        "overview.configure",
        "c",
        "configure",
        "Configure",
        "sync: Configure the mappings...",
        "Edit this side's draft: issue types, fields, statuses, comments, attachments, sub-tasks, links",
        "Actions",
    ),
    Command(
        "overview.publish",
        "P",
        "publish",
        "Publish",
        "sync: Publish the draft...",
        "Send the draft to the partner (primary), or bind and put the partner's version in force (secondary)",
        "Actions",
    ),
    Command(
        "overview.review",
        "i",
        "review",
        "Review",
        "sync: Review the partner's draft...",
        "The partner's new version or proposal: its message and changes; accept (bind) or decline",
        "Actions",
    ),
    Command(
        "overview.troubleshoot",
        "t",
        "troubleshoot",
        "Troubleshoot",
        "sync: Troubleshoot",
        "Messages folder by folder with their reasons, for the synchronization under the cursor",
        "Actions",
    ),
    Command(
        "overview.troubleshoot_all",
        "T",
        "troubleshoot_all",
        "Troubleshoot all",
        "sync: Troubleshoot every synchronization",
        "Analyze every synchronization: problems first, and every message waiting in an error folder",
        "Actions",
    ),
    Command(
        "overview.trackers",
        "K",
        "trackers",
        "Trackers",
        "app: Trackers (Jira, Redmine accounts)",
        "The trackers synchronizations live in: add a Jira or Redmine, change its credentials, test, remove",
        "Actions",
    ),
    Command(
        "overview.history",
        "h",
        "history",
        "History",
        "sync: History of the synchronization",
        "What happened to each issue: messages in and out, conflicts, operator actions, field origins",
        "Actions",
    ),
    Command(
        "overview.support_zip",
        "z",
        "support_zip",
        "Support ZIP",
        "sync: Create support ZIP",
        "Write a support ZIP (configuration, statuses, message headers, logs; no secrets)",
        "Actions",
    ),
    Command(
        "overview.delete",
        "d,delete",
        "delete",
        "Delete",
        "sync: Delete",
        "Delete the synchronization under the cursor (stops it first; asks to confirm)",
        "Actions",
        key_display="d",
    ),
    Command(
        "overview.new",
        "n",
        "new_sync",
        "New",
        "sync: New synchronization...",
        "Create a synchronization: start one (primary) or answer a partner's handshake file (secondary)",
        "Actions",
        show=True,
    ),
    Command(
        "overview.accept",
        "y",
        "accept",
        "Accept",
        "sync: Accept the incoming request",
        "Accept the partner's request under the cursor (INCOMING REQUEST): pairing starts",
        "Actions",
    ),
    Command(
        "overview.decline",
        "N",
        "decline",
        "Decline",
        "sync: Decline the incoming request",
        "Decline the partner's request under the cursor (asks to confirm)",
        "Actions",
    ),
    Command(
        "overview.select_all",
        "a",
        "select_all",
        "Check all",
        "select: Check or uncheck all shown",
        "Check every shown synchronization, or uncheck them all when all are checked",
        "Selection",
    ),
    Command(
        "overview.select_status",
        "v",
        "pick_select_status",
        "Check by status",
        "select: Check all in a status...",
        "Open the status dropdown that checks every synchronization in the chosen status",
        "Selection",
    ),
    Command(
        "overview.clear",
        "escape",
        "clear_selection",
        "Uncheck all",
        "select: Uncheck all",
        "Uncheck every synchronization",
        "Selection",
        key_display="esc",
    ),
    Command(
        "overview.filter",
        "slash,f",
        "pick_filter",
        "Filter",
        "view: Filter by status...",
        "Open the status filter: show only synchronizations in one status",
        "View",
        show=True,
        key_display="/",
    ),
    Command(
        "overview.sort",
        "o",
        "sort_next",
        "Sort",
        "view: Sort by the next column",
        "Sort by the next column (also: click a column header)",
        "View",
    ),
    Command(
        "overview.sort_reverse",
        "O",
        "sort_reverse",
        "Reverse sort",
        "view: Reverse the sort order",
        "Reverse the sort order",
        "View",
    ),
    Command(
        "overview.scope",
        "p",
        "toggle_scope",
        "Project/all",
        "view: Switch project / all projects",
        "Switch between the project overview (the row's project) and all projects",
        "View",
    ),
    Command(
        "overview.refresh",
        "r",
        "refresh",
        "Refresh",
        "view: Refresh now",
        "Reload the synchronizations now (the table also follows the engine by itself)",
        "View",
    ),
    Command(
        "overview.help",
        "question_mark,f1",
        "help",
        "Help",
        "help: Keys and commands",
        "Show every key and command",
        "Help",
        show=True,
        key_display="?",
    ),
)

APP_COMMANDS: tuple[Command, ...] = (
    Command(
        "app.quit",
        "q",
        "quit",
        "Quit",
        "app: Quit",
        "Quit Backbone (stops this process's engine)",
        "Help",
        show=True,
        palette=False,
    ),
)

NAVIGATION_HELP: tuple[tuple[str, str], ...] = (
    ("up/down, k/j", "Move the cursor"),
    ("pgup/pgdn, home/end", "Page through the table"),
    ("tab, shift+tab", "Move between the toolbar and the table"),
    ("click a header", "Sort by that column (again: reverse)"),
    ("ctrl+p", "Command palette: every action by name"),
)

ALL_COMMANDS: tuple[Command, ...] = TABLE_COMMANDS + OVERVIEW_COMMANDS + APP_COMMANDS
