"""Acknowledgements, resend requests and retention, as the engine and an administrator use them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import BackboneError
from engine.vocab import PAIRED_STATUSES

if TYPE_CHECKING:
    from engine.service.installation import Installation


class Delivery:
    """Acknowledgements, resend requests and retention: the engine's periodic `tick`, and the
    requests an administrator makes (`request_resend`, `prune`)."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def tick(self) -> int:
        """Send due acknowledgements and resend requests; apply retention once an hour."""
        return self.i.pipeline.delivery.tick()

    def request_resend(self, key: str, issue: str, *, resync: bool = False, reason: str = "") -> int:
        """Ask the partner to send one issue's messages again (everything after what was applied
        here), or with `resync` a full snapshot (RESYNC); how many requests were queued."""
        pair_id = self.i.troubleshooting.resolve_pair(key, issue)
        asked = 0
        for side in self.i.queries.sides_of(key):
            if side.status not in PAIRED_STATUSES:
                raise BackboneError(f"{key} is {side.status}: a resend needs a paired synchronization")
            if side.partner_side_id is not None and not self.i.queries.issue_pairs(key).get(pair_id, {}).get(
                side.project
            ):
                continue  # a local synchronization: ask from the side that has the issue
            asked += self.i.pipeline.delivery.request(side, pair_id, resync=resync, reason=reason)
            if side.partner_side_id is not None:
                break
        self.i._changed(key)
        return asked

    def prune(self) -> int:
        """Apply retention now: delete acknowledged SENT and old PROCESSED messages; how many."""
        return self.i.pipeline.delivery.prune()
