"""Support ZIP: what a support engineer needs about one synchronization, and nothing secret.

Holds configuration, statuses, folder counts, message headers (no bodies), logs and versions.
Never pairing secrets, passwords, private keys, message payloads or issue contents.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import defer
from sqlmodel import col, select

from engine.errors import BackboneError
from engine.service.installation import Installation, public_mail
from engine.store.models import History, Message, SyncSide
from engine.vocab import ALL_FOLDERS

SUPPORT_FORMAT = 1
LOG_TAIL_BYTES = 2_000_000
PACKAGES = (
    "backbone-tui",
    "textual",
    "sqlmodel",
    "sqlalchemy",
    "pydantic",
    "python-gnupg",
    "imapclient",
    "watchdog",
    "rich",
)
_SECRET_ASSIGNMENT = re.compile(
    r"(?im)^(\s*[\"']?[\w.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|private[_-]?key)"
    r"[\w.-]*[\"']?\s*[=:]\s*)(.+)$"
)
_SECRET_INLINE = re.compile(r"(?i)\b(password|passwd|passphrase|secret|token)=(\S+)")
_PRIVATE_BLOCK = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY[A-Z ]*-----.*?(-----END [A-Z ]*PRIVATE KEY[A-Z ]*-----|\Z)",
    re.DOTALL,
)
REDACTED = "***REDACTED***"


def redact(text: str) -> str:
    """The text with secret-looking assignments and private key blocks replaced."""
    text = _PRIVATE_BLOCK.sub(f"[private key {REDACTED}]", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    return _SECRET_INLINE.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def default_zip_name(key: str, now: datetime) -> str:
    return f"support-{key}-{now:%Y%m%dT%H%M%S}.zip"


def create_support_zip(
    inst: Installation, key: str, output: Path | None = None, *, now: datetime | None = None
) -> Path:
    """Write the support ZIP of synchronization `key` and return its path.

    `output` may be a file (which must not exist) or a folder; the default is
    `<home>/support/support-KEY-YYYYmmddTHHMMSS.zip`.
    """
    moment = now or datetime.now(UTC)
    info = inst.sync_info(key)  # raises BackboneError for an unknown key
    if output is None:
        target = inst.paths.root / "support" / default_zip_name(key, moment)
    elif output.is_dir():
        target = output / default_zip_name(key, moment)
    else:
        target = output
    if target.exists():
        raise BackboneError(f"{target} exists already; choose another file")
    target.parent.mkdir(parents=True, exist_ok=True)

    entries = _entries(inst, key, info.to_json(), moment)
    fd, temp_name = tempfile.mkstemp(prefix=".support-", suffix=".zip", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries.items():
                archive.writestr(
                    zipfile.ZipInfo(f"{key}/{name}", _zip_time(moment)),
                    data,
                    compress_type=zipfile.ZIP_DEFLATED,
                )
        os.chmod(temp_name, 0o600)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    return (max(moment.year, 1980), moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def _entries(inst: Installation, key: str, sync_json: dict[str, Any], moment: datetime) -> dict[str, str]:
    with inst.db.session() as s:
        sides = s.exec(select(SyncSide).where(SyncSide.sync_key == key).order_by(col(SyncSide.id))).all()
        side_ids = [side.id for side in sides]
        messages = s.exec(
            select(Message)
            .options(defer(Message.payload))  # type: ignore[arg-type]
            .where(col(Message.side_id).in_(side_ids))
            .order_by(col(Message.id))
        ).all()
        history = s.exec(
            select(History)
            .options(defer(History.text))  # type: ignore[arg-type]
            .where(col(History.side_id).in_(side_ids))
            .order_by(col(History.id))
        ).all()
        s.expunge_all()
    folder_by_side = {side.id: side.folder for side in sides}
    accounts = {info.name: info.to_json() for info in inst.trackers.accounts()}
    entries: dict[str, str] = {}
    side_json = []
    counts: dict[str, dict[str, Any]] = {}
    for side in sides:
        side_json.append(
            {
                "id": side.id,
                "project": side.project,
                "tracker": accounts.get(side.tracker, {"name": side.tracker, "missing": True}),
                "folder": side.folder,
                "role": side.role,
                "endpoint": side.endpoint,
                "partner_endpoint": side.partner_endpoint,
                "partner_project": side.partner_project,
                "exchange": side.exchange,
                "change_log_cursor": side.cursor,
                "config_version": side.config_version,
                "pairing_pending": bool(side.pairing_secret),
                "mail": public_mail(side.mail_settings),
                "channel_error": redact(side.channel_error),
            }
        )
        entries[f"config/{side.folder}.toml"] = redact(side.config_text)
        database = {name: 0 for name in ALL_FOLDERS}
        for row in messages:
            if row.side_id == side.id:
                database[row.folder] = database.get(row.folder, 0) + 1
        root = inst.paths.data / key / side.folder
        on_disk = {name: _count_files(root / name) for name in ALL_FOLDERS}
        counts[side.folder] = {"database": database, "files_on_disk": on_disk}
    entries["synchronization.json"] = _json({**sync_json, "sides": side_json})
    entries["folders.json"] = _json(counts)
    entries["messages.json"] = _json(
        [
            {
                "id": row.id,
                "side": folder_by_side.get(row.side_id),
                "direction": row.direction,
                "uuid": row.uuid,
                "type": row.type,
                "issue_pair": row.pair_id,
                "epoch": row.epoch,
                "seq": row.seq,
                "folder": row.folder,
                "hold": row.hold,
                "file_name": row.file_name,
                "original_name": row.original_name,
                "size": row.size,
                "reason_code": row.reason_code,
                "reason_text": redact(row.reason_text),
                "attempts": row.attempts,
                "created": row.created,
                "updated": row.updated,
            }
            for row in messages
        ]
    )
    entries["history.json"] = _json(
        [
            {
                "side": folder_by_side.get(row.side_id),
                "at": row.at,
                "kind": row.kind,
                "issue_pair": row.pair_id,
            }
            for row in history
        ]
    )
    for log_file in sorted(inst.paths.logs.glob("*.log*")):
        if log_file.is_file():
            entries[f"logs/{log_file.name}"] = redact(_tail(log_file, LOG_TAIL_BYTES))
    entries["environment.json"] = _json(_environment(inst))
    entries["manifest.json"] = _json(
        {
            "format": SUPPORT_FORMAT,
            "synchronization": key,
            "created": moment.isoformat(),
            "installation": inst.id,
            "files": sorted([*entries, "manifest.json"]),
            "excluded": [
                "message bodies",
                "issue contents",
                "attachments",
                "pairing secrets",
                "passwords",
                "private keys",
                "the database",
                "the key ring",
            ],
        }
    )
    return entries


def _count_files(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for path in folder.rglob("*") if path.is_file())


def _tail(path: Path, limit: int) -> str:
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - limit))
        data = handle.read()
    prefix = f"[first {size - limit} bytes left out]\n" if size > limit else ""
    return prefix + data.decode("utf-8", errors="replace")


def _environment(inst: Installation) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    database = inst.paths.database
    return {
        "python": sys.version,
        "platform": platform.platform(),
        "packages": versions,
        "home": str(inst.paths.root),
        "database_bytes": database.stat().st_size if database.exists() else None,
        "engine_lock_holder_pid": inst.lock.holder_pid(),
    }
