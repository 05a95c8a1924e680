"""Analyze: what keeps synchronizations from working, problems first, each with what fixes it.

One synchronization is checked in full (channel log-in, folders, tracker, configuration, keys,
every folder's messages); all of them with a few grouped queries and no network check unless
asked, so the global view stays fast with thousands of synchronizations."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.orm import load_only
from sqlmodel import col, select

from engine.config.mapping import parse_config
from engine.config.terms import Terms
from engine.domain.folders import exchange_paths
from engine.domain.settings import SyncSettings
from engine.domain.side import SideCtx, side_failure
from engine.errors import BackboneError, TrackerOffline
from engine.service.analysis import Analysis, Finding, Fix, FolderScan, Severity, fix_for, issue_fix
from engine.service.queries import LISTED_SIDE_COLUMNS
from engine.service.rules import KEY_WARNING_DAYS
from engine.service.troubleshooting import PROBLEM_FOLDERS, ProblemRow, row_actions
from engine.store import fsutil
from engine.store.models import Message, Synchronization, SyncSide
from engine.trackers.base import ChecksPermissions, utcnow
from engine.trackers.settings import EMBEDDED
from engine.vocab import ALL_FOLDERS, Direction, Folder, Protocol, Reason, Role, SyncStatus

if TYPE_CHECKING:
    from engine.service.installation import Installation

__all__ = ["Analysis", "Analyzer", "Finding", "Fix", "FolderScan", "Severity"]


FOLDER_SEVERITY: dict[str, Severity] = {
    Folder.ERROR: Severity.ERROR,
    Folder.REJECTED: Severity.ERROR,
    Folder.SEND_ERROR: Severity.ERROR,
    Folder.UNKNOWN: Severity.WARNING,
    Folder.MISSING: Severity.WARNING,
    Folder.WAITING: Severity.WARNING,
    Folder.OFFLINE: Severity.WARNING,
}
#: waits that resolve by themselves once the awaited message or version is there
QUIET_WAITS = frozenset({Reason.CONFIG_PENDING, Reason.RESYNC_REQUESTED})
#: how many issues a folder finding names (the error table has them all)
NAMED_ISSUES = 20


#: loaded beside a listing's columns: whether a review-mode proposal waits
PROPOSAL_COLUMN = tuple(getattr(SyncSide, name) for name in ("proposal",))


@dataclass
class _Group:
    """The messages of one side, folder and reason: count and the oldest move into the folder."""

    count: int = 0
    oldest: datetime | None = None


class Analyzer:
    """Runs the checks of Analyze for one synchronization or for all of them."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def analyze(self, key: str, *, check_channel: bool = True) -> Analysis:
        """One synchronization in full; `check_channel` logs in to the mail servers (or writes a
        probe into the exchange folder). `BackboneError` if it does not exist."""
        analyses = self._run([key], check_channel=check_channel, deep=True)
        if not analyses:
            raise BackboneError(f"synchronization {key} does not exist")
        return analyses[0]

    def analyze_all(self, *, check_channels: bool = False) -> list[Analysis]:
        """Every synchronization, by key, from grouped queries; no network check unless asked."""
        return self._run(None, check_channel=check_channels, deep=check_channels)

    # -- the run --------------------------------------------------------------------------------

    def _run(self, keys: list[str] | None, *, check_channel: bool, deep: bool) -> list[Analysis]:
        now = utcnow()
        with self.i.db.session() as s:
            syncs = select(Synchronization).order_by(col(Synchronization.key))
            listed = (getattr(SyncSide, column.name) for column in LISTED_SIDE_COLUMNS)
            sides = select(SyncSide).options(load_only(*listed, *PROPOSAL_COLUMN))
            by_folder = (col(Message.side_id), col(Message.folder), col(Message.reason_code))
            groups = sa_select(*by_folder, func.count(), func.min(col(Message.updated))).group_by(*by_folder)
            if keys is not None:
                syncs = syncs.where(col(Synchronization.key).in_(keys))
                sides = sides.where(col(SyncSide.sync_key).in_(keys))
            sync_rows = list(s.exec(syncs).all())
            side_rows = list(s.exec(sides).all())
            side_ids = [side.id for side in side_rows]
            if keys is not None:
                groups = groups.where(col(Message.side_id).in_(side_ids))
            folder_groups = s.connection().execute(groups).all()
            unacked = self._unacknowledged(s, sync_rows, side_rows, now)
            stopped = {sync.key for sync in sync_rows if sync.status == SyncStatus.STOPPED}
            texts = {  # the mapping texts, kilobytes each: only where a start depends on them
                side_id: (config_text, terms_json)
                for side_id, config_text, terms_json in s.exec(
                    select(SyncSide.id, SyncSide.config_text, SyncSide.terms_json).where(
                        col(SyncSide.id).in_(
                            [side.id for side in side_rows if deep or side.sync_key in stopped]
                        )
                    )
                )
            }
        by_sync: dict[str, list[SyncSide]] = {}
        for side in side_rows:
            by_sync.setdefault(side.sync_key, []).append(side)
        counts: dict[int, dict[str, dict[str, _Group]]] = {}
        for side_id, folder, code, count, oldest in folder_groups:
            group = counts.setdefault(side_id, {}).setdefault(folder, {}).setdefault(code, _Group())
            group.count, group.oldest = count, _utc(oldest)
        tracker = self._tracker_findings(sync_rows, by_sync, check=deep)
        contexts = {side.id: side for side in self.i.pipeline.sides()} if check_channel else {}
        problem_rows = self.i.troubleshooting.problems(keys[0]) if keys is not None and len(keys) == 1 else []
        result = []
        for sync in sync_rows:
            own = by_sync.get(sync.key, [])
            findings: list[Finding] = []
            findings += self._status_findings(sync, own)
            for side in own:
                findings += self._config_findings(sync, side, texts.get(side.id or 0))
                findings += self._key_findings(sync, side, now)
                findings += self._channel_findings(sync, side, contexts.get(side.id or 0))
                findings += tracker.get((side.tracker, side.project, sync.sync_user), [])
                findings += self._folder_findings(sync, side, counts.get(side.id or 0, {}), problem_rows)
                findings += unacked.get(side.id or 0, [])
            scans = tuple(
                _scan(side.folder, folder, counts.get(side.id or 0, {}).get(folder, {}))
                for side in own
                for folder in ALL_FOLDERS
            )
            result.append(
                Analysis(
                    sync.key,
                    sync.name,
                    sync.status,
                    sync.status_detail,
                    tuple(findings),
                    scans,
                    now,
                    channel_checked=check_channel,
                )
            )
        return result

    # -- the checks -----------------------------------------------------------------------------

    def _status_findings(self, sync: Synchronization, sides: list[SyncSide]) -> list[Finding]:
        key, status = sync.key, sync.status
        failed = [(side, side_failure(side.failure)) for side in sides if side.failure]
        findings = []
        for side, failure in failed:
            what = failure.get("what", "a tracker change")
            change = failure.get("change")
            if failure.get("skip"):
                findings.append(
                    Finding(
                        Severity.INFO,
                        Reason.STOPPED_BY_BUG,
                        f"{side.folder}: {what} will be skipped by the next detect (an operator chose it)",
                        side.folder,
                    )
                )
                continue
            fixes = [fix_for("start", f"backbone sync start {key}")]
            if isinstance(change, int):
                fixes.insert(0, fix_for("skip_change", f"backbone sync skip-change {key} --reason TEXT"))
            findings.append(
                Finding(
                    Severity.ERROR,
                    Reason.STOPPED_BY_BUG,
                    f"{side.folder}: stopped because {what} trips a bug: {failure.get('error', '')} "
                    "(please report it); skip the change, or start again once fixed",
                    side.folder,
                    _parse_time(failure.get("at")),
                    fixes=tuple(fixes),
                )
            )
        if status == SyncStatus.STOPPED and not any(f.severity == Severity.ERROR for f in findings):
            findings.append(
                Finding(
                    Severity.INFO,
                    Reason.SYNC_STOPPED,
                    f"{key} is STOPPED: no issue updates are synchronized",
                    fixes=(fix_for("start", f"backbone sync start {key}"),),
                )
            )
        elif status == SyncStatus.DECLINED:
            findings.append(
                Finding(
                    Severity.WARNING,
                    Reason.SYNC_NOT_PAIRED,
                    f"{key}: the partner declined the request; delete it",
                    fixes=(Fix("delete", "Delete", f"backbone sync delete {key} --yes"),),
                )
            )
        elif status == SyncStatus.INCOMING_REQUEST:
            findings.append(
                Finding(
                    Severity.WARNING,
                    Reason.SYNC_NOT_PAIRED,
                    f"{key}: a request from the partner waits to be accepted or declined",
                    fixes=(Fix("accept", "Accept the request", f"backbone sync accept {key}"),),
                )
            )
        elif status in (SyncStatus.REQUEST_SENT, SyncStatus.HANDSHAKE):
            findings.append(
                Finding(
                    Severity.INFO,
                    Reason.SYNC_NOT_PAIRED,
                    f"{key} is {status}: pairing is not complete (the partner answers next)",
                )
            )
        return findings

    def _config_findings(
        self, sync: Synchronization, side: SyncSide, texts: tuple[str, str] | None
    ) -> list[Finding]:
        """The configuration in force on this side, pending versions, proposals, and given its
        texts (mapping, shared terms), the mappings left unbound."""
        if sync.status not in (
            SyncStatus.STOPPED,
            SyncStatus.RUNNING,
            SyncStatus.WAITING_FOR_PARTNER,
            SyncStatus.UPDATE_REQUIRED,
        ):
            return []
        key, where = sync.key, side.folder
        publish = fix_for(
            "publish", f"backbone config publish {key}" + ("" if side.role == Role.SECONDARY else " -m TEXT")
        )
        if not side.config_version and not side.pending_version:
            if side.role == Role.PRIMARY:
                text = f"{where}: no configuration in force yet: import a mapping and publish it"
                return [Finding(Severity.WARNING, Reason.CONFIG_MISSING, text, where, fixes=(publish,))]
            text = f"{where}: no configuration in force yet: the primary publishes one"
            return [Finding(Severity.WARNING, Reason.CONFIG_MISSING, text, where)]
        findings = []
        if side.pending_version:
            if side.role == Role.SECONDARY:
                text = (
                    f"{where}: UPDATE REQUIRED: version {side.pending_version} came from the partner; "
                    "bind it and publish (issue messages wait until then)"
                )
                findings.append(
                    Finding(Severity.WARNING, Reason.CONFIG_PENDING, text, where, fixes=(publish,))
                )
            else:
                text = (
                    f"{where}: WAITING FOR PARTNER: version {side.pending_version} is published; the "
                    "partner binds it next (issue messages wait until then)"
                )
                findings.append(Finding(Severity.INFO, Reason.CONFIG_PENDING, text, where))
        if side.proposal and side.role == Role.PRIMARY:
            text = f"{where}: the partner proposed narrower directions (review mode): accept or decline"
            fixes = (Fix("accept", "Accept the proposal", f"backbone config accept {key}"),)
            findings.append(Finding(Severity.WARNING, Reason.PROPOSAL_PENDING, text, where, fixes=fixes))
        elif side.proposal:
            text = f"{where}: your proposal waits for the partner's review"
            findings.append(Finding(Severity.INFO, Reason.PROPOSAL_PENDING, text, where))
        if texts is not None and side.config_version and texts[1]:
            try:
                terms = Terms.from_body(json.loads(texts[1]))
                unbound = terms.unbound(parse_config(texts[0], "in force"), role=side.role)
            except (BackboneError, ValueError) as exc:
                text = f"{where}: the configuration in force cannot be read: {exc}"
                return [
                    *findings,
                    Finding(Severity.ERROR, Reason.CONFIG_UNBOUND, text, where, fixes=(publish,)),
                ]
            if unbound:
                text = f"{where}: mappings not bound to local names: {', '.join(unbound[:8])}"
                findings.append(Finding(Severity.ERROR, Reason.CONFIG_UNBOUND, text, where, fixes=(publish,)))
        return findings

    def _key_findings(self, sync: Synchronization, side: SyncSide, now: datetime) -> list[Finding]:
        if not sync.encryption:
            return []
        findings = []
        for who, expires in (
            ("this installation's", side.own_key_expires),
            ("the partner's", side.partner_key_expires),
        ):
            expires = _utc(expires)
            if expires is None:
                continue
            renew = fix_for("renew_key", "")
            if expires <= now:
                text = f"{side.folder}: {who} key expired on {expires:%Y-%m-%d}: new messages are rejected"
                findings.append(
                    Finding(Severity.ERROR, Reason.KEY_EXPIRED, text, side.folder, expires, fixes=(renew,))
                )
            elif expires - now <= timedelta(days=KEY_WARNING_DAYS):
                text = (
                    f"{side.folder}: {who} key expires on {expires:%Y-%m-%d} (in {(expires - now).days} days)"
                )
                findings.append(
                    Finding(Severity.WARNING, Reason.KEY_EXPIRING, text, side.folder, expires, fixes=(renew,))
                )
        return findings

    def _channel_findings(
        self, sync: Synchronization, side: SyncSide, context: SideCtx | None
    ) -> list[Finding]:
        """The stored receive failure, the exchange folders (cheap), and given the side's context,
        a real try of the channel."""
        key, where = sync.key, side.folder
        test = Fix("test_channel", "Test the channel", f"backbone sync test {key}")
        findings = []
        if side.channel_error:
            text = f"{where}: the channel fails: {side.channel_error}"
            since = _utc(side.channel_error_since)
            findings.append(Finding(Severity.ERROR, Reason.CHANNEL_FAILED, text, where, since, fixes=(test,)))
        if sync.protocol == Protocol.FILE and side.exchange:
            for folder, access in zip(
                exchange_paths(Path(side.exchange)), (os.W_OK, os.R_OK | os.W_OK), strict=True
            ):
                problem = _exchange_problem(folder, access)
                if problem:
                    findings.append(
                        Finding(Severity.ERROR, problem[0], f"{where}: {problem[1]}", where, fixes=(test,))
                    )
        if context is None or sync.protocol == Protocol.LOCAL or findings:
            return findings
        channel = self.i.mailboxes.channel_for(context)
        try:
            works = channel.check()
        except (BackboneError, OSError) as exc:
            text = f"{where}: the channel check failed: {exc}"
            findings.append(Finding(Severity.ERROR, Reason.CHANNEL_FAILED, text, where, fixes=(test,)))
        else:
            findings.append(Finding(Severity.INFO, Reason.CHANNEL_WORKS, f"{where}: {works}", where))
        finally:
            channel.close()
        return findings

    def _tracker_findings(
        self, syncs: list[Synchronization], by_sync: dict[str, list[SyncSide]], *, check: bool
    ) -> dict[tuple[str, str, str], list[Finding]]:
        """(tracker, project, sync user) -> the tracker's findings: reachable, the user's permissions
        (a remote tracker is asked only when `check`: the global analysis makes no network calls)."""
        users = {sync.key: sync.sync_user for sync in syncs}
        wanted = {
            (side.tracker, side.project, users.get(key, ""))
            for key, sides in by_sync.items()
            for side in sides
        }
        result: dict[tuple[str, str, str], list[Finding]] = {}
        online: dict[str, bool] = {}
        refused = {info.name: info for info in self.i.trackers.accounts() if info.problem}
        for name, project, user in sorted(wanted):
            findings = result.setdefault((name, project, user), [])
            if name in refused:  # stored by the pipeline: nothing is sent there until it is fixed
                info = refused[name]
                text = (
                    f"tracker {name} refused the credentials of {info.user}: {info.problem}; "
                    "messages wait in OFFLINE"
                )
                fixes = (
                    Fix(
                        "update_tracker", "Update the credentials", f"backbone tracker update {name} --secret"
                    ),
                )
                since = _utc(info.problem_since)
                findings.append(
                    Finding(Severity.ERROR, Reason.TRACKER_AUTH_FAILED, text, since=since, fixes=fixes)
                )
                continue
            if name != EMBEDDED and not check:
                continue
            try:
                tracker = self.i.trackers.get(name)
                if name not in online:
                    online[name] = tracker.is_online()
            except BackboneError as exc:
                findings.append(Finding(Severity.ERROR, Reason.TRACKER_OFFLINE, f"tracker {name}: {exc}"))
                continue
            if not online[name]:
                text = f"tracker {name} is offline (project {project}): messages wait in OFFLINE"
                findings.append(Finding(Severity.ERROR, Reason.TRACKER_OFFLINE, text))
                continue
            if not check:
                continue
            if isinstance(tracker, ChecksPermissions):
                try:
                    missing = tracker.missing_permissions(project, user)
                except TrackerOffline as exc:
                    findings.append(Finding(Severity.ERROR, Reason.TRACKER_OFFLINE, f"tracker {name}: {exc}"))
                    continue
                if missing:
                    text = f"the sync user {user} lacks permissions in {project}: {', '.join(missing)}"
                    findings.append(Finding(Severity.ERROR, Reason.PERMISSION_MISSING, text))
            else:
                text = f"the embedded tracker has no permissions: {user} may change every issue of {project}"
                findings.append(Finding(Severity.INFO, Reason.PERMISSIONS_UNCHECKED, text))
        return result

    def _folder_findings(
        self,
        sync: Synchronization,
        side: SyncSide,
        folders: dict[str, dict[str, _Group]],
        rows: list[ProblemRow],
    ) -> list[Finding]:
        """What waits in the problem folders, by folder and reason: how many, since when, why,
        and on which issues (those need the error table's rows: one synchronization only)."""
        findings = []
        for folder in PROBLEM_FOLDERS:
            for code, group in sorted(folders.get(folder, {}).items(), key=lambda item: -item[1].count):
                mine = [r for r in rows if (r.side, r.folder, r.reason_code) == (side.folder, folder, code)]
                issues = tuple(dict.fromkeys(row.issue for row in mine if row.issue))
                since = f" since {group.oldest:%Y-%m-%d %H:%M}" if group.oldest else ""
                why = f"{code or 'no reason'}: {mine[0].reason_text}" if mine else code or "no reason"
                named = ""
                if issues:
                    named = f" on {', '.join(issues[:5])}" + (" and more" if len(issues) > 5 else "")
                text = f"{side.folder}: {group.count} message(s) in {folder}{since} ({why}){named}"
                actions = row_actions(folder, code, bool(issues))
                fixes = tuple(issue_fix(name, sync.key, issues) for name in actions)
                if folder in (Folder.OFFLINE, Folder.SEND_ERROR) and not issues:
                    fixes = (issue_fix("retry", sync.key, ()),)
                severity = Severity.INFO if code in QUIET_WAITS else FOLDER_SEVERITY[folder]
                findings.append(
                    Finding(
                        severity,
                        code or folder,
                        text,
                        side.folder,
                        group.oldest,
                        issues[:NAMED_ISSUES],
                        fixes,
                    )
                )
        return findings

    def _unacknowledged(
        self, s: Any, syncs: list[Synchronization], sides: list[SyncSide], now: datetime
    ) -> dict[int, list[Finding]]:
        """SENT messages the partner has not acknowledged within `max_lifetime`: one grouped query
        per distinct lifetime in use."""
        lifetime = {sync.key: SyncSettings.from_json(sync.settings).get("max_lifetime") for sync in syncs}
        key_of = {sync.key: sync for sync in syncs}
        by_lifetime: dict[float, list[SyncSide]] = {}
        for side in sides:
            if side.sync_key in key_of:
                by_lifetime.setdefault(lifetime[side.sync_key], []).append(side)
        result: dict[int, list[Finding]] = {}
        for days, group in by_lifetime.items():
            names = {side.id: side for side in group}
            rows = s.exec(
                select(Message.side_id, func.count(), func.min(Message.updated))
                .where(
                    col(Message.side_id).in_(list(names)),
                    Message.folder == Folder.SENT,
                    Message.direction == Direction.OUT,
                    col(Message.acked).is_(False),
                    col(Message.updated) < now - timedelta(days=days),
                )
                .group_by(col(Message.side_id))
            ).all()
            for side_id, count, oldest in rows:
                side = names[side_id]
                text = (
                    f"{side.folder}: {count} sent message(s) not acknowledged by the partner within "
                    f"{days:g} days (max_lifetime), the oldest since {_utc(oldest):%Y-%m-%d %H:%M}: "
                    "check the partner's side and the channel"
                )
                fixes = (Fix("test_channel", "Test the channel", f"backbone sync test {side.sync_key}"),)
                result[side_id] = [
                    Finding(
                        Severity.WARNING,
                        Reason.NOT_ACKNOWLEDGED,
                        text,
                        side.folder,
                        _utc(oldest),
                        fixes=fixes,
                    )
                ]
        return result


def _exchange_problem(folder: Path, access: int) -> tuple[str, str] | None:
    """What keeps an exchange folder from working, as (reason, text); None when it works."""
    if folder.is_symlink() and not folder.exists():
        return Reason.LINK_BROKEN, f"{folder} is a link to {os.readlink(folder)}, which does not exist"
    problem = fsutil.folder_problem(folder, access)
    if not problem:
        return None
    code = (
        Reason.EXCHANGE_MISSING
        if "missing" in problem or "not a folder" in problem
        else Reason.EXCHANGE_NOT_WRITABLE
    )
    return code, problem


def _scan(side: str, folder: str, groups: dict[str, _Group]) -> FolderScan:
    if not groups:
        return _empty_scan(side, folder)
    count = sum(group.count for group in groups.values())
    oldest = min((group.oldest for group in groups.values() if group.oldest), default=None)
    reasons = tuple(
        sorted(((code, group.count) for code, group in groups.items()), key=lambda item: -item[1])
    )
    return FolderScan(side, folder, count, oldest, reasons)


@lru_cache(maxsize=1024)
def _empty_scan(side: str, folder: str) -> FolderScan:
    return FolderScan(side, folder, 0, None)


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they are UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
