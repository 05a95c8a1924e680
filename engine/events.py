"""Events the engine publishes; a UI adapts them to its own messages, tests collect them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SyncChanged:
    """A synchronization's status, counts or activity changed."""

    sync_key: str
    status: str


@dataclass(frozen=True)
class MessageMoved:
    """A message went into a folder (its row is committed there)."""

    sync_key: str
    message_id: int
    folder: str
    reason_code: str
    direction: str = ""  # in | out
    type: str = ""  # the envelope's type ("" : not a message file)


@dataclass(frozen=True)
class EngineFailed:
    """The engine stopped itself (corrupt database, I/O error); the text says why."""

    text: str


Event = SyncChanged | MessageMoved | EngineFailed
Listener = Callable[[Event], None]


class EventBus:
    """Thread-safe fan-out of engine events to subscribers (called on the worker's thread)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)
