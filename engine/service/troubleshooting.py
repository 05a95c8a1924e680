"""Retrying and skipping what waits in the error folders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import col, select

from engine.domain.side import SideCtx
from engine.errors import BackboneError
from engine.store.models import (
    IssuePair,
)
from engine.vocab import Folder

if TYPE_CHECKING:
    from engine.service.installation import Installation


class Troubleshooting:
    """Retrying and skipping what waits in the error folders."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def resolve_pair(self, key: str, issue: str) -> str:
        """A pair id from a pair id or a local issue key (e.g. GLOBEX-12)."""
        if len(issue) == 32 and all(c in "0123456789abcdef" for c in issue):
            return issue
        issue_id = self.i.tracker.issue_key_to_id(issue)
        side_ids = [side.id for side in self.i.queries.sides_of(key)]
        with self.i.db.session() as s:
            pair = s.exec(
                select(IssuePair).where(col(IssuePair.side_id).in_(side_ids), IssuePair.issue_id == issue_id)
            ).first()
        if pair is None:
            raise BackboneError(f"{issue} is not synced by {key}")
        return pair.pair_id

    def resync(
        self, key: str, issue: str | None = None, field: str | None = None, project: str | None = None
    ) -> int:
        """Send a RESYNC (a snapshot, a new epoch) of one issue or of every synced issue, with
        every value this side sends or only the mapping `field`; how many issues."""
        if issue and project is None and len(self.i.queries.sides_of(key)) > 1:
            project = issue.rsplit("-", 1)[0]  # a local synchronization: the side of that issue
        side = self.i.lifecycle._one_side(key, project)  # one side: two snapshots would swap values
        pairs = [self.resolve_pair(key, issue)] if issue else None
        return self.i.pipeline.resync(side, pair_ids=pairs, mapping_ids=[field] if field else None)

    def retry(self, key: str, issue: str | None = None) -> int:
        """Queue again what waits: one issue's held messages, or everything held or failed."""
        count = 0
        for side in self.i.queries.sides_of(key):
            if issue:
                issue = self.resolve_pair(key, issue)
                count += self.i.pipeline.release_issue(side, issue, skip_first=False)[1]
            else:
                count += self.i.pipeline.retry_folder(side, Folder.OFFLINE)
                count += self.i.pipeline.retry_folder(side, Folder.SEND_ERROR)
                count += sum(
                    self.i.pipeline.release_issue(side, pair, skip_first=False)[1]
                    for pair in self._held_pairs(side)
                )
        self.i._changed(key)
        return count

    def skip(self, key: str, issue: str) -> tuple[int, int]:
        """Skip the first held message of an issue; (messages skipped, messages queued again)."""
        issue = self.resolve_pair(key, issue)
        results = [
            self.i.pipeline.release_issue(side, issue, skip_first=True)
            for side in self.i.queries.sides_of(key)
        ]
        self.i._changed(key)
        return sum(skipped for skipped, _ in results), sum(queued for _, queued in results)

    def _held_pairs(self, side: SideCtx) -> list[str]:
        with self.i.db.session() as s:
            return [
                p.pair_id
                for p in s.exec(
                    select(IssuePair).where(IssuePair.side_id == side.id, col(IssuePair.held).is_(True))
                )
            ]
