"""What the REST API serves often and computes dearly, kept as snapshots: the listing of every
synchronization and the metrics exposition, at most a second old while clients ask."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client.exposition import choose_encoder

from engine.events import Event, SyncChanged
from engine.service.installation import Installation
from engine.service.metrics import Metrics

T = TypeVar("T")
MAX_AGE = 1.0  # seconds a snapshot is served before a refresh starts


class Snapshot(Generic[T]):
    """The latest value of an expensive view, served while a thread computes the next once it is
    older than `max_age`; a reader waits only when it is older than twice that, or invalidated.
    Why: a listing of 1,000 synchronizations costs tens of milliseconds of the engine's CPU."""

    def __init__(self, compute: Callable[[], T], max_age: float = MAX_AGE) -> None:
        self._compute = compute
        self._max_age = max_age
        self._lock = threading.Lock()
        self._value: T | None = None
        self._taken = 0.0
        self._stale = True
        self._refreshing = False

    def invalidate(self) -> None:
        """The next reader waits for a fresh value (after a change it must see)."""
        self._stale = True

    def get(self) -> T:
        with self._lock:
            age = time.monotonic() - self._taken
            value, stale = self._value, self._stale or age > 2 * self._max_age
            start_refresh = value is not None and not stale and not self._refreshing and age > self._max_age
            if start_refresh:
                self._refreshing = True
        if value is None or stale:
            return self._refresh()
        if start_refresh:
            threading.Thread(target=self._refresh, name="backbone-api-refresh", daemon=True).start()
        return value

    def _refresh(self) -> T:
        self._stale = False  # before computing: a change meanwhile marks it stale again
        taken = time.monotonic()
        try:
            value = self._compute()
        finally:
            self._refreshing = False
        with self._lock:
            if taken >= self._taken:
                self._value, self._taken = value, taken
        return value


@dataclass(frozen=True)
class Listing:
    """Every synchronization's JSON view, encoded once, and each by key."""

    body: bytes
    by_key: dict[str, dict[str, Any]]
    etag: str  # a poller that sends it back in If-None-Match gets 304 while nothing changed


def etag_of(body: bytes) -> str:
    """A strong entity tag for a response body."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class ApiViews:
    """The snapshots behind /integrations and /metrics, and the metrics' event counters."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation
        self.metrics = Metrics(installation)
        self.listing = Snapshot(self._list)
        self._expositions: dict[str, Snapshot[tuple[bytes, str, str]]] = {}
        self._detach: Callable[[], None] | None = None

    def attach(self) -> None:
        """Count message events and forget the listing when a status changes."""
        self.metrics.attach()
        if self._detach is None:
            self._detach = self.i.events.subscribe(self._on_event)

    def detach(self) -> None:
        self.metrics.detach()
        if self._detach is not None:
            self._detach()
            self._detach = None

    def exposition(self, accept: str) -> tuple[bytes, str, str]:
        """The metrics in the format `accept` asks for (a snapshot per format), with its ETag."""
        _, content_type = choose_encoder(accept)  # a few formats: the key stays bounded
        snapshot = self._expositions.get(content_type)
        if snapshot is None:
            snapshot = self._expositions.setdefault(content_type, Snapshot(lambda: self._exposition(accept)))
        return snapshot.get()

    def _exposition(self, accept: str) -> tuple[bytes, str, str]:
        data, content_type = self.metrics.exposition(accept)
        return data, content_type, etag_of(data)

    def _list(self) -> Listing:
        rows = [info.to_json() for info in self.i.list_syncs()]
        body = json.dumps(rows).encode()
        return Listing(body, {row["key"]: row for row in rows}, etag_of(body))

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SyncChanged) and event.status:
            self.listing.invalidate()
