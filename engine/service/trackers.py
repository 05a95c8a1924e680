"""The trackers an installation syncs with: the embedded one (always there) and Jira or Redmine
accounts an administrator adds, tests and removes; the open connector of each."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlmodel import col, select

from engine.domain.side import SideCtx
from engine.errors import BackboneError, FieldError, TrackerAuthFailed, TrackerOffline
from engine.store.models import SyncSide, TrackerAccount
from engine.trackers import open_tracker
from engine.trackers.base import ChecksPermissions, Tracker, utcnow
from engine.trackers.settings import AUTHS, EMBEDDED, KINDS, TrackerSettings

if TYPE_CHECKING:
    from engine.service.installation import Installation

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def check_name(name: str) -> None:
    """`FieldError` unless `name` can name a new tracker account."""
    if name == EMBEDDED or not NAME.fullmatch(name):
        raise FieldError(
            "name", f"{name!r}: expected 1-64 lower-case letters, digits, '-' or '_' (not 'embedded')"
        )


@dataclass(frozen=True)
class TrackerInfo:
    """A tracker as a listing shows it: never its secret."""

    name: str
    kind: str  # embedded | jira | redmine
    url: str
    api_version: int
    auth: str
    user: str
    secret_set: bool
    poll_interval: float
    created: datetime | None
    used_by: tuple[str, ...]  # the synchronizations whose sides live in it

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["created"] = self.created.isoformat() if self.created else None
        data["used_by"] = list(self.used_by)
        return data


class TrackerAccounts:
    """Adding, listing, testing and removing trackers, and the connector each side uses."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation
        self._open: dict[str, tuple[TrackerSettings, Tracker]] = {}
        self._guard = threading.Lock()

    # -- the connectors -------------------------------------------------------------------

    def get(self, name: str) -> Tracker:
        """The tracker called `name` ("embedded": the home's own); `BackboneError` when unknown.
        A connector is opened once and opened again when its account changed."""
        if name == EMBEDDED:
            return self.i.tracker
        settings = self.settings(name)
        with self._guard:
            opened = self._open.get(name)
            if opened is None or opened[0] != settings:
                opened = (settings, open_tracker(settings, self.i.db))
                self._open[name] = opened
            return opened[1]

    def for_side(self, side: SideCtx) -> Tracker:
        """The tracker the side's project lives in."""
        return self.get(side.tracker)

    def of(self, key: str) -> Tracker:
        """The tracker of a synchronization's (first) side."""
        return self.for_side(self.i.queries.sides_of(key)[0])

    def pair_keys(self, issue_of: dict[tuple[int, str], str]) -> dict[tuple[int, str], str]:
        """(side id, pair id) -> the local issue's key, from (side id, pair id) -> issue id; each
        side's issues are asked of its own tracker, once per tracker."""
        if not issue_of:
            return {}
        with self.i.db.session() as s:
            tracker_of = dict(
                s.exec(
                    select(SyncSide.id, SyncSide.tracker).where(
                        col(SyncSide.id).in_(sorted({side_id for side_id, _ in issue_of}))
                    )
                ).all()
            )
        by_tracker: dict[str, set[str]] = {}
        for (side_id, _), issue_id in issue_of.items():
            by_tracker.setdefault(tracker_of.get(side_id, EMBEDDED), set()).add(issue_id)
        keys: dict[str, dict[str, str]] = {}
        for name, issue_ids in by_tracker.items():
            try:
                keys[name] = self.get(name).issue_keys(sorted(issue_ids))
            except (TrackerOffline, BackboneError):
                keys[name] = {}  # keys are for people: an unreachable tracker leaves them out
        return {
            (side_id, pair_id): keys[tracker_of.get(side_id, EMBEDDED)].get(issue_id, "")
            for (side_id, pair_id), issue_id in issue_of.items()
        }

    def settings(self, name: str) -> TrackerSettings:
        """The account called `name`, secret included (for a connector, never for display)."""
        with self.i.db.session() as s:
            row = s.get(TrackerAccount, name)
        if row is None:
            raise BackboneError(f"no tracker named {name!r} ('backbone tracker list' shows them)")
        return TrackerSettings.from_row(row)

    # -- administration -------------------------------------------------------------------

    def add(
        self,
        name: str,
        kind: str,
        url: str,
        *,
        auth: str,
        user: str,
        secret: str,
        api_version: int = 0,
        poll_interval: float | None = None,
        options: dict[str, Any] | None = None,
    ) -> TrackerInfo:
        """Add a Jira or Redmine account; every value is checked, naming the one that is wrong."""
        check_name(name)
        if kind not in KINDS:
            raise FieldError("kind", f"{kind!r}: expected one of {', '.join(KINDS)}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise FieldError("url", f"{url!r}: expected http(s)://host[:port][/path]")
        if auth not in AUTHS[kind]:
            raise FieldError("auth", f"{auth!r}: {kind} takes {', '.join(AUTHS[kind])}")
        if kind == "jira" and api_version not in (2, 3):
            raise FieldError("api_version", f"{api_version}: expected 2 (Server/Data Center) or 3 (Cloud)")
        if kind == "redmine":
            api_version = 0
        if not user.strip() or len(user) > 255 or not user.isprintable():
            raise FieldError("user", "expected the synchronization user's login on that tracker")
        if not secret or not secret.isprintable() or len(secret) > 4096:
            raise FieldError("secret", "expected the password, API token or key (one line)")
        options = dict(options or {})
        if poll_interval is not None:
            if not 0.1 <= poll_interval <= 3600:
                raise FieldError("poll_interval", f"{poll_interval}: expected seconds from 0.1 to 3600")
            options["poll_interval"] = poll_interval
        with self.i.db.write() as s:
            if s.get(TrackerAccount, name) is not None:
                raise FieldError(
                    "name", f"{name!r}: a tracker of that name exists ('tracker remove' it first)"
                )
            s.add(
                TrackerAccount(
                    name=name,
                    kind=kind,
                    url=url.rstrip("/"),
                    api_version=api_version,
                    auth=auth,
                    user=user,
                    secret=secret,
                    options=json.dumps(options),
                    created=utcnow(),
                )
            )
        return next(info for info in self.accounts() if info.name == name)

    def accounts(self) -> list[TrackerInfo]:
        """The embedded tracker first, then every account by name."""
        with self.i.db.session() as s:
            rows = s.exec(select(TrackerAccount).order_by(col(TrackerAccount.name))).all()
            used = s.exec(select(SyncSide.tracker, SyncSide.sync_key).distinct()).all()
        users: dict[str, list[str]] = {}
        for tracker, key in used:
            users.setdefault(tracker, []).append(key)
        result = [
            TrackerInfo(
                EMBEDDED, EMBEDDED, "", 0, "", "", False, 0.0, None, tuple(sorted(users.get(EMBEDDED, [])))
            )
        ]
        for row in rows:
            settings = TrackerSettings.from_row(row)
            result.append(
                TrackerInfo(
                    row.name,
                    row.kind,
                    row.url,
                    row.api_version,
                    row.auth,
                    row.user,
                    bool(row.secret),
                    settings.poll_interval,
                    row.created,
                    tuple(sorted(users.get(row.name, []))),
                )
            )
        return result

    def remove(self, name: str) -> None:
        """Remove an account; refused while a synchronization uses it."""
        if name == EMBEDDED:
            raise FieldError("name", "the embedded tracker is always there")
        info = next((info for info in self.accounts() if info.name == name), None)
        if info is None:
            raise BackboneError(f"no tracker named {name!r} ('backbone tracker list' shows them)")
        if info.used_by:
            raise BackboneError(
                f"tracker {name} is used by {', '.join(info.used_by)}: delete those synchronizations first"
            )
        with self.i.db.write() as s:
            row = s.get(TrackerAccount, name)
            if row is not None:
                s.delete(row)
        with self._guard:
            self._open.pop(name, None)

    def test(self, name: str, project: str | None = None) -> list[str]:
        """Check a tracker for real: reachable, authenticated, the project there, and the sync
        user's permissions on it; one line per check. `BackboneError` on the first that fails."""
        tracker = self.get(name)
        user = self.settings(name).user if name != EMBEDDED else ""
        try:
            if not tracker.is_online():
                raise BackboneError(f"tracker {name}: not reachable")
            projects = dict(tracker.projects())
        except TrackerAuthFailed as exc:
            raise BackboneError(f"tracker {name}: the credentials were refused: {exc}") from None
        except TrackerOffline as exc:
            raise BackboneError(f"tracker {name}: not reachable: {exc}") from None
        lines = [f"{name}: reachable and authenticated as {user or 'the embedded tracker'}"]
        lines.append(f"{name}: {len(projects)} project(s) visible")
        if project is None:
            return lines
        if project not in projects:
            raise BackboneError(f"tracker {name}: project {project} is not there (or not visible to {user})")
        lines.append(f"{name}: project {project} ({projects[project]})")
        if isinstance(tracker, ChecksPermissions):
            try:
                missing = tracker.missing_permissions(project, user)
            except TrackerOffline as exc:
                raise BackboneError(f"tracker {name}: permissions could not be read: {exc}") from None
            if missing:
                raise BackboneError(f"tracker {name}: {user} lacks in {project}: {'; '.join(missing)}")
            lines.append(
                f"{name}: {user} may browse, create, edit, comment, attach and transition in {project}"
            )
        else:
            lines.append(f"{name}: no permissions to check (every user may change every issue)")
        return lines
