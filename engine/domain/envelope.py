"""The message envelope (SPEC section 4) and the codec that seals it into a `.bac` file."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.errors import RejectedError
from engine.vocab import MessageType, Reason

FORMAT = 1
CONTROL_TYPES = frozenset(
    {
        MessageType.HANDSHAKE,
        MessageType.DECLINE,
        MessageType.PING,
        MessageType.CONFIG,
        MessageType.CONFIG_ACK,
        MessageType.CONFIG_DECLINE,
        MessageType.CONFIG_PROPOSAL,
        MessageType.CONFIG_ACCEPT,
    }
)
ISSUE_TYPES = frozenset({MessageType.ISSUE, MessageType.RESYNC})
OTHER_TYPES = frozenset({MessageType.RESEND, MessageType.ACK})
MESSAGE_TYPES = CONTROL_TYPES | ISSUE_TYPES | OTHER_TYPES
PAIR_ID = re.compile(r"^[0-9a-f]{32}$")
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_SEQ = 2**53
MAX_JSON_DEPTH = 32  # an envelope nests about six levels; a bundle one more
MAX_NUMBER_DIGITS = 30
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def load_json(text: str | bytes, what: str) -> Any:
    """JSON from outside, within limits (depth, number size, no NaN, no lone surrogate).

    Raises `RejectedError` (`ENVELOPE_INVALID`) naming `what` and the problem; nothing else."""
    try:
        data = json.loads(
            text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except RecursionError:
        raise RejectedError(
            Reason.ENVELOPE_INVALID, f"{what}: nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as exc:  # also JSONDecodeError, UnicodeDecodeError and the hooks' refusals
        raise RejectedError(Reason.ENVELOPE_INVALID, f"{what}: not valid JSON ({exc})") from None
    sample = text if isinstance(text, str) else text.decode("utf-8", "replace")
    deep = sample.count("{") + sample.count("[") > MAX_JSON_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(sample) is not None
    if deep or surrogates:  # the cheap counts say a walk is needed
        _check_tree(data, what, surrogates)
    return data


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(digits)} digits; at most {MAX_NUMBER_DIGITS}")
    return int(digits)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]!r} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_tree(data: Any, what: str, surrogates: bool) -> None:
    """Depth and text checks without recursion (the data may be as deep as the parser allowed)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = [*node.keys(), *node.values()] if surrogates else node.values()
        elif isinstance(node, list):
            children = node
        else:
            if surrogates and isinstance(node, str):
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    raise RejectedError(
                        Reason.ENVELOPE_INVALID, f"{what}: a text holds a lone surrogate (\\ud800-\\udfff)"
                    ) from None
            continue
        if depth > MAX_JSON_DEPTH:
            raise RejectedError(
                Reason.ENVELOPE_INVALID, f"{what}: nested deeper than {MAX_JSON_DEPTH} levels"
            )
        stack.extend((child, depth + 1) for child in children)


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
        data = load_json(text, "envelope")
        if not isinstance(data, dict):
            raise RejectedError(Reason.ENVELOPE_INVALID, "envelope: expected a JSON object")
        if data.get("format") != FORMAT:
            raise RejectedError(
                Reason.FORMAT_UNSUPPORTED, f"field 'format': expected {FORMAT}, got {data.get('format')!r}"
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
                    Reason.ENVELOPE_INVALID,
                    f"field {name!r}: expected {kind.__name__}, got {type(value).__name__}",
                )
        for name in ("config", "epoch", "seq"):
            if not 0 <= data[name] < MAX_SEQ:
                raise RejectedError(Reason.ENVELOPE_INVALID, f"field {name!r}: expected 0 to {MAX_SEQ - 1}")
        unknown = set(data) - set(expected) - {"format", "issue"}
        if unknown:
            raise RejectedError(Reason.ENVELOPE_INVALID, f"unknown fields {sorted(unknown)}")
        if data["type"] not in MESSAGE_TYPES:
            raise RejectedError(Reason.ENVELOPE_INVALID, f"field 'type': unknown type {data['type']!r}")
        if not UUID_TEXT.match(data["id"]):
            raise RejectedError(Reason.ENVELOPE_INVALID, "field 'id': expected a lower-case UUID")
        issue = data.get("issue")
        if data["type"] in ISSUE_TYPES:
            if not isinstance(issue, str) or not PAIR_ID.match(issue):
                raise RejectedError(Reason.ENVELOPE_INVALID, "field 'issue': expected a 32-hex pair id")
            if not (1 <= data["epoch"] < MAX_SEQ and 1 <= data["seq"] < MAX_SEQ):
                raise RejectedError(
                    Reason.ENVELOPE_INVALID, "fields 'epoch'/'seq': expected positive numbers"
                )
        elif issue is not None:
            raise RejectedError(Reason.ENVELOPE_INVALID, f"field 'issue': a {data['type']} has no issue")
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
            raise RejectedError(Reason.ENVELOPE_INVALID, "not UTF-8 text (an encrypted message?)") from None


def bundle_text(envelope_jsons: Sequence[str]) -> str:
    """Several envelopes as one payload, `{"bundle": [ENVELOPE-JSON-TEXT, ...]}`."""
    return json.dumps({"bundle": list(envelope_jsons)}, separators=(",", ":"))


def split_bundle(plaintext: str) -> list[str]:
    """The envelope JSON texts in an opened plaintext: a bundle's items, else the text itself."""
    data = load_json(plaintext, "message")
    if not isinstance(data, dict) or "bundle" not in data:
        return [plaintext]
    items = data["bundle"]
    if set(data) != {"bundle"} or not isinstance(items, list):
        raise RejectedError(Reason.ENVELOPE_INVALID, 'bundle: expected {"bundle": [texts]}')
    if not all(isinstance(item, str) for item in items):
        raise RejectedError(Reason.ENVELOPE_INVALID, "bundle: every item must be an envelope's JSON text")
    return list(items)
