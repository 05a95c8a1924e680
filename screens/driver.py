"""The seam through which screens reach the installation and background work (the App implements it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from engine.service.installation import Installation

T = TypeVar("T")


class Driver(Protocol):
    installation: Installation

    def now(self) -> datetime:
        """The current time (fixed in snapshot tests)."""
        ...

    def submit(self, title: str, work: Callable[[], T], done: Callable[[T], Any] | None = None) -> None:
        """Run `work` in a thread worker; `done(result)` runs on the UI thread, failures notify."""
        ...

    def request_reload(self) -> None:
        """Reload the synchronizations soon (coalesced)."""
        ...
