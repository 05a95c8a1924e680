"""The overview's state (rows, selection, filter, sort) as plain Python, independent of widgets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.service.installation import SyncInfo
from engine.vocab import ALL_STATUSES, SyncStatus

START, STOP = "start", "stop"
STATUS_ORDER = {status: index for index, status in enumerate(ALL_STATUSES)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    """Naive database times are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_age(moment: datetime | None, now: datetime) -> str:
    """A short relative time that fits ten cells ("just now", "12 min ago", "2026-11-20")."""
    if moment is None:
        return "-"
    seconds = (as_utc(now) - as_utc(moment)).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)} d ago"
    return f"{as_utc(moment):%Y-%m-%d}"


SORT_KEYS: dict[str, Callable[[SyncInfo], Any]] = {
    "name": lambda i: i.name.casefold(),
    "key": lambda i: i.key,
    "project": lambda i: i.local_project,
    "partner": lambda i: i.partner_project,
    "role": lambda i: i.role,
    "protocol": lambda i: i.protocol,
    "status": lambda i: STATUS_ORDER.get(i.status, len(STATUS_ORDER)),
    "draft": lambda i: i.draft_state,
    "errors": lambda i: i.errors,
    "pending": lambda i: i.pending,
    "activity": lambda i: as_utc(i.last_activity) if i.last_activity else _EPOCH,
}


def action_for(status: str) -> str | None:
    """The start/stop action a synchronization in `status` offers, if any."""
    actions: dict[str, str] = {SyncStatus.STOPPED: START, SyncStatus.RUNNING: STOP}
    return actions.get(status)


@dataclass(frozen=True)
class BulkState:
    """What the action bar offers for the current selection."""

    action: str | None  # START, STOP or None
    keys: tuple[str, ...]
    hint: str


@dataclass(frozen=True)
class Diff:
    changed: frozenset[str]
    order_changed: bool


class OverviewModel:
    """Rows by synchronization key, the checked keys, the status filter and the sort order."""

    def __init__(self, scope: str | None = None) -> None:
        self.scope = scope
        self.rows: dict[str, SyncInfo] = {}
        self.loaded = False
        self.selected: set[str] = set()
        self.status_filter: str | None = None
        self.sort_column = "name"
        self.sort_reverse = False
        self.visible: list[str] = []
        self.index: dict[str, int] = {}
        self.drafts: dict[str, tuple[str, str]] = {}

    # -- data -----------------------------------------------------------------------------

    def apply(self, syncs: Iterable[SyncInfo]) -> Diff:
        """Replace the rows; returns which keys changed and whether the visible order did.

        The first load counts as an order change, so that the table drops its "loading" notice.
        """
        new = {info.key: info for info in syncs}
        old = self.rows
        changed = {key for key, info in new.items() if old.get(key) != info}
        changed |= old.keys() - new.keys()
        first_load = not self.loaded
        self.rows = new
        self.loaded = True
        self.selected &= new.keys()
        before = self.visible
        self._recompute()
        return Diff(frozenset(changed), first_load or self.visible != before)

    def _recompute(self) -> None:
        rows: Iterable[SyncInfo] = self.rows.values()
        if self.status_filter:
            rows = [info for info in rows if info.status == self.status_filter]
        sort_key = SORT_KEYS[self.sort_column]
        ordered = sorted(rows, key=lambda info: info.key, reverse=self.sort_reverse)
        ordered.sort(key=sort_key, reverse=self.sort_reverse)
        self.visible = [info.key for info in ordered]
        self.index = {key: position for position, key in enumerate(self.visible)}

    def set_scope(self, scope: str | None) -> None:
        self.scope = scope
        self.rows, self.visible, self.index, self.loaded = {}, [], {}, False
        self.selected.clear()

    def row_at(self, position: int) -> SyncInfo | None:
        if 0 <= position < len(self.visible):
            return self.rows[self.visible[position]]
        return None

    # -- view -----------------------------------------------------------------------------

    def set_filter(self, status: str | None) -> None:
        self.status_filter = status
        self._recompute()

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort by `column`; the same column again flips the direction."""
        if column not in SORT_KEYS:
            raise ValueError(f"unknown column {column!r}")
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self._recompute()

    def status_counts(self) -> Counter[str]:
        return Counter(info.status for info in self.rows.values())

    # -- selection ------------------------------------------------------------------------

    def toggle(self, key: str) -> bool:
        """Flip one checkbox; returns the new state."""
        if key in self.selected:
            self.selected.discard(key)
            return False
        if key in self.rows:
            self.selected.add(key)
            return True
        return False

    def select_status(self, status: str) -> int:
        """Check exactly the synchronizations in `status` (seed behaviour); returns how many."""
        self.selected = {key for key, info in self.rows.items() if info.status == status}
        return len(self.selected)

    def set_visible_selected(self, checked: bool) -> None:
        if checked:
            self.selected.update(self.visible)
        else:
            self.selected.difference_update(self.visible)

    @property
    def all_visible_selected(self) -> bool:
        return bool(self.visible) and all(key in self.selected for key in self.visible)

    @property
    def hidden_selected(self) -> int:
        return sum(1 for key in self.selected if key not in self.index)

    def bulk(self) -> BulkState:
        keys = tuple(sorted(self.selected))
        if not keys:
            return BulkState(None, keys, "Check rows (space) or pick a status to act on several at once")
        statuses = Counter(self.rows[key].status for key in keys)
        if len(statuses) > 1:
            mix = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
            return BulkState(None, keys, f"No common action (mixed: {mix})")
        (status,) = statuses
        action = action_for(status)
        if action is None:
            return BulkState(None, keys, f"{status} synchronizations cannot be started or stopped")
        return BulkState(action, keys, "")
