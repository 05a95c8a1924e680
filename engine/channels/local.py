"""The local channel: both sides in this installation; a message is handed straight to the other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class LocalChannel:
    """Delivers by calling the other side's receive step (one message per call: no bundles)."""

    bundles = False
    inbox: Path | None = None
    fetched = False

    def __init__(self, hand_over: Callable[[str, bytes], object]) -> None:
        self._hand_over = hand_over

    def deliver(self, name: str, data: bytes) -> None:
        """Give the file to the other side's receive step."""
        self._hand_over(name, data)

    def flush(self) -> None:
        """The other side committed it already."""

    def close(self) -> None:
        """Nothing to release."""

    def problem(self) -> str:
        """A local channel always works."""
        return ""

    def check(self) -> str:
        """Nothing travels outside this installation."""
        return "local, nothing to test"

    def unfinished(self) -> list[Path]:
        """Nothing is staged."""
        return []
