"""What Analyze hands to a screen or a script: findings with their fixes, and folder scans (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from engine.service.troubleshooting import ACTION_LABELS


class Severity(StrEnum):
    """How much a finding matters: errors stop synchronizing, warnings will or delay it."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Fix:
    """An action that fixes a finding: its machine name, a label, and the command that does it."""

    name: str
    label: str
    command: str = ""  # "" : no command does it (yet); the label says what to do

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "label": self.label, "command": self.command}


@dataclass(frozen=True)
class Finding:
    """One thing Analyze found: how bad, a reason code, a line naming what and where, the fixes."""

    severity: str
    reason: str
    text: str
    side: str = ""  # the side's folder (e.g. ACME-1); "" : the whole synchronization
    since: datetime | None = None
    issues: tuple[str, ...] = ()  # the issues the fixes act on (local keys, else pair ids)
    fixes: tuple[Fix, ...] = ()

    @property
    def is_problem(self) -> bool:
        return self.severity != Severity.INFO

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "reason": self.reason,
            "text": self.text,
            "side": self.side,
            "since": self.since.isoformat() if self.since else None,
            "issues": list(self.issues),
            "fixes": [fix.to_json() for fix in self.fixes],
        }


@dataclass(frozen=True)
class FolderScan:
    """One folder of one side: how many messages, since when the oldest waits, and why."""

    side: str
    folder: str
    count: int
    oldest: datetime | None
    reasons: tuple[tuple[str, int], ...] = ()  # (reason code, count), most first; "" : none

    def to_json(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "folder": self.folder,
            "count": self.count,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "reasons": dict(self.reasons),
        }


@dataclass(frozen=True)
class Analysis:
    """What Analyze found for one synchronization: findings, problems first, and its folders."""

    key: str
    name: str
    status: str
    status_detail: str
    findings: tuple[Finding, ...]
    folders: tuple[FolderScan, ...]
    at: datetime
    channel_checked: bool = False  # the channel was tried for real (log-in, probe file)
    problems: tuple[Finding, ...] = field(init=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.findings, key=lambda f: SEVERITY_ORDER.get(Severity(f.severity), 3)))
        object.__setattr__(self, "findings", ordered)
        object.__setattr__(self, "problems", tuple(f for f in ordered if f.is_problem))

    @property
    def worst(self) -> str:
        """The most severe finding's severity ("info" when nothing is wrong)."""
        return self.findings[0].severity if self.findings else Severity.INFO

    def to_json(self) -> dict[str, Any]:
        """The JSON shape the CLI's --json and the REST API share."""
        return {
            "key": self.key,
            "name": self.name,
            "status": self.status,
            "status_detail": self.status_detail,
            "at": self.at.isoformat(),
            "worst": self.worst,
            "problems": len(self.problems),
            "channel_checked": self.channel_checked,
            "findings": [finding.to_json() for finding in self.findings],
            "folders": [scan.to_json() for scan in self.folders],
        }


@lru_cache(maxsize=4096)
def fix_for(name: str, command: str) -> Fix:
    return Fix(name, ACTION_LABELS.get(name, name), command)


#: action -> the command that does it for one issue ({key}, {issue})
ISSUE_COMMANDS = {
    "retry": "backbone messages retry {key} --issue {issue}",
    "skip": "backbone messages skip {key} --issue {issue} --reason TEXT",
    "resync": "backbone sync resync {key} --issue {issue}",
    "resend": "backbone messages resend {key} --issue {issue}",
    "recreate": "backbone messages recreate {key} --issue {issue}",
    "ignore": "backbone messages ignore {key} --issue {issue} --reason TEXT --yes",
}


@lru_cache(maxsize=4096)
def issue_fix(name: str, key: str, issues: tuple[str, ...]) -> Fix:
    issue = issues[0] if len(issues) == 1 else "ISSUE"
    command = ISSUE_COMMANDS[name].format(key=key, issue=issue)
    if name == "retry" and not issues:
        command = f"backbone messages retry {key}"
    return fix_for(name, command)
