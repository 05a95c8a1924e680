"""The advanced settings of one synchronization: each with its default, unit and valid range.

Stored as JSON of the values an administrator changed (`Synchronization.settings`); everything
else takes the default. The engine reads them with the sides, so a change takes effect within a
second, without a restart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.errors import FieldError


@dataclass(frozen=True)
class Setting:
    """One advanced setting: what it is, its default, unit and valid range."""

    name: str
    default: float
    unit: str
    help: str
    minimum: float = 0
    maximum: float = 10**9
    integer: bool = True

    def parse(self, text: str) -> float:
        """The value `text` names; `FieldError` naming the setting and what was expected."""
        try:
            value = float(text.strip())
        except ValueError:
            raise FieldError(self.name, f"{text!r}: expected a number of {self.unit}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise FieldError(self.name, f"{text!r}: expected a finite number of {self.unit}")
        if self.integer and value != int(value):
            raise FieldError(self.name, f"{text!r}: expected a whole number of {self.unit}")
        if not self.minimum <= value <= self.maximum:
            bounds = f"from {_text(self.minimum)} to {_text(self.maximum)}"
            raise FieldError(self.name, f"{text!r}: expected {self.unit} {bounds}")
        return int(value) if self.integer else value


DAY = 86_400
SETTINGS: tuple[Setting, ...] = (
    Setting("resend_after", 600, "seconds", "a sequence gap older than this asks the partner to resend", 5),
    Setting("ack_interval", 60, "seconds", "acknowledgements are batched for this long", 0, DAY),
    Setting("retention_sent", 30, "days", "acknowledged SENT messages are deleted after this", 0, 36_500),
    Setting("retention_processed", 30, "days", "PROCESSED messages are deleted after this", 0, 36_500),
    Setting("max_lifetime", 7, "days", "a sent message unacknowledged by then is shown by Analyze", 1, 3_650),
    Setting("send_interval", 0, "seconds", "outgoing messages wait this long to travel together", 0, DAY),
    Setting(
        "scan_interval",
        2,
        "seconds",
        "the periodic scan of the exchange folder",
        0.1,
        3_600,
        integer=False,
    ),
    Setting("mail_idle", 30, "seconds", "an IMAP IDLE is issued again after this", 5, 1_740),
    Setting("max_message_bytes", 64 * 1024 * 1024, "bytes", "a larger arriving file is refused", 1024, 2**31),
    Setting("unreachable_after", 3600, "seconds", "the partner counts as unreachable after this", 60),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class SyncSettings:
    """The settings of one synchronization in force: the stored changes over the defaults."""

    changed: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_json(cls, text: str) -> SyncSettings:
        """What is stored; an unknown name or a value out of range (an older or newer version
        wrote it) is left out, so the default applies."""
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        changed = []
        for name, value in sorted(data.items()):
            setting = BY_NAME.get(name)
            if setting is None or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            try:
                changed.append((name, setting.parse(str(value))))
            except FieldError:
                continue
        return cls(tuple(changed))

    def get(self, name: str) -> float:
        """The value of `name` in force (KeyError for a name no setting has)."""
        for changed_name, value in self.changed:
            if changed_name == name:
                return value
        return BY_NAME[name].default

    def with_changes(self, assignments: dict[str, str]) -> SyncSettings:
        """These settings with `NAME=VALUE` texts applied; `FieldError` for an unknown name or a
        value out of range, naming it. A value equal to the default removes the change."""
        values = dict(self.changed)
        for name, text in assignments.items():
            setting = BY_NAME.get(name)
            if setting is None:
                raise FieldError(name, f"no such setting; expected one of {', '.join(BY_NAME)}")
            value = setting.parse(text)
            if value == setting.default:
                values.pop(name, None)
            else:
                values[name] = value
        return SyncSettings(tuple(sorted(values.items())))

    def to_json(self) -> str:
        return json.dumps(dict(self.changed), sort_keys=True)

    def rows(self) -> list[dict[str, Any]]:
        """Every setting: name, value, default, unit, whether changed, and what it does."""
        stored = dict(self.changed)
        return [
            {
                "name": setting.name,
                "value": stored.get(setting.name, _number(setting.default, setting.integer)),
                "default": _number(setting.default, setting.integer),
                "unit": setting.unit,
                "changed": setting.name in stored,
                "help": setting.help,
            }
            for setting in SETTINGS
        ]


def _number(value: float, integer: bool) -> float:
    return int(value) if integer else value


def _text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)
