"""The trackers an installation syncs with: the embedded one (always there) and Jira or Redmine
accounts an administrator adds, tests and removes; the open connector of each."""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from sqlmodel import col, select

from engine.domain.side import SideCtx
from engine.errors import BackboneError, FieldError, TrackerAuthFailed, TrackerOffline
from engine.store.models import Message, SyncSide, TrackerAccount
from engine.trackers import open_tracker
from engine.trackers.base import ChecksPermissions, Tracker, utcnow
from engine.trackers.settings import AUTHS, EMBEDDED, KINDS, TrackerSettings
from engine.vocab import Folder

if TYPE_CHECKING:
    from engine.service.installation import Installation

log = logging.getLogger("backbone.trackers")

__all__ = ["AUTHS", "EMBEDDED", "TrackerAccounts", "TrackerInfo", "check_name", "parse_options"]

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
    problem: str = ""  # the credentials were refused: what the tracker said ("" : none)
    problem_since: datetime | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the connector's settings (no secret)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["created"] = self.created.isoformat() if self.created else None
        data["problem_since"] = self.problem_since.isoformat() if self.problem_since else None
        data["used_by"] = list(self.used_by)
        return data


class _Watched:
    """A connector whose refusals of the credentials (`TrackerAuthFailed`, from any call) are
    remembered on its account by `refused(text)`; everything else passes through."""

    def __init__(self, connector: Tracker, refused: Callable[[str], None]) -> None:
        self._connector = connector
        self._refused = refused

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._connector, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except TrackerAuthFailed as exc:
                self._refused(str(exc))
                raise

        return call


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
        return self._connector(self._row(name))

    def working(self, name: str) -> Tracker:
        """`get`, for the pipeline: while the account's credentials stand refused, it raises
        `TrackerAuthFailed` without asking the tracker (Jira locks an account after a few failed
        log-ins), so messages wait in OFFLINE until `update` or a passing `test` clears it."""
        if name == EMBEDDED:
            return self.i.tracker
        row = self._row(name)
        if row.problem:
            raise TrackerAuthFailed(
                f"tracker {name}: {row.problem} (fix the account: backbone tracker update {name} --secret)"
            )
        return self._connector(row)

    def _row(self, name: str) -> TrackerAccount:
        with self.i.db.session() as s:
            row = s.get(TrackerAccount, name)
            if row is not None:
                s.expunge(row)
        if row is None:
            raise BackboneError(f"no tracker named {name!r} ('backbone tracker list' shows them)")
        return row

    def _connector(self, row: TrackerAccount) -> Tracker:
        settings = TrackerSettings.from_row(row)
        with self._guard:
            opened = self._open.get(row.name)
            if opened is None or opened[0] != settings:
                connector = open_tracker(settings, self.i.db)
                watched = cast("Tracker", _Watched(connector, functools.partial(self.refused, row.name)))
                opened = (settings, watched)
                self._open[row.name] = opened
            return opened[1]

    def poll_soon(self, name: str) -> None:
        """Have tracker `name` looked at on the engine's next pass, not at its poll interval (a
        webhook said it changed); `BackboneError` for an unknown name or the embedded tracker."""
        if name == EMBEDDED:
            raise BackboneError("the embedded tracker needs no webhook: its writes wake the engine")
        tracker = self.get(name)
        soon = getattr(tracker, "poll_soon", None)
        if soon is not None:
            soon()

    def refused(self, name: str, text: str) -> None:
        """Remember that tracker `name` refused the credentials (what it said); every
        synchronization using it shows it, and the pipeline stops asking that tracker."""
        with self.i.db.write() as s:
            row = s.get(TrackerAccount, name)
            if row is None or row.problem:
                return
            row.problem = text or "the credentials were refused"
            row.problem_since = utcnow()
            s.add(row)
        log.warning("tracker %s refused the credentials: %s; nothing is sent to it until fixed", name, text)
        self._announce(name)

    def _clear(self, name: str) -> None:
        """The credentials work (again): forget the problem and retry what waits in OFFLINE."""
        with self.i.db.write() as s:
            row = s.get(TrackerAccount, name)
            if row is None or not row.problem:
                return
            row.problem, row.problem_since = "", None
            s.add(row)
            side_ids = s.exec(select(SyncSide.id).where(SyncSide.tracker == name)).all()
            for message in s.exec(
                select(Message).where(col(Message.side_id).in_(side_ids), Message.folder == Folder.OFFLINE)
            ).all():
                message.next_attempt = 0.0
                s.add(message)
        self._announce(name)

    def _announce(self, name: str) -> None:
        with self.i.db.session() as s:
            keys = sorted(set(s.exec(select(SyncSide.sync_key).where(SyncSide.tracker == name)).all()))
        for key in keys:
            self.i._changed(key)

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
        return TrackerSettings.from_row(self._row(name))

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
        row = TrackerAccount(
            name=name, kind=kind, url=url, auth=auth, user=user, secret=secret, created=utcnow()
        )
        row.api_version = 0 if kind == "redmine" else api_version
        row.options = json.dumps(_with_poll(dict(options or {}), poll_interval))
        _check(row)
        with self.i.db.write() as s:
            if s.get(TrackerAccount, name) is not None:
                raise FieldError(
                    "name", f"{name!r}: a tracker of that name exists ('tracker update' changes it)"
                )
            s.add(row)
        return self.info(name)

    def update(
        self,
        name: str,
        *,
        url: str | None = None,
        auth: str | None = None,
        user: str | None = None,
        secret: str | None = None,
        api_version: int | None = None,
        poll_interval: float | None = None,
        options: dict[str, Any] | None = None,
    ) -> TrackerInfo:
        """Change an account (new credentials, address, options: each given value replaces the
        old one, options are merged); clears a refusal of the old credentials and retries what
        waits in OFFLINE. Checked like `add`; nothing changes when a value is wrong."""
        if name == EMBEDDED:
            raise FieldError("name", "the embedded tracker has no account to change")
        row = self._row(name)
        for attribute, value in (("url", url), ("auth", auth), ("user", user), ("secret", secret)):
            if value is not None:
                setattr(row, attribute, value)
        if api_version is not None and row.kind == "jira":
            row.api_version = api_version
        merged = {**json.loads(row.options or "{}"), **(options or {})}
        row.options = json.dumps(_with_poll(merged, poll_interval))
        _check(row)
        with self.i.db.write() as s:
            stored = s.get(TrackerAccount, name)
            if stored is None:
                raise BackboneError(f"no tracker named {name!r} ('backbone tracker list' shows them)")
            for attribute in ("url", "auth", "user", "secret", "api_version", "options"):
                setattr(stored, attribute, getattr(row, attribute))
            s.add(stored)
        self._clear(name)
        return self.info(name)

    def info(self, name: str) -> TrackerInfo:
        """One account as `accounts` lists it; `BackboneError` when there is none of that name."""
        found = next((info for info in self.accounts() if info.name == name), None)
        if found is None:
            raise BackboneError(f"no tracker named {name!r} ('backbone tracker list' shows them)")
        return found

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
                    row.problem,
                    row.problem_since,
                    settings.options,
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
            if isinstance(tracker, ChecksPermissions):  # a tracker with accounts: whose are these?
                login = tracker.signed_in_as()
                if login != user and login.split("@", 1)[0] != user.split("@", 1)[0]:
                    raise BackboneError(f"tracker {name}: the credentials belong to {login}, not to {user}")
            projects = dict(tracker.projects())
        except TrackerAuthFailed as exc:
            raise BackboneError(f"tracker {name}: the credentials were refused: {exc}") from None
        except TrackerOffline as exc:
            raise BackboneError(f"tracker {name}: not reachable: {exc}") from None
        if name != EMBEDDED:
            self._clear(name)  # the credentials work (again)
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


def parse_options(assignments: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` texts as connector options (whole numbers as numbers); `FieldError` naming
    the one that is not of that shape."""
    options: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, value = assignment.strip().partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
            raise FieldError(
                "options", f"{assignment!r}: expected NAME=VALUE (name: lower-case letters, digits, _)"
            )
        options[name] = int(value) if value.isdigit() else value
    return options


def _with_poll(options: dict[str, Any], poll_interval: float | None) -> dict[str, Any]:
    if poll_interval is not None:
        if not 0.1 <= poll_interval <= 3600:
            raise FieldError("poll_interval", f"{poll_interval}: expected seconds from 0.1 to 3600")
        options["poll_interval"] = poll_interval
    return options


def _check(row: TrackerAccount) -> None:
    """`FieldError` naming the first value of the account that is wrong; the url normalised."""
    parts = urlsplit(row.url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise FieldError("url", f"{row.url!r}: expected http(s)://host[:port][/path]")
    row.url = row.url.rstrip("/")
    if row.auth not in AUTHS[row.kind]:
        raise FieldError("auth", f"{row.auth!r}: {row.kind} takes {', '.join(AUTHS[row.kind])}")
    if row.kind == "jira" and row.api_version not in (2, 3):
        raise FieldError("api_version", f"{row.api_version}: expected 2 (Server/Data Center) or 3 (Cloud)")
    if not row.user.strip() or len(row.user) > 255 or not row.user.isprintable():
        raise FieldError("user", "expected the synchronization user's login on that tracker")
    if not row.secret or not row.secret.isprintable() or len(row.secret) > 4096:
        raise FieldError("secret", "expected the password, API token or key (one line)")
