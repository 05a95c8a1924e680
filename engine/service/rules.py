"""The service layer's constants and the checks of what a user types (names, users, protocols)."""

from __future__ import annotations

__all__ = [
    "SCHEMA_VERSION",
    "SCHEMA_SETTING",
    "HANDSHAKE_FORMAT",
    "HANDSHAKE_KIND",
    "PROTOCOLS",
    "KEY_WARNING_DAYS",
    "KEY_LIFETIME_DAYS",
    "MAX_HANDSHAKE_BYTES",
    "SYNC_KEY",
    "_env_name",
    "_handshake_target",
    "_plausible_address",
    "_canonical",
    "_check_protocol",
    "_check_user",
    "_check_name",
]

import json
import re
from pathlib import Path
from typing import Any

from engine.channels.email import line_safe
from engine.errors import FieldError
from engine.vocab import Protocol

SCHEMA_VERSION = 3
SCHEMA_SETTING = "schema.version"
HANDSHAKE_FORMAT = 1
HANDSHAKE_KIND = "backbone-handshake"
PROTOCOLS: tuple[str, ...] = tuple(Protocol)
KEY_WARNING_DAYS = 30
KEY_LIFETIME_DAYS = 730
MAX_HANDSHAKE_BYTES = 1 << 20
SYNC_KEY = re.compile(r"^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$")  # it names a folder: nothing else gets in


def _env_name(key: str, part: str) -> str:
    return "BACKBONE_" + re.sub(r"[^A-Z0-9]", "_", key.upper()) + f"_{part}_PASSWORD"


def _handshake_target(path: str | Path) -> Path:
    """Where a handshake file may be written: a new file in an existing folder."""
    out = Path(path).absolute()
    if out.exists():
        raise FieldError("handshake_out", f"handshake file {out} exists already; choose another name")
    if not out.parent.is_dir():
        raise FieldError("handshake_out", f"handshake file {out}: the folder {out.parent} does not exist")
    return out


def _plausible_address(address: str) -> bool:
    return address == "" or (
        len(address) <= 320
        and "@" in address
        and line_safe(address)
        and not any(c in address for c in " <>,")
    )


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _check_protocol(protocol: str, allowed: tuple[str, ...]) -> None:
    if protocol not in PROTOCOLS:
        raise FieldError("protocol", f"{protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if protocol not in allowed:
        raise FieldError("protocol", f"{protocol}: not available yet in this version (use file)")


def _check_user(user: str) -> None:
    if not user or len(user) > 64 or not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise FieldError("user", f"{user!r}: expected a user name (letters, digits, - _ .)")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 120:
        raise FieldError("name", "expected 1-120 characters")
    return name
