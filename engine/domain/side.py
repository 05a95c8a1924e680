"""One synchronization side as the pipeline uses it, detached from the database."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.domain.folders import SideFolders
from engine.domain.settings import SyncSettings
from engine.vocab import SyncStatus


@dataclass
class SideCtx:
    """One synchronization side with what the pipeline needs, detached from the database."""

    id: int
    sync_key: str
    project: str
    folder: str
    role: str
    endpoint: str
    partner_endpoint: str
    partner_project: str
    exchange: Path | None
    cursor: int
    config_version: int
    config_text: str
    sync_user: str
    status: str
    protocol: str
    folders: SideFolders
    pairing_secret: str = ""
    partner_side_id: int | None = None
    encryption: bool = False
    own_fingerprint: str = ""
    partner_fingerprint: str = ""
    mail_settings: str = ""
    channel_error: str = ""
    settings: SyncSettings = field(default_factory=SyncSettings)
    tracker: str = "embedded"  # the tracker its project lives in (a TrackerAccount name)

    @property
    def running(self) -> bool:
        return self.status == SyncStatus.RUNNING

    @property
    def marker_prefix(self) -> str:
        return f"backbone:{self.sync_key}:"

    def marker(self, pair_id: str) -> str:
        return self.marker_prefix + pair_id


def side_failure(text: str) -> dict[str, Any]:
    """A side's stored failure (the tracker change that stopped it): {} when none or unreadable."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
