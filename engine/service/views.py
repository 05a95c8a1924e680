"""What the service layer hands to screens and scripts: plain data, one JSON shape for the
CLI and (later) the REST API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.service.rules import KEY_WARNING_DAYS
from engine.trackers.base import utcnow
from engine.vocab import ERROR_FOLDERS, PENDING_FOLDERS, Role


@dataclass(frozen=True)
class SyncInfo:
    """A synchronization as a screen or a script sees it (plain data, no database row)."""

    key: str
    name: str
    description: str
    role: str
    protocol: str
    status: str
    status_detail: str
    draft_state: str
    local_project: str
    partner_project: str
    sync_user: str
    encryption: bool
    review: bool
    created: datetime
    last_activity: datetime | None
    folder_counts: dict[str, int] = field(default_factory=dict)
    own_fingerprint: str = ""
    partner_fingerprint: str = ""
    own_key_expires: datetime | None = None
    partner_key_expires: datetime | None = None
    channel_error: str = ""
    tracker_error: str = ""  # a side's tracker refused the credentials: which, and what it said
    mail: dict[str, Any] = field(default_factory=dict)  # settings without passwords
    exchange: str = ""  # the file protocol's exchange folder
    config_version: int = 0  # the configuration version in force (0: none yet)
    pending_version: int = 0  # published and not acknowledged, or received and not bound
    partner_message: str = ""  # the primary's message with the version pending here
    draft_edited: bool = False  # a side holds a draft beside the version in force (not published yet)

    def key_warning(self, now: datetime | None = None) -> str:
        """A warning when a key of this synchronization expires within 30 days (or has)."""
        now = now or utcnow()
        for who, expires in (
            ("this installation's", self.own_key_expires),
            ("the partner's", self.partner_key_expires),
        ):
            if expires is None:
                continue
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=now.tzinfo)
            if expires <= now:
                return f"{who} key expired on {expires:%Y-%m-%d}"
            if expires - now <= timedelta(days=KEY_WARNING_DAYS):
                return f"{who} key expires on {expires:%Y-%m-%d} (in {(expires - now).days} days)"
        return ""

    @property
    def errors(self) -> int:
        """Messages in the error folders (ERROR, REJECTED, SEND_ERROR)."""
        return sum(self.folder_counts.get(name, 0) for name in ERROR_FOLDERS)

    @property
    def pending(self) -> int:
        """Messages still to be sent or applied."""
        return sum(self.folder_counts.get(name, 0) for name in PENDING_FOLDERS)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape the CLI's --json and the REST API share."""
        return {
            "key": self.key,
            "name": self.name,
            "description": self.description,
            "role": self.role,
            "protocol": self.protocol,
            "status": self.status,
            "status_detail": self.status_detail,
            "draft_state": self.draft_state,
            "local_project": self.local_project,
            "partner_project": self.partner_project,
            "sync_user": self.sync_user,
            "encryption": self.encryption,
            "review": self.review,
            "created": self.created.isoformat(),
            "last_activity": self.last_activity.isoformat() if self.last_activity else None,
            "errors": self.errors,
            "pending": self.pending,
            "folders": self.folder_counts,
            "own_fingerprint": self.own_fingerprint,
            "partner_fingerprint": self.partner_fingerprint,
            "own_key_expires": _iso(self.own_key_expires),
            "partner_key_expires": _iso(self.partner_key_expires),
            "key_warning": self.key_warning(),
            "channel_error": self.channel_error,
            "tracker_error": self.tracker_error,
            "mail": self.mail,
            "exchange": self.exchange,
            "config": {
                "in_force": self.config_version,
                "pending": self.pending_version,
                "partner_message": self.partner_message,
            },
        }


@dataclass(frozen=True)
class MessageInfo:
    id: int
    direction: str
    type: str
    issue: str | None
    epoch: int
    seq: int
    folder: str
    hold: str | None
    reason_code: str
    reason_text: str
    file: str
    original_name: str | None
    size: int
    updated: datetime
    issue_key: str = ""  # the local issue the message is about ("" : not synced here yet)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape the CLI's --json and the REST API share."""
        data = dict(self.__dict__)
        data["updated"] = self.updated.isoformat()
        return data


def _info(
    sync: Any,
    sides: Sequence[Any],
    counts: dict[str, int],
    *,
    draft_edited: bool = False,
    tracker_problems: dict[str, str] | None = None,
) -> SyncInfo:
    """A synchronization's view from its row and its sides' rows (ORM objects or plain rows with
    the same names); `tracker_problems`: tracker name -> its refused credentials."""
    problems = tracker_problems or {}
    tracker_error = "; ".join(
        sorted(
            {
                f"tracker {side.tracker}: {problems[side.tracker]}"
                for side in sides
                if side.tracker in problems
            }
        )
    )
    first = sides[0] if sides else None
    partner = sides[1].project if len(sides) > 1 else (first.partner_project if first else "")
    return SyncInfo(
        key=sync.key,
        name=sync.name,
        description=sync.description,
        role=sync.role,
        protocol=sync.protocol,
        status=sync.status,
        status_detail=sync.status_detail,
        draft_state=sync.draft_state,
        local_project=first.project if first else "",
        partner_project=partner,
        sync_user=sync.sync_user,
        encryption=sync.encryption,
        review=sync.review,
        created=sync.created,
        last_activity=sync.last_activity,
        folder_counts=counts,
        own_fingerprint=first.own_fingerprint if first else "",
        partner_fingerprint=first.partner_fingerprint if first else "",
        own_key_expires=first.own_key_expires if first else None,
        partner_key_expires=first.partner_key_expires if first else None,
        channel_error=first.channel_error if first else "",
        tracker_error=tracker_error,
        mail=public_mail(first.mail_settings) if first else {},
        exchange=first.exchange if first and first.exchange else "",
        config_version=first.config_version if first else 0,
        pending_version=max((side.pending_version for side in sides), default=0),
        partner_message=next(
            (s.pending_message for s in sides if s.role == Role.SECONDARY and s.pending_version), ""
        ),
        draft_edited=draft_edited,
    )


def public_mail(stored: str) -> dict[str, Any]:
    """Mail settings fit to show: everything but the passwords."""
    if not stored:
        return {}
    data = json.loads(stored)
    for part in ("receive", "send"):
        data.get(part, {}).pop("password", None)
    return dict(data)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
