"""Prometheus metrics of one installation: message counters fed by the engine's events, and queue
depths, channel errors and key expiry read from the database when scraped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from engine.events import Event, MessageMoved
from engine.store.models import Message, Synchronization, SyncSide
from engine.trackers.base import utcnow
from engine.vocab import ERROR_FOLDERS, PENDING_FOLDERS, Direction, Folder

if TYPE_CHECKING:
    from engine.service.installation import Installation

#: folders a message waits in (to be applied, sent or fixed); the archives are not queues
QUEUE_FOLDERS: tuple[str, ...] = tuple(
    folder for folder in Folder if folder not in (Folder.PROCESSED, Folder.SENT, Folder.OUTDATED)
)
#: an arrival still waiting in one of these is timed until it reaches PROCESSED
WAITING_FOLDERS = frozenset({Folder.RECEIVE, Folder.WAITING, Folder.MISSING, Folder.OFFLINE})
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
MAX_TIMED = 100_000  # arrivals timed at once; past that the oldest are forgotten


class Metrics:
    """The Prometheus registry of one installation; `attach()` starts counting the engine's events."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "backbone_messages",
            "Messages moved into a folder since the engine started, by direction, type and folder",
            ["direction", "type", "folder"],
            registry=self.registry,
        )
        self.apply_latency = Histogram(
            "backbone_apply_latency_seconds",
            "Seconds from a message's arrival to its move to PROCESSED",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(installation))
        self._children: dict[tuple[str, str, str], Counter] = {}
        self._arrived: dict[int, float] = {}  # incoming message id -> when it arrived (monotonic)
        self._lock = threading.Lock()
        self._detach: Callable[[], None] | None = None

    def attach(self) -> None:
        """Count the installation's message events from now on."""
        if self._detach is None:
            self._detach = self.i.events.subscribe(self.on_event)

    def detach(self) -> None:
        """Stop counting."""
        if self._detach is not None:
            self._detach()
            self._detach = None

    def on_event(self, event: Event) -> None:
        """Count one move (called on the engine's worker threads: a few dictionary operations)."""
        if not isinstance(event, MessageMoved):
            return
        labels = (event.direction, event.type, event.folder)
        child = self._children.get(labels)
        if child is None:
            child = self._children.setdefault(labels, self.messages.labels(*labels))
        child.inc()
        if event.direction != Direction.IN:
            return
        with self._lock:
            if event.folder in WAITING_FOLDERS:
                if len(self._arrived) >= MAX_TIMED:
                    self._arrived.pop(next(iter(self._arrived)))
                self._arrived.setdefault(event.message_id, time.monotonic())
                return
            arrived = self._arrived.pop(event.message_id, None)
        if arrived is not None and event.folder == Folder.PROCESSED:
            self.apply_latency.observe(time.monotonic() - arrived)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric, and its content type: Prometheus text, or OpenMetrics when `accept` asks."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class _StateCollector:
    """Gauges read at scrape time in two queries: queue depths per synchronization and folder,
    channel errors and key expiry per side."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def describe(self) -> Iterable[Metric]:
        """The families without samples (no query at registration)."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        queues, channel, keys = self._families()
        now = utcnow()
        with self.i.db.session() as s:
            depths = s.exec(
                select(SyncSide.sync_key, Message.folder, func.count())
                .select_from(Message)
                .join(SyncSide, col(SyncSide.id) == col(Message.side_id))
                .where(col(Message.folder).in_(QUEUE_FOLDERS))
                .group_by(col(SyncSide.sync_key), col(Message.folder))
            ).all()
            sides = s.execute(
                sa_select(
                    col(SyncSide.sync_key),
                    col(SyncSide.project),
                    col(SyncSide.channel_error),
                    col(SyncSide.own_key_expires),
                    col(SyncSide.partner_key_expires),
                )
            ).all()
        for sync_key, folder, depth in depths:
            queues.add_metric([sync_key, folder], depth)
        for sync_key, project, channel_error, own_expires, partner_expires in sides:
            channel.add_metric([sync_key, project], 1.0 if channel_error else 0.0)
            for whose, expires in (("own", own_expires), ("partner", partner_expires)):
                if expires is not None:
                    keys.add_metric([sync_key, project, whose], _seconds_until(expires, now))
        return [queues, channel, keys]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "backbone_queue_depth",
                "Messages waiting in a folder (to apply, send or fix), per synchronization",
                labels=["sync", "folder"],
            ),
            GaugeMetricFamily(
                "backbone_channel_error",
                "1 while the last receive over a side's channel failed, else 0",
                labels=["sync", "project"],
            ),
            GaugeMetricFamily(
                "backbone_key_expiry_seconds",
                "Seconds until a key of a synchronization expires (negative: expired)",
                labels=["sync", "project", "key"],
            ),
        )


def _seconds_until(moment: datetime, now: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=now.tzinfo)
    return (moment - now).total_seconds()


def summary_counts(installation: Installation) -> dict[str, Any]:
    """Synchronizations per status and messages in error or pending, in three small queries."""
    with installation.db.session() as s:
        statuses = s.exec(
            select(Synchronization.status, func.count()).group_by(col(Synchronization.status))
        ).all()
        folders = dict(
            s.exec(
                select(Message.folder, func.count())
                .where(col(Message.folder).in_((*ERROR_FOLDERS, *PENDING_FOLDERS)))
                .group_by(col(Message.folder))
            ).all()
        )
        with_errors = s.exec(
            select(func.count(func.distinct(SyncSide.sync_key)))
            .join(Message, col(Message.side_id) == col(SyncSide.id))
            .where(col(Message.folder).in_(ERROR_FOLDERS))
        ).one()
    by_status = {status: number for status, number in sorted(statuses)}
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "with_errors": int(with_errors),
        "error_messages": sum(folders.get(name, 0) for name in ERROR_FOLDERS),
        "pending_messages": sum(folders.get(name, 0) for name in PENDING_FOLDERS),
    }
