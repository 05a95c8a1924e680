"""The synchronizations overview: one row per synchronization, refreshed as the engine works."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine.installation import Installation, SyncInfo

COLUMNS = ("Name", "Key", "Project", "Partner", "Role", "Protocol", "Status", "Errors", "Pending", "Last activity")


class OverviewScreen(Screen[None]):
    """Lists synchronizations (all, or one project's)."""

    BINDINGS = [Binding("r", "refresh", "Refresh", id="overview.refresh")]

    def __init__(self, installation: Installation, project: str | None = None) -> None:
        super().__init__()
        self.installation = installation
        self.project = project

    def compose(self) -> ComposeResult:
        yield Header()
        scope = f"project {self.project}" if self.project else "all projects"
        yield Static(f"Synchronizations - {scope} - {self.installation.paths.root}", id="scope")
        yield DataTable(id="syncs", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.action_refresh()

    def action_refresh(self) -> None:
        self.show(self.installation.list_syncs(project=self.project))

    def show(self, syncs: list[SyncInfo]) -> None:
        table = self.query_one(DataTable)
        present = {row.value for row in table.rows}
        wanted = {info.key for info in syncs}
        for key in present - wanted:
            table.remove_row(key)
        for info in syncs:
            cells = [
                Text(info.name), Text(info.key), Text(info.local_project),
                Text(info.partner_project), Text(info.role), Text(info.protocol),
                Text(info.status), Text(str(info.errors)), Text(str(info.pending)),
                Text(info.last_activity.strftime("%Y-%m-%d %H:%M:%S") if info.last_activity else "-"),
            ]
            if info.key in present:
                for column, cell in zip(COLUMNS, cells, strict=True):
                    table.update_cell(info.key, column, cell)
            else:
                table.add_row(*cells, key=info.key)
