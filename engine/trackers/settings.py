"""How to reach one remote tracker (a `TrackerAccount` row, detached), as a connector takes it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

EMBEDDED = "embedded"  # the name of the home's own tracker: always there, needs no account
KINDS = ("jira", "redmine")
AUTHS = {"jira": ("token", "basic", "pat"), "redmine": ("apikey",)}  # each kind's first is its default
DEFAULT_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class TrackerSettings:
    """A remote tracker's address and credentials; `secret` never leaves the process."""

    name: str
    kind: str  # jira | redmine
    url: str  # without a trailing slash
    api_version: int  # Jira 2 or 3; Redmine 0
    auth: str  # basic | token | pat | apikey
    user: str
    secret: str = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def poll_interval(self) -> float:
        """Seconds between two looks for changes (one detection query per project and look)."""
        value = self.options.get("poll_interval", DEFAULT_POLL_SECONDS)
        return float(value) if isinstance(value, int | float) and value > 0 else DEFAULT_POLL_SECONDS

    @classmethod
    def from_row(cls, row: Any) -> TrackerSettings:
        """From a `TrackerAccount` row (or anything with its names)."""
        try:
            options = json.loads(row.options or "{}")
        except ValueError:
            options = {}
        return cls(
            row.name,
            row.kind,
            row.url.rstrip("/"),
            row.api_version,
            row.auth,
            row.user,
            row.secret,
            options if isinstance(options, dict) else {},
        )
