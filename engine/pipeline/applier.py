"""Applying one issue message to the tracker, idempotently (compare first, markers)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row
from sqlmodel import Session, select

from engine.config.mapping import MappingConfig
from engine.domain.envelope import Envelope
from engine.domain.side import SideCtx
from engine.errors import ApplyError, MissingIssueError, TrackerOffline
from engine.pipeline.records import _escape
from engine.store import statements as S
from engine.store.models import History, IssuePair
from engine.trackers.base import utcnow
from engine.vocab import MessageType, Reason, Role

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


@dataclass
class _InPair:
    """What the apply step needs of an issue pair's incoming state (a plain copy of its row)."""

    pair_id: str
    issue_id: str | None = None
    in_epoch: int = 0
    in_seq: int = 0
    held: bool = False


def _upsert_pair(s: Session, side_id: int, pair_id: str, values: dict[str, Any]) -> None:
    """Set columns of an issue pair, creating its row when this is the first of it here."""
    conn = s.connection()
    if not conn.execute(S.UPDATE_PAIR, {"b_side": side_id, "b_pair": pair_id, **values}).rowcount:
        conn.execute(S.INSERT_PAIR, {"side_id": side_id, "pair_id": pair_id, **values})


class _Applier:
    """Applies one issue message to the tracker; idempotent (compare first, markers)."""

    def __init__(
        self,
        pipeline: Pipeline,
        side: SideCtx,
        config: MappingConfig,
        pair: _InPair,
        env: Envelope,
        known: dict[str, Row[Any]],
    ) -> None:
        self.p = pipeline
        self.known = known
        self.tracker = pipeline.tracker_for(side)
        self.side = side
        self.config = config
        self.pair = pair
        self.env = env
        self.issue_id: str | None = pair.issue_id
        self.created_issue = False
        self.states: list[tuple[str, Any, str]] = []
        self.conflicts: list[str] = []
        self.notes: list[str] = []  # what was ignored, for the issue's history

    def apply(self) -> None:
        body = self.env.body
        op = body.get("op")
        if op == "create" or self.env.type == MessageType.RESYNC:
            self._create(body)
            return
        if self.issue_id is None:
            raise ApplyError(Reason.ISSUE_NOT_SYNCED, "a change for an issue whose creation was not applied")
        if op == "update":
            self._update(_dict(body, "fields"))
        elif op == "comment":
            self._comment(_dict(body, "comment"))
        elif op == "attachment":
            self._attachment(_dict(body, "attachment"))
        elif op == "link":
            self._link(body)
        else:
            raise ApplyError(Reason.UNKNOWN_OPERATION, f"body 'op': unknown operation {op!r}")

    def issue_deleted(self) -> bool:
        try:
            return self.issue_id is not None and self.tracker.read_issue(self.issue_id) is None
        except TrackerOffline:
            return False

    def _create(self, body: dict[str, Any]) -> None:
        type_id = body.get("type")
        if not isinstance(type_id, str):
            raise ApplyError(Reason.BODY_INVALID, "body 'type': expected a mapping id")
        local_type = self.config.local_type(type_id)
        parent_local: str | None = None
        parent = body.get("parent")
        if parent is not None:
            parent_local = self._local_issue(parent, "parent")
        fields, status = self._incoming(_dict(body, "fields"), body.get("status"), force=True)
        if self.issue_id is None:
            self.issue_id = self.tracker.find_by_marker(
                self.side.project, self.side.marker(self.pair.pair_id)
            )
        if self.issue_id is None:
            self.issue_id = self.tracker.create_issue(
                self.side.project,
                local_type,
                fields,
                as_user=self.side.sync_user,
                parent_id=parent_local,
                status=status,
                marker=self.side.marker(self.pair.pair_id),
            )
            self.created_issue = True
            return
        self.created_issue = self.pair.issue_id is None
        if fields:
            self.tracker.update_issue(self.issue_id, fields, as_user=self.side.sync_user)
        if status:
            self.tracker.transition(self.issue_id, status, as_user=self.side.sync_user)

    def _update(self, changes: dict[str, Any]) -> None:
        status_change = changes.pop("status", None)
        fields, status = self._incoming(changes, status_change, force=False)
        assert self.issue_id is not None
        if fields:
            self.tracker.update_issue(self.issue_id, fields, as_user=self.side.sync_user)
        if status:
            self.tracker.transition(self.issue_id, status, as_user=self.side.sync_user)

    def _incoming(
        self, changes: dict[str, Any], status_change: Any, *, force: bool
    ) -> tuple[dict[str, Any], str | None]:
        """Local field values to write, after mapping and the newest-wins rule."""
        fields: dict[str, Any] = {}
        for mapping_id, change in changes.items():
            try:
                mapping = self.config.field_by_id(mapping_id)
            except ApplyError:
                if self.env.config >= self.side.config_version:
                    raise
                self.notes.append(  # built under an older version that still had this mapping
                    f"field {mapping_id}: not in configuration version {self.side.config_version}; "
                    f"the value sent under version {self.env.config} was ignored"
                )
                continue
            value, at, base = _change(change, mapping_id)
            if not mapping.receives:
                continue
            if force or self._wins(mapping_id, at, base, value):
                fields[mapping.local] = mapping.to_local(value)
                self.states.append((mapping_id, value, at))
        status: str | None = None
        if status_change is not None:
            value, at, base = _change(status_change, "status")
            if not isinstance(value, str):
                raise ApplyError(Reason.BODY_INVALID, "status: expected a mapping id")
            local_status = self.config.local_status(value)
            if force or self._wins("status", at, base, value):
                status = local_status
                self.states.append(("status", value, at))
        return fields, status

    def _wins(self, mapping_id: str, at: str, base: str, value: Any) -> bool:
        """Newest wins when both sides changed the field since they last agreed; ties: primary."""
        state = self.known.get(mapping_id)
        if state is None or state.origin != "local" or base >= state.at:
            return True
        partner_wins = at > state.at or (at == state.at and self.side.role == Role.SECONDARY)
        kept, lost = ("partner's", "local") if partner_wins else ("local", "partner's")
        self.conflicts.append(
            f"field {mapping_id}: both sides changed it (local {state.at}, partner {at}); "
            f"kept the {kept} value, the {lost} value lost"
        )
        return partner_wins

    def _comment(self, comment: dict[str, Any]) -> None:
        if not self.config.receives("comments"):
            return
        text = comment.get("body")
        author = comment.get("author")
        if not isinstance(text, str) or not isinstance(author, str):
            raise ApplyError(Reason.BODY_INVALID, "comment: expected text 'body' and 'author'")
        assert self.issue_id is not None
        self.tracker.add_comment(
            self.issue_id, f"{author} wrote:\n{text}", as_user=self.side.sync_user, marker=self.env.id
        )

    def _attachment(self, attachment: dict[str, Any]) -> None:
        if not self.config.receives("attachments"):
            return
        name = attachment.get("name")
        if not isinstance(name, str) or not _plain_file_name(name):
            raise ApplyError(
                Reason.ATTACHMENT_NAME_UNSAFE,
                f"attachment name {_escape(str(name))!r} is not a plain file name",
            )
        try:
            content = base64.b64decode(str(attachment.get("content", "")), validate=True)
        except ValueError:
            raise ApplyError(Reason.BODY_INVALID, "attachment 'content': expected base64") from None
        if len(content) != attachment.get("size"):
            raise ApplyError(
                Reason.ATTACHMENT_SIZE_MISMATCH,
                f"attachment {name!r}: {len(content)} bytes, header says {attachment.get('size')!r}",
            )
        accepted = self.config.attachment_filter("from_partner")
        if len(content) > accepted.max_bytes:
            raise ApplyError(
                Reason.ATTACHMENT_TOO_LARGE,
                f"attachment {name!r}: {len(content)} bytes, limit {accepted.max_bytes}",
            )
        media_type = attachment.get("media_type")
        why = accepted.refuses(name, media_type if isinstance(media_type, str) else "", len(content))
        if why:  # this side narrowed what it accepts: not an error of the partner's
            self.notes.append(f"attachment {name!r}: {why}; not accepted here")
            return
        assert self.issue_id is not None
        self.tracker.add_attachment(
            self.issue_id,
            name,
            content,
            as_user=self.side.sync_user,
            media_type=media_type if isinstance(media_type, str) else None,
            marker=self.env.id,
        )

    def _link(self, body: dict[str, Any]) -> None:
        if not self.config.links:
            return
        target = self._local_issue(body.get("target"), "link target")
        kind = body.get("kind", "relates")
        assert self.issue_id is not None
        self.tracker.add_link(
            self.issue_id, target, str(kind), as_user=self.side.sync_user, marker=self.env.id
        )

    def _local_issue(self, pair_id: Any, what: str) -> str:
        if (
            not isinstance(pair_id, str)
            or len(pair_id) != 32
            or not all(c in "0123456789abcdef" for c in pair_id)
        ):
            raise ApplyError(Reason.BODY_INVALID, f"{what}: expected a 32-hex pair id")
        with self.p.db.session() as s:
            pair = s.exec(
                select(IssuePair).where(IssuePair.side_id == self.side.id, IssuePair.pair_id == pair_id)
            ).first()
        if pair is None or pair.issue_id is None:
            raise MissingIssueError(pair_id, f"the {what} is not synced yet")
        return pair.issue_id

    def write_state(self, s: Session) -> None:
        """Record the values this message set (with it as their provenance) and its conflicts."""
        conn = s.connection()
        source = f"in {self.env.epoch}:{self.env.seq}"
        for mapping_id, value, at in self.states:
            values = {"value": json.dumps(value), "at": at, "origin": "partner", "source": source}
            known = self.known.get(mapping_id)
            if known is not None:
                conn.execute(S.UPDATE_STATE_BY_ID, {"b_id": known.id, **values})
                continue
            key = {"b_side": self.side.id, "b_pair": self.pair.pair_id, "b_mapping": mapping_id}
            if not conn.execute(S.UPDATE_STATE, {**key, **values}).rowcount:
                conn.execute(
                    S.INSERT_STATE,
                    {
                        "side_id": self.side.id,
                        "pair_id": self.pair.pair_id,
                        "mapping_id": mapping_id,
                        **values,
                    },
                )
        for kind, texts in (("conflict", self.conflicts), ("ignored", self.notes)):
            for text in texts:
                s.add(
                    History(
                        side_id=self.side.id, pair_id=self.pair.pair_id, at=utcnow(), kind=kind, text=text
                    )
                )


def _dict(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if not isinstance(value, dict):
        raise ApplyError(Reason.BODY_INVALID, f"body {name!r}: expected an object")
    return dict(value)


def _change(change: Any, mapping_id: str) -> tuple[Any, str, str]:
    if not isinstance(change, dict) or "v" not in change or not isinstance(change.get("at"), str):
        raise ApplyError(Reason.BODY_INVALID, f"field {mapping_id!r}: expected {{v, at, base}}")
    base = change.get("base", "")
    return change["v"], change["at"], base if isinstance(base, str) else ""


def _plain_file_name(name: str) -> bool:
    return (
        0 < len(name) <= 255
        and name not in (".", "..")
        and not any(c in name for c in "/\\\x00")
        and name.isprintable()
    )
