"""Notification mails: who is told about a synchronization, the account that tells them, and the
housekeeping check that finds what to tell (at most one mail per synchronization and kind per hour)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlmodel import col, select

from engine.channels.email import MailError, MailSettings, SmtpSettings
from engine.errors import BackboneError, FieldError
from engine.events import Event, SyncChanged
from engine.service.notify_kinds import (
    DRAFT_DECLINED,
    DRAFT_RECEIVED,
    ISSUE_ERROR,
    KEY_EXPIRING,
    KINDS,
    STOPPED,
    UNREACHABLE,
    Finding,
    account_problems,
    findings_of,
    one_line,
    send_mail,
)
from engine.service.rules import _env_name, _plausible_address
from engine.store import statements as S
from engine.store.models import IssuePair, Message, Notification, NotifyRecipient, Setting, Synchronization
from engine.store.models import SyncSide as SideRow
from engine.trackers.base import utcnow
from engine.vocab import Folder, Protocol, Reason

if TYPE_CHECKING:
    from engine.service.installation import Installation

__all__ = [
    "DRAFT_DECLINED",
    "DRAFT_RECEIVED",
    "ISSUE_ERROR",
    "KEY_EXPIRING",
    "KINDS",
    "STOPPED",
    "UNREACHABLE",
    "Finding",
    "Notifications",
]

log = logging.getLogger("backbone.notify")

SMTP_SETTING = "notify.smtp"  # the installation-wide account (JSON with the password)
MARK_SETTING = "notify.errors_seen"  # ISO time: moves to ERROR up to here were looked at
STATE_PREFIX = "notify.state."  # + sync key: JSON {kind: the occurrence told, "pending": {...}}
PASSWORD_ENV = "BACKBONE_NOTIFY_SMTP_PASSWORD"
LIMIT = timedelta(hours=1)
SWEEP_SECONDS = 60.0  # every synchronization with recipients is looked at this often
RETRY_SECONDS = 300.0  # an account whose mail failed is tried again after this
OVERLAP = timedelta(seconds=30)  # a move committed late still has an earlier `updated`
CHUNK = 500  # within SQLite's bound-parameter limit


class Notifications:
    """Recipients, the installation-wide account, and the periodic check that mails them."""

    def __init__(self, installation: Installation, now: Callable[[], datetime] = utcnow) -> None:
        self.i = installation
        self.now = now
        self._guard = threading.Lock()
        self._dirty: set[str] = set()  # synchronizations whose status changed since the last check
        self._states: dict[str, dict[str, Any]] | None = None  # loaded on the first check
        self._opened = utcnow()  # a home's first check looks at ERROR moves from here on
        self._mark: datetime | None = None
        self._seen: dict[int, datetime] = {}  # ERROR moves inside the overlap, already looked at
        self._recipients: dict[str, list[str]] = {}
        self._recipients_stamp: tuple[int, int] | None = None
        self._next_sweep: datetime | None = None
        self._retry_at: dict[tuple[str, int, str], datetime] = {}  # account -> after a failure
        self._unsendable: set[str] = set()  # synchronizations without an account, logged once
        installation.events.subscribe(self._on_event)

    # -- recipients and the account -----------------------------------------------------------

    def recipients(self, key: str) -> list[str]:
        """The addresses told about synchronization `key`, sorted."""
        self._require_sync(key)
        with self.i.db.session() as s:
            rows = s.exec(select(NotifyRecipient.address).where(NotifyRecipient.sync_key == key)).all()
        return sorted(rows)

    def change_recipients(self, key: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove addresses of synchronization `key`; the list afterwards."""
        self._require_sync(key)
        added = [address.strip() for address in add]
        for address in added:
            if not address or not _plausible_address(address):
                raise FieldError("add", f"{address!r}: expected one email address")
        current = set(self.recipients(key))
        missing = [address for address in remove if address.strip() not in current]
        if missing:
            raise FieldError("remove", f"{missing[0]!r} is not a recipient of {key}")
        with self.i.db.write() as s:
            for address in remove:
                for row in s.exec(
                    select(NotifyRecipient).where(
                        NotifyRecipient.sync_key == key, NotifyRecipient.address == address.strip()
                    )
                ):
                    s.delete(row)
            for address in dict.fromkeys(added):
                if address not in current:
                    s.add(NotifyRecipient(sync_key=key, address=address))
        self._recipients_stamp = None
        return self.recipients(key)

    def account(self) -> SmtpSettings | None:
        """The installation-wide account (for synchronizations without their own), if set;
        `$BACKBONE_NOTIFY_SMTP_PASSWORD` overrides the stored password."""
        with self.i.db.session() as s:
            row = s.get(Setting, SMTP_SETTING)
        if row is None:
            return None
        settings = SmtpSettings(**json.loads(row.value))
        password = os.environ.get(PASSWORD_ENV)
        if password is not None:
            settings.password = password
        return settings

    def set_account(self, settings: SmtpSettings | None) -> None:
        """Store (or, with None, remove) the installation-wide account; checks it without the network."""
        if settings is not None:
            problems = account_problems(settings)
            if problems:
                raise FieldError(problems[0][0], problems[0][1])
        with self.i.db.write() as s:
            row = s.get(Setting, SMTP_SETTING)
            if settings is None:
                if row is not None:
                    s.delete(row)
                return
            value = json.dumps(asdict(settings))
            if row is None:
                s.add(Setting(name=SMTP_SETTING, value=value))
            else:
                row.value = value
                s.add(row)

    def show(self) -> dict[str, Any]:
        """The account without its password, and the last notifications sent."""
        account = self.account()
        shown: dict[str, Any] | None = None
        if account is not None:
            shown = asdict(account)
            shown["password_set"] = bool(shown.pop("password"))
            shown.pop("to_addr", None)
        with self.i.db.session() as s:
            rows = s.exec(select(Notification).order_by(col(Notification.id).desc()).limit(20)).all()
            recipients = s.exec(select(func.count()).select_from(NotifyRecipient)).one()
        return {
            "smtp": shown,
            "recipients": int(recipients),
            "recent": [
                {
                    "sync": row.sync_key,
                    "kind": row.kind,
                    "at": row.at.isoformat(),
                    "recipients": json.loads(row.recipients),
                    "text": row.text,
                }
                for row in rows
            ],
        }

    def send_test(self, address: str, key: str | None = None) -> str:
        """Send one test mail to `address` by the account synchronization `key` (or, without
        one, the installation) notifies with; what happened, in one line. Raises `MailError`."""
        if not _plausible_address(address) or not address:
            raise FieldError("address", f"{address!r}: expected one email address")
        if key is None:
            account = self.account()
            if account is None:
                raise BackboneError("no notification account: set one with 'backbone notify smtp'")
            name = "this installation"
        else:
            sync, sides = self._sync_and_sides(key)
            account = self._account_for(sync, sides)
            if account is None:
                raise BackboneError(f"{key} has no account to notify by: set one with 'backbone notify smtp'")
            name = f"{key} ({one_line(sync.name)})"
        body = (
            f"This is a test of the notification mails of Backbone TUI for {name}.\n"
            "Failures, drafts received or declined and expiring keys are told to the recipients "
            "this way.\n\nNothing needs to be done.\n"
        )
        send_mail(account, [address], "Backbone TUI: notification test", body)
        return f"sent a test mail to {address} by {account.server} from {account.from_addr}"

    # -- the housekeeping check ---------------------------------------------------------------

    def check(self) -> int:
        """Find what to tell and mail it (the engine's housekeeping): the mails sent. A failing
        mail is logged and tried again later; only a database failure leaves this."""
        try:
            return self._check()
        except SADatabaseError:
            raise
        except Exception:  # noqa: BLE001 - a notification never stops the engine
            log.exception("the notification check failed; it runs again at the next pass")
            return 0

    def _check(self) -> int:
        now = self.now()
        if self._states is None:
            self._load()
        self._refresh_recipients()
        findings = self._new_errors()
        with self._guard:
            dirty, self._dirty = self._dirty, set()
        keys = {key for key in dirty if key in self._recipients}
        sweep = self._next_sweep is None or now >= self._next_sweep
        if sweep:
            self._next_sweep = now + timedelta(seconds=SWEEP_SECONDS)
            keys = set(self._recipients)
        if keys:
            findings += self._conditions(sorted(keys), now)
        return self._deliver(findings, now, sweep=sweep)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SyncChanged):
            with self._guard:
                self._dirty.add(event.sync_key)

    def _load(self) -> None:
        """The states told so far and the ERROR mark (now, on a home's first check)."""
        with self.i.db.session() as s:
            rows = s.exec(
                select(Setting).where(
                    col(Setting.name) >= STATE_PREFIX, col(Setting.name) < STATE_PREFIX[:-1] + "/"
                )
            ).all()
            mark = s.get(Setting, MARK_SETTING)
        self._states = {row.name[len(STATE_PREFIX) :]: json.loads(row.value) for row in rows}
        if mark is None:
            self._mark = self._opened
            self._write_setting(MARK_SETTING, self._mark.isoformat())
        else:
            self._mark = datetime.fromisoformat(mark.value)
        with self.i.db.session() as s:  # what the overlap holds was looked at before
            self._seen = {
                row_id: updated
                for row_id, updated in s.exec(
                    select(Message.id, Message.updated).where(
                        Message.folder == Folder.ERROR,
                        col(Message.updated) > self._mark - OVERLAP,
                        col(Message.updated) <= self._mark,
                    )
                )
                if row_id is not None
            }

    def _refresh_recipients(self) -> None:
        """Read the recipients again when another process (or this one) changed them."""
        with self.i.db.session() as s:
            count, last = s.exec(select(func.count(), func.max(NotifyRecipient.id))).one()
        stamp = (int(count), int(last or 0))
        if stamp == self._recipients_stamp:
            return
        recipients: dict[str, list[str]] = {}
        with self.i.db.session() as s:
            for key, address in s.exec(select(NotifyRecipient.sync_key, NotifyRecipient.address)):
                recipients.setdefault(key, []).append(address)
        self._recipients = {key: sorted(addresses) for key, addresses in recipients.items()}
        self._recipients_stamp = stamp

    def _new_errors(self) -> list[Finding]:
        """Issues whose first message went to ERROR since the last look (an index on the folder)."""
        assert self._mark is not None
        table = S.MESSAGES
        with self.i.db.session() as s:
            rows = [
                (int(row.id), int(row.side_id), row.pair_id, str(row.reason_code), row.updated)
                for row in s.connection().execute(
                    sa_select(
                        table.c.id, table.c.side_id, table.c.pair_id, table.c.reason_code, table.c.updated
                    ).where(
                        table.c.folder == Folder.ERROR,
                        table.c.reason_code != Reason.HELD_BEHIND_ERROR,
                        table.c.updated > self._mark - OVERLAP,
                    )
                )
            ]
        fresh = [row for row in rows if row[0] not in self._seen]
        if not fresh:
            return []
        latest = max(row[4] for row in fresh)
        for row in fresh:
            self._seen[row[0]] = row[4]
        if latest > self._mark:
            self._mark = latest
            self._seen = {i: at for i, at in self._seen.items() if at > self._mark - OVERLAP}
            self._write_setting(MARK_SETTING, self._mark.isoformat())
        side_ids = sorted({row[1] for row in fresh})
        with self.i.db.session() as s:
            sides = {
                row.id: row
                for chunk in _chunks(side_ids)
                for row in s.exec(select(SideRow).where(col(SideRow.id).in_(chunk)))
            }
            wanted = [row for row in fresh if row[1] in sides and sides[row[1]].sync_key in self._recipients]
            pairs = {
                (pair.side_id, pair.pair_id): pair.issue_id
                for chunk in _chunks(sorted({row[1] for row in wanted}))
                for pair in s.exec(select(IssuePair).where(col(IssuePair.side_id).in_(chunk)))
                if pair.issue_id and any(row[1] == pair.side_id and row[2] == pair.pair_id for row in wanted)
            }
        keys = self.i.trackers.pair_keys({pair: issue for pair, issue in pairs.items() if issue})
        findings = []
        for message_id, side_id, pair_id, code, _updated in wanted:
            issue = keys.get((side_id, pair_id or ""), "")
            where = f"issue {issue}" if issue else f"a new issue from the partner (pair {pair_id})"
            text = f"{where}: message {message_id} went to ERROR ({code})"
            findings.append(Finding(sides[side_id].sync_key, ISSUE_ERROR, str(message_id), text))
        return findings

    def _conditions(self, keys: list[str], now: datetime) -> list[Finding]:
        """What holds now for these synchronizations: a stop by a failure, an unreachable
        partner, a draft received or declined, a key near its expiry (a few queries per 500)."""
        findings: list[Finding] = []
        for chunk in _chunks(keys):
            with self.i.db.session() as s:
                syncs = {
                    row.key: row
                    for row in s.exec(select(Synchronization).where(col(Synchronization.key).in_(chunk)))
                }
                sides: dict[str, list[SideRow]] = {}
                for row in s.exec(select(SideRow).where(col(SideRow.sync_key).in_(chunk))):
                    sides.setdefault(row.sync_key, []).append(row)
                side_ids = [row.id for rows in sides.values() for row in rows]
                failing_since = dict(
                    s.exec(
                        select(Message.side_id, func.min(Message.created))
                        .where(Message.folder == Folder.SEND_ERROR, col(Message.side_id).in_(side_ids))
                        .group_by(col(Message.side_id))
                    ).all()
                )
            for key in chunk:
                sync = syncs.get(key)
                if sync is None:
                    self._forget(key)
                    continue
                active = list(findings_of(sync, sides.get(key, []), failing_since, now))
                self._clear_gone(key, {finding.kind for finding in active})
                findings += active
        return findings

    def _deliver(self, findings: list[Finding], now: datetime, *, sweep: bool) -> int:
        """Mail what was not told yet, one mail per synchronization and kind (an hour apart);
        issue errors held back by the limit go out with the next sweep after it."""
        assert self._states is not None
        grouped: dict[tuple[str, str], list[Finding]] = {}
        for finding in findings:
            state = self._states.get(finding.sync_key, {})
            if finding.kind != ISSUE_ERROR and state.get(finding.kind) == finding.token:
                continue
            grouped.setdefault((finding.sync_key, finding.kind), []).append(finding)
        if sweep:
            for key, state in list(self._states.items()):
                for kind in state.get("pending", {}):
                    grouped.setdefault((key, kind), [])
        return sum(self._tell(key, kind, group, now) for (key, kind), group in sorted(grouped.items()))

    def _tell(self, key: str, kind: str, group: list[Finding], now: datetime) -> int:
        """Mail one synchronization's recipients about one kind, unless told within the hour."""
        assert self._states is not None
        state = dict(self._states.get(key, {}))
        pending: dict[str, list[str]] = dict(state.get("pending", {}))
        lines = pending.pop(kind, []) + [finding.text for finding in group]
        recipients = self._recipients.get(key, [])
        sent = bool(lines and recipients) and self._send(key, kind, lines, recipients, now)
        if sent and group and kind != ISSUE_ERROR:
            state[kind] = group[-1].token
        elif not sent and kind == ISSUE_ERROR and lines and recipients:
            pending[kind] = lines[:50]
        state["pending"] = pending
        self._save_state(key, state)
        return 1 if sent else 0

    def _send(self, key: str, kind: str, lines: list[str], recipients: list[str], now: datetime) -> bool:
        """Whether the mail went out: not within the hour, by a working account."""
        if self._told_within(key, kind, now):
            return False
        try:
            sync, sides = self._sync_and_sides(key)
        except BackboneError:
            return False
        account = self._account_for(sync, sides)
        if account is None:
            if key not in self._unsendable:
                self._unsendable.add(key)
                log.warning("%s: no account to send notifications by (set one: backbone notify smtp)", key)
            return False
        self._unsendable.discard(key)
        account_id = (account.host, account.port, account.username)
        if self._retry_at.get(account_id, now) > now:
            return False
        title, action = KINDS[kind]
        text = lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")
        body = "\n".join(
            [
                f"Synchronization: {key} ({one_line(sync.name)})",
                f"What happened: {title}",
                f"Detail: {text}",
                *[f"Also: {line}" for line in lines[1:10]],
                "",
                f"What to do: {action.replace('KEY', key)}",
                "",
                "Backbone TUI sends at most one mail of this kind per synchronization and hour.",
                "",
            ]
        )
        try:
            send_mail(account, recipients, f"Backbone TUI: {key}: {title}", body)
        except MailError as exc:
            self._retry_at[account_id] = now + timedelta(seconds=RETRY_SECONDS)
            log.warning("%s: the %s notification could not be sent: %s", key, kind, exc)
            return False
        self._retry_at.pop(account_id, None)
        with self.i.db.write() as s:
            s.add(Notification(sync_key=key, kind=kind, at=now, recipients=json.dumps(recipients), text=text))
        log.info("%s: %s told to %d recipient(s)", key, kind, len(recipients))
        return True

    def _told_within(self, key: str, kind: str, now: datetime) -> bool:
        with self.i.db.session() as s:
            last = s.exec(
                select(func.max(Notification.at)).where(
                    Notification.sync_key == key, Notification.kind == kind
                )
            ).one()
        return last is not None and now - last < LIMIT

    def _clear_gone(self, key: str, active: set[str]) -> None:
        """Forget what was told of a condition that no longer holds: its next occurrence is told."""
        assert self._states is not None
        state = self._states.get(key)
        if not state:
            return
        gone = [kind for kind in state if kind != "pending" and kind not in active]
        if gone:
            self._save_state(key, {k: v for k, v in state.items() if k not in gone})

    def _forget(self, key: str) -> None:
        assert self._states is not None
        if self._states.pop(key, None) is not None:
            with self.i.db.write() as s:
                row = s.get(Setting, STATE_PREFIX + key)
                if row is not None:
                    s.delete(row)

    def _save_state(self, key: str, state: dict[str, Any]) -> None:
        assert self._states is not None
        if not state.get("pending"):
            state.pop("pending", None)
        if self._states.get(key) == state:
            return
        self._states[key] = state
        self._write_setting(STATE_PREFIX + key, json.dumps(state, sort_keys=True))

    def _write_setting(self, name: str, value: str) -> None:
        with self.i.db.write() as s:
            row = s.get(Setting, name)
            if row is None:
                s.add(Setting(name=name, value=value))
            else:
                row.value = value
                s.add(row)

    # -- sending -----------------------------------------------------------------------------

    def _sync_and_sides(self, key: str) -> tuple[Synchronization, list[SideRow]]:
        with self.i.db.session() as s:
            sync = s.get(Synchronization, key)
            sides = list(s.exec(select(SideRow).where(SideRow.sync_key == key).order_by(col(SideRow.id))))
        if sync is None:
            raise BackboneError(f"synchronization {key} does not exist")
        return sync, sides

    def _require_sync(self, key: str) -> None:
        with self.i.db.session() as s:
            if s.get(Synchronization, key) is None:
                raise BackboneError(f"synchronization {key} does not exist")

    def _account_for(self, sync: Synchronization, sides: list[SideRow]) -> SmtpSettings | None:
        """An email synchronization's own send account; the installation's for the others."""
        if sync.protocol == Protocol.EMAIL:
            for side in sides:
                if side.mail_settings:
                    settings = MailSettings.from_dict(json.loads(side.mail_settings)).send
                    password = os.environ.get(_env_name(sync.key, "SMTP"))
                    if password is not None:
                        settings.password = password
                    return settings
        return self.account()


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
