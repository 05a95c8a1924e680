"""The message pipeline: detect tracker changes, send, receive, and apply in order."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from sqlmodel import Session

from engine.channels import open_channel
from engine.channels.base import Channel
from engine.channels.email import MailSettings
from engine.domain.envelope import Codec, Envelope, PlainCodec
from engine.domain.side import SideCtx
from engine.errors import BackboneError
from engine.events import EventBus
from engine.pipeline.applier import _Applier
from engine.pipeline.apply import ApplyStep
from engine.pipeline.delivery import DeliveryStep
from engine.pipeline.detect import DetectStep
from engine.pipeline.ledger import Ledger
from engine.pipeline.operator import OperatorActions
from engine.pipeline.receive import ReceiveStep
from engine.pipeline.reconcile import Reconciler
from engine.pipeline.records import Outgoing
from engine.pipeline.resync import ResyncStep
from engine.pipeline.send import SendStep
from engine.pipeline.sides import Sides
from engine.store.database import Database
from engine.trackers.base import Tracker
from engine.trackers.settings import EMBEDDED

__all__ = ["Pipeline", "_Applier"]


log = logging.getLogger("backbone.pipeline")

P = ParamSpec("P")
R = TypeVar("R")


class Pipeline:
    """All message steps for every side of this installation; one instance per engine.

    A facade over the steps, each its own object: `side_store`, `ledger` (transactions, moves,
    the outbox), `detector`, `sender`, `receiver`, `applier`, `operator`, `reconciler`, `resyncer`,
    `delivery` (acknowledgements, resends, retention)."""

    def __init__(
        self,
        db: Database,
        tracker: Tracker,
        data_root: Path,
        events: EventBus,
        codec_for: Callable[[SideCtx], Codec] | None = None,
        channel_for: Callable[[SideCtx], Channel] | None = None,
        *,
        control_handler: Callable[[Session, SideCtx, Envelope], list[Outgoing]] | None = None,
        should_stop: Callable[[], bool] | None = None,
        trackers: Callable[[str], Tracker] | None = None,
        disturbed: Callable[[], None] | None = None,
        moving: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        #: told when a step that moves files stopped half-way (the next start walks every folder)
        self.disturbed: Callable[[], None] = disturbed or (lambda: None)
        #: told before a step that may move files
        self.moving: Callable[[], None] = moving or (lambda: None)
        self.tracker = tracker  # the embedded one
        self.trackers = trackers  # a remote tracker by its name (None: every side is embedded)
        self.data_root = data_root
        self.events = events
        self.codec_for = codec_for or (lambda side: PlainCodec())
        self.control_handler = control_handler
        self.should_stop: Callable[[], bool] = should_stop or (lambda: False)
        self.channel_for: Callable[[SideCtx], Channel] = channel_for or self._default_channel
        self.side_store = Sides(self)
        self.ledger = Ledger(self)
        self.detector = DetectStep(self)
        self.sender = SendStep(self)
        self.receiver = ReceiveStep(self)
        self.applier = ApplyStep(self)
        self.operator = OperatorActions(self)
        self.reconciler = Reconciler(self)
        self.resyncer = ResyncStep(self)
        self.delivery = DeliveryStep(self)
        # what callers use, by name
        self.sides = self.side_store.sides
        self.side = self.side_store.side
        self.pending = self.side_store.pending
        self.config = self.side_store.config
        self.queue = self.ledger.queue
        self.write_send_files = self._guarded(self.ledger.write_send_files)
        self.flush_activity = self.ledger.flush_activity
        self.report_channel = self.ledger.report_channel
        self.detect = self._guarded(self.detector.detect)
        self.send = self._guarded(self.sender.send)
        self.ingest = self._guarded(self.receiver.ingest)
        self.ingest_bytes = self._guarded(self.receiver.ingest_bytes)
        self.apply = self._guarded(self.applier.apply)
        self.release_issue = self._guarded(self.operator.release_issue)
        self.release_config_pending = self._guarded(self.operator.release_config_pending)
        self.retry_folder = self._guarded(self.operator.retry_folder)
        self.placements = self.reconciler.placements
        self.reconcile = self._guarded(self.reconciler.reconcile)
        self.resync = self._guarded(self.resyncer.resync)
        self.fill_new_mappings = self._guarded(self.resyncer.fill_new_mappings)

    def _guarded(self, step: Callable[P, R]) -> Callable[P, R]:
        """`step`, telling `moving` before it runs and `disturbed` when it raises (its files may
        be half moved)."""

        @functools.wraps(step)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            self.moving()
            try:
                return step(*args, **kwargs)
            except BaseException:
                self.disturbed()
                raise

        return run

    def tracker_for(self, side: SideCtx) -> Tracker:
        """The tracker the side's project lives in."""
        if side.tracker == EMBEDDED or self.trackers is None:
            return self.tracker
        return self.trackers(side.tracker)

    def _default_channel(self, side: SideCtx) -> Channel:
        """Exchange folders and local delivery; email needs the installation's mail settings."""

        def no_mail(_: SideCtx) -> MailSettings:
            raise BackboneError(f"{side.sync_key}: no mail settings are known to this pipeline")

        return open_channel(side, mail_settings=no_mail, hand_over=self.hand_over)

    def hand_over(self, side: SideCtx, name: str, data: bytes) -> int:
        """Local delivery: the file goes to the other side's receive step."""
        assert side.partner_side_id is not None
        return self.receiver.ingest_bytes(self.side_store.side(side.partner_side_id), name, data)

    @property
    def caught_up(self) -> set[int]:
        """The sides whose last detect saw the end of the change log."""
        return self.detector.caught_up

    @property
    def max_message_bytes(self) -> int:
        return self.receiver.max_message_bytes

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        self.receiver.max_message_bytes = value

    @property
    def bundle_max(self) -> int:
        return self.sender.bundle_max

    @bundle_max.setter
    def bundle_max(self, value: int) -> None:
        self.sender.bundle_max = value
