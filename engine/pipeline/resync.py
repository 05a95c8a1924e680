"""RESYNC (SPEC sections 4-5): a snapshot of an issue's mapped values that starts a new epoch.

Sent on demand (`sync resync`), and when a version put in force adds mappings while issues are
already paired: the side that defines a new mapping's values fills it for the existing pairs
(the primary for what it sends; the secondary only for what the primary does not send, so the
two snapshots never swap values)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from engine.config.terms import Terms
from engine.domain.side import SideCtx
from engine.errors import ApplyError
from engine.pipeline.detect import _OutPair
from engine.pipeline.records import Outgoing, Queued, iso
from engine.store.models import ConfigVersion, IssuePair
from engine.vocab import MessageType, Role

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline

log = logging.getLogger("backbone.pipeline")


class ResyncStep:
    """Queues RESYNC messages: one snapshot per paired issue, each in a new epoch."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    def resync(
        self, side: SideCtx, *, pair_ids: list[str] | None = None, mapping_ids: list[str] | None = None
    ) -> int:
        """Queue a RESYNC for each paired issue of `side` (or the given pairs), with every mapped
        value this side sends (or only `mapping_ids`; "status" names the status); how many."""
        config = self.p.side_store.config(side)
        queued: list[Queued] = []
        with self.p.db.write() as s:
            query = select(IssuePair).where(
                IssuePair.side_id == side.id, col(IssuePair.issue_id).is_not(None)
            )
            if pair_ids is not None:
                query = query.where(col(IssuePair.pair_id).in_(pair_ids))
            rows = list(s.exec(query.order_by(col(IssuePair.id))).all())
            by_issue = {
                row.issue_id: row.pair_id
                for row in s.exec(select(IssuePair).where(IssuePair.side_id == side.id))
            }
            for row in rows:
                issue = self.p.tracker_for(side).read_issue(row.issue_id or "")
                type_id = config.type_id(issue.issue_type) if issue is not None else None
                if issue is None or type_id is None:
                    continue
                at = iso(issue.updated)
                fields = {
                    m.id: {"v": m.to_shared(issue.fields[m.local]), "at": at, "base": ""}
                    for m in config.fields
                    if m.sends
                    and m.local in issue.fields
                    and (mapping_ids is None or m.id in mapping_ids)
                    and (isinstance(issue.fields[m.local], list) or not m.unshared(issue.fields[m.local]))
                }
                body: dict[str, Any] = {
                    "op": "resync",
                    "type": type_id,
                    "fields": fields,
                    "parent": by_issue.get(issue.parent_id) if issue.parent_id else None,
                }
                status_id = config.status_id(issue.status)
                if status_id is not None and (mapping_ids is None or "status" in mapping_ids):
                    body["status"] = {"v": status_id, "at": at, "base": ""}
                pair = _OutPair(row.pair_id, row.issue_id, out_epoch=row.out_epoch + 1, out_seq=0, id=row.id)
                queued.append(self.p.ledger.queue(s, side, Outgoing(MessageType.RESYNC, body, pair)))
                row.out_epoch, row.out_seq = pair.out_epoch, pair.out_seq
                s.add(row)
        self.p.ledger.write_send_files(side, queued)
        if queued:
            log.info("%s: %d issue(s) resynchronized", side.sync_key, len(queued))
        return len(queued)

    def fill_new_mappings(self, side: SideCtx) -> int:
        """After a version went in force: RESYNC the existing pairs with the mappings it added
        that this side is the one to fill."""
        with self.p.db.session() as s:
            versions = s.exec(
                select(ConfigVersion)
                .where(ConfigVersion.side_id == side.id)
                .order_by(col(ConfigVersion.id).desc())
                .limit(2)
            ).all()
        if len(versions) < 2 or not versions[0].terms_json or not versions[1].terms_json:
            return 0
        new, old = (Terms.from_body(json.loads(v.terms_json)) for v in versions)
        config = self.p.side_store.config(side)
        mine: list[str] = []
        for term in new.fields:
            if old.field(term.id) is not None:
                continue
            try:
                mapping = config.field_by_id(term.id)
            except ApplyError:
                continue
            if mapping.sends and (side.role == Role.PRIMARY or term.direction == "from_partner"):
                mine.append(term.id)
        return self.resync(side, mapping_ids=mine) if mine else 0
