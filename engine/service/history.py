"""What happened to each issue of a synchronization: messages in and out, conflicts (and which
value lost), operator actions, and per field which message set its current value (provenance)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from engine.config.mapping import MappingConfig, parse_config
from engine.errors import BackboneError
from engine.store.models import FieldState, IssuePair, Message
from engine.store.models import History as HistoryRow

if TYPE_CHECKING:
    from engine.service.installation import Installation

DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class HistoryEntry:
    """One event of an issue's (or a synchronization's) history, oldest first."""

    at: datetime
    kind: str  # message | conflict | skip | operator | resend | retention | skipped | ignored | ...
    project: str  # the side's local project
    issue_key: str  # the local issue ("" : none, or not synced here)
    pair_id: str | None
    text: str
    direction: str = ""  # messages: in | out
    message_type: str = ""
    epoch: int = 0
    seq: int = 0
    folder: str = ""
    reason_code: str = ""

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["at"] = self.at.isoformat()
        return data


@dataclass(frozen=True)
class FieldOrigin:
    """Where a field's current synced value came from: which side, when, and which message."""

    mapping_id: str
    field: str  # the local field (or "status")
    value: Any  # as it travels (a shared value id for a value table)
    local_value: Any  # as this side's tracker shows it
    at: str  # the change time both sides agreed on
    origin: str  # local | partner
    direction: str  # the message that carried it: out (sent from here) | in (applied here)
    epoch: int
    seq: int
    message_id: str  # its UUID ("" : no longer kept, retention deleted it)
    message_folder: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class IssueHistory:
    """The history of a synchronization or of one of its issues, and field provenance."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def history(self, key: str, issue: str | None = None, limit: int = DEFAULT_LIMIT) -> list[HistoryEntry]:
        """The newest `limit` events (of one issue: a local key or pair id), oldest first."""
        if limit < 1:
            raise BackboneError(f"--limit {limit}: expected a positive number")
        sides = {side.id: side for side in self.i.queries.sides_of(key)}
        pair_id = self.i.troubleshooting.resolve_pair(key, issue) if issue else None
        with self.i.db.session() as s:
            messages = select(Message).where(col(Message.side_id).in_(sides))
            notes = select(HistoryRow).where(col(HistoryRow.side_id).in_(sides))
            if pair_id is not None:
                messages = messages.where(Message.pair_id == pair_id)
                notes = notes.where(HistoryRow.pair_id == pair_id)
            message_rows = s.exec(messages.order_by(col(Message.id).desc()).limit(limit)).all()
            note_rows = s.exec(notes.order_by(col(HistoryRow.id).desc()).limit(limit)).all()
            pairs = s.exec(select(IssuePair).where(col(IssuePair.side_id).in_(sides))).all()
        issue_of = {(p.side_id, p.pair_id): p.issue_id for p in pairs if p.issue_id}
        keys = self.i.trackers.pair_keys(issue_of)

        def key_of(side_id: int, pair: str | None) -> str:
            return keys.get((side_id, pair or ""), "")

        entries = [
            HistoryEntry(
                row.created,
                "message",
                sides[row.side_id].project,
                key_of(row.side_id, row.pair_id),
                row.pair_id,
                _message_text(row),
                row.direction,
                row.type,
                row.epoch,
                row.seq,
                row.folder,
                row.reason_code,
            )
            for row in message_rows
        ]
        entries += [
            HistoryEntry(
                row.at,
                row.kind,
                sides[row.side_id].project,
                key_of(row.side_id, row.pair_id),
                row.pair_id,
                row.text,
            )
            for row in note_rows
        ]
        entries.sort(key=lambda entry: entry.at)
        return entries[-limit:]

    def provenance(self, key: str, issue: str) -> list[FieldOrigin]:
        """Per synced field of one issue: its value, which side set it, and the message that did."""
        pair_id = self.i.troubleshooting.resolve_pair(key, issue)
        result: list[FieldOrigin] = []
        for side in self.i.queries.sides_of(key):
            with self.i.db.session() as s:
                states = s.exec(
                    select(FieldState)
                    .where(FieldState.side_id == side.id, FieldState.pair_id == pair_id)
                    .order_by(col(FieldState.mapping_id))
                ).all()
                if not states:
                    continue
                messages = {
                    (row.direction, row.epoch, row.seq): row
                    for row in s.exec(
                        select(Message).where(Message.side_id == side.id, Message.pair_id == pair_id)
                    ).all()
                }
            local = _Local(side.config_text)
            for state in states:
                direction, epoch, seq = _source(state.source)
                message = messages.get((direction, epoch, seq))
                value = json.loads(state.value)
                result.append(
                    FieldOrigin(
                        state.mapping_id,
                        local.name(state.mapping_id),
                        value,
                        local.value(state.mapping_id, value),
                        state.at,
                        state.origin,
                        direction,
                        epoch,
                        seq,
                        message.uuid if message else "",
                        message.folder if message else "",
                    )
                )
        return result


def _source(text: str) -> tuple[str, int, int]:
    """("in" | "out", epoch, seq) from a stored provenance ("" for a value set before it was kept)."""
    direction, _, numbers = text.partition(" ")
    epoch, _, seq = numbers.partition(":")
    if direction not in ("in", "out") or not epoch.isdigit() or not seq.isdigit():
        return "", 0, 0
    return direction, int(epoch), int(seq)


class _Local:
    """A side's local names and values for mapping ids, from its configuration in force."""

    def __init__(self, config_text: str) -> None:
        try:
            self.config: MappingConfig | None = (
                parse_config(config_text, "configuration") if config_text else None
            )
        except Exception:  # noqa: BLE001 - local names are a nicety; the ids still show
            self.config = None

    def name(self, mapping_id: str) -> str:
        if self.config is None or mapping_id == "status":
            return mapping_id
        mapping = next((m for m in self.config.fields if m.id == mapping_id), None)
        return mapping.local if mapping is not None else mapping_id

    def value(self, mapping_id: str, value: Any) -> Any:
        if self.config is None:
            return value
        try:
            if mapping_id == "status":
                return self.config.local_status(value)
            mapping = next((m for m in self.config.fields if m.id == mapping_id), None)
            return mapping.to_local(value) if mapping is not None else value
        except Exception:  # noqa: BLE001 - a value the table no longer knows: show it as it travels
            return value


def _message_text(row: Message) -> str:
    """One line for a message: what it carried and where it is."""
    what = row.type or "file"
    if row.payload and row.type in ("ISSUE", "RESYNC"):
        try:
            body = json.loads(row.payload).get("body", {})
        except (ValueError, AttributeError):
            body = {}
        if isinstance(body, dict):
            op = body.get("op", "snapshot" if row.type == "RESYNC" else "")
            fields = sorted((body.get("fields") or {}).keys()) if isinstance(body.get("fields"), dict) else []
            if "status" in body:
                fields.append("status")
            what = f"{row.type} {op}".strip() + (f" ({', '.join(fields)})" if fields else "")
    arrow = "sent" if row.direction == "out" else "received"
    numbered = f" seq {row.seq} of epoch {row.epoch}" if row.seq else ""
    reason = f": {row.reason_code} {row.reason_text}".rstrip() if row.reason_code else ""
    return f"{arrow} {what}{numbered}, now in {row.folder}{reason}"
