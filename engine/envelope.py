"""The message envelope (SPEC section 4) and the codec that seals it into a `.bac` file."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import RejectedError

FORMAT = 1
CONTROL_TYPES = frozenset({"HANDSHAKE", "DECLINE", "PING", "CONFIG", "CONFIG_ACK", "CONFIG_DECLINE"})
ISSUE_TYPES = frozenset({"ISSUE", "RESYNC"})
OTHER_TYPES = frozenset({"RESEND", "ACK"})
MESSAGE_TYPES = CONTROL_TYPES | ISSUE_TYPES | OTHER_TYPES
PAIR_ID = re.compile(r"^[0-9a-f]{32}$")
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_SEQ = 2**53


@dataclass(frozen=True)
class Envelope:
    """One message; `sender`/`recipient` are `from`/`to` on the wire."""

    sync: str
    sender: str
    recipient: str
    id: str
    type: str
    created: str
    config: int = 0
    issue: str | None = None
    epoch: int = 0
    seq: int = 0
    body: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT

    def to_json(self) -> str:
        data = {  # not dataclasses.asdict: it deep-copies the body first
            "sync": self.sync,
            "from": self.sender,
            "to": self.recipient,
            "id": self.id,
            "type": self.type,
            "created": self.created,
            "config": self.config,
            "issue": self.issue,
            "epoch": self.epoch,
            "seq": self.seq,
            "body": self.body,
            "format": self.format,
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        """Parse and validate; a `RejectedError` names the field and what was expected."""
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RejectedError("ENVELOPE_INVALID", f"not a JSON envelope ({exc})") from None
        if not isinstance(data, dict):
            raise RejectedError("ENVELOPE_INVALID", "envelope: expected a JSON object")
        if data.get("format") != FORMAT:
            raise RejectedError(
                "FORMAT_UNSUPPORTED", f"field 'format': expected {FORMAT}, got {data.get('format')!r}"
            )
        expected = {
            "sync": str,
            "from": str,
            "to": str,
            "id": str,
            "type": str,
            "created": str,
            "config": int,
            "epoch": int,
            "seq": int,
            "body": dict,
        }
        for name, kind in expected.items():
            value = data.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise RejectedError(
                    "ENVELOPE_INVALID",
                    f"field {name!r}: expected {kind.__name__}, got {type(value).__name__}",
                )
        unknown = set(data) - set(expected) - {"format", "issue"}
        if unknown:
            raise RejectedError("ENVELOPE_INVALID", f"unknown fields {sorted(unknown)}")
        if data["type"] not in MESSAGE_TYPES:
            raise RejectedError("ENVELOPE_INVALID", f"field 'type': unknown type {data['type']!r}")
        if not UUID_TEXT.match(data["id"]):
            raise RejectedError("ENVELOPE_INVALID", "field 'id': expected a lower-case UUID")
        issue = data.get("issue")
        if data["type"] in ISSUE_TYPES:
            if not isinstance(issue, str) or not PAIR_ID.match(issue):
                raise RejectedError("ENVELOPE_INVALID", "field 'issue': expected a 32-hex pair id")
            if not (1 <= data["epoch"] < MAX_SEQ and 1 <= data["seq"] < MAX_SEQ):
                raise RejectedError("ENVELOPE_INVALID", "fields 'epoch'/'seq': expected positive numbers")
        elif issue is not None:
            raise RejectedError("ENVELOPE_INVALID", f"field 'issue': a {data['type']} has no issue")
        return cls(
            sync=data["sync"],
            sender=data["from"],
            recipient=data["to"],
            id=data["id"],
            type=data["type"],
            created=data["created"],
            config=data["config"],
            issue=issue,
            epoch=data["epoch"],
            seq=data["seq"],
            body=data["body"],
        )


class Codec(Protocol):
    """Turns an envelope into the bytes of a `.bac` file and back (where trust is checked)."""

    def seal(self, envelope_json: str) -> bytes: ...
    def seal_many(self, envelope_jsons: Sequence[str]) -> bytes: ...
    def open(self, data: bytes) -> str: ...


class PlainCodec:
    """Encryption off: the `.bac` file is the envelope's JSON."""

    def seal(self, envelope_json: str) -> bytes:
        return envelope_json.encode()

    def seal_many(self, envelope_jsons: Sequence[str]) -> bytes:
        return bundle_text(envelope_jsons).encode()

    def open(self, data: bytes) -> str:
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise RejectedError("ENVELOPE_INVALID", "not UTF-8 text (an encrypted message?)") from None


def bundle_text(envelope_jsons: Sequence[str]) -> str:
    """Several envelopes as one payload, `{"bundle": [ENVELOPE-JSON-TEXT, ...]}`."""
    return json.dumps({"bundle": list(envelope_jsons)}, separators=(",", ":"))


def split_bundle(plaintext: str) -> list[str]:
    """The envelope JSON texts in an opened plaintext: a bundle's items, else the text itself."""
    try:
        data = json.loads(plaintext)
    except ValueError:
        return [plaintext]
    if not isinstance(data, dict) or "bundle" not in data:
        return [plaintext]
    items = data["bundle"]
    if set(data) != {"bundle"} or not isinstance(items, list):
        raise RejectedError("ENVELOPE_INVALID", 'bundle: expected {"bundle": [texts]}')
    if not all(isinstance(item, str) for item in items):
        raise RejectedError("ENVELOPE_INVALID", "bundle: every item must be an envelope's JSON text")
    return list(items)
