"""The seam every channel implements."""

from __future__ import annotations

from typing import Protocol


class Channel(Protocol):
    """A transport for sealed message files (the file and local protocols are built in)."""

    def deliver(self, name: str, data: bytes) -> None: ...
