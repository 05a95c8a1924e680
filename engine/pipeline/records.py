"""The records the pipeline steps share: messages to queue, moves to make once committed,
classified arrivals, retry back-off and generated file names."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.domain.envelope import Envelope
from engine.domain.side import SideCtx
from engine.store.models import Message
from engine.vocab import Folder, Reason

if TYPE_CHECKING:
    from engine.pipeline.detect import _OutPair

BATCH = 200  # messages or changes per step pass
SETTLE_SECONDS = 2.0  # a file younger than this may still be written
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
BUNDLE_MAX = 100
APPLY_CHUNK = 50  # messages per apply transaction
LOGGED_FOLDERS = frozenset({Folder.ERROR, Folder.REJECTED, Folder.SEND_ERROR, Folder.OFFLINE, Folder.UNKNOWN})
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0

_Outcome = tuple[Message, str, str | None, str, str]  # row, folder, hold, reason code, reason text


def backoff(attempts: int) -> float:
    """Seconds until the next try: exponential with full jitter, capped."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempts, 16)))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


@dataclass
class Outgoing:
    """A message to queue inside the caller's transaction."""

    type: str
    body: dict[str, Any]
    pair: _OutPair | None = None


@dataclass(frozen=True)
class Queued:
    """An outgoing message just inserted: what its `SEND` file and its event need."""

    id: int
    file_name: str
    data: bytes  # the envelope JSON, as its SEND file holds it
    type: str = ""


@dataclass(frozen=True)
class _Move:
    message_id: int
    file_name: str
    old_folder: str
    old_hold: str | None
    folder: str
    hold: str | None
    code: str
    direction: str = ""
    type: str = ""


@dataclass
class _Classified:
    """Where an arriving message goes; `content` is the bytes to keep for it (None: the file)."""

    folder: str
    envelope: Envelope | None = None
    code: str = ""
    text: str = ""
    payload: str | None = None
    content: bytes | None = None


def _send_failure(side: SideCtx, exc: Exception) -> tuple[str, str]:
    code = getattr(exc, "reason_code", None)
    if code is None:
        code = Reason.EXCHANGE_NOT_WRITABLE if isinstance(exc, OSError) else Reason.ENCRYPTION_FAILED
    if isinstance(exc, OSError) and exc.filename:
        return code, f"{exc.strerror or exc} ({exc.filename})"
    return code, str(exc)


def _generated_name(suffix: str) -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{suffix}"


def _escape(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")[:300]
