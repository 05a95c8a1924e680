"""Issue trackers behind one protocol (`base.Tracker`): the embedded one, Jira and Redmine.

`open_tracker(settings, db)` builds the connector of a remote tracker by its kind; each lives in
its own package (`jira/`, `redmine/`) and is imported only when a tracker of that kind is used."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from engine.errors import FieldError
from engine.trackers.mirror import ChangeMirror
from engine.trackers.settings import KINDS, TrackerSettings

if TYPE_CHECKING:
    from engine.store.database import Database
    from engine.trackers.base import Tracker

#: kind -> (module, class) of its connector
CONNECTORS = {
    "jira": ("engine.trackers.jira", "JiraTracker"),
    "redmine": ("engine.trackers.redmine", "RedmineTracker"),
}


def open_tracker(settings: TrackerSettings, db: Database) -> Tracker:
    """The connector for `settings` (its changes kept in `db`); `FieldError` for an unknown kind."""
    if settings.kind not in CONNECTORS:
        raise FieldError("kind", f"{settings.kind!r}: expected one of {', '.join(KINDS)}")
    module, name = CONNECTORS[settings.kind]
    connector: type[Tracker] = getattr(import_module(module), name)
    return connector(settings, ChangeMirror(db, settings.name))  # type: ignore[call-arg]
