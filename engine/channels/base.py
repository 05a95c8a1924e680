"""The seam every channel implements: how one side's sealed message files leave and arrive.

A channel is made per pass (`open_channel`), used, then closed. Its errors are `OSError` or
`BackboneError` with a text naming the path or server; the send step files them in SEND_ERROR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Channel(Protocol):
    """A transport for sealed message files (file exchange, email, local)."""

    #: several envelopes may travel in one file or mail (a bundle)
    bundles: bool
    #: the folder the receive step scans for arrivals (and the engine watches to wake up);
    #: None when arrivals are fetched or handed in
    inbox: Path | None
    #: arrivals are fetched from a server by a receive loop of their own (IMAP IDLE)
    fetched: bool

    def deliver(self, name: str, data: bytes) -> None:
        """Hand one sealed file to the partner; raises `OSError` or `BackboneError` on failure."""

    def flush(self) -> None:
        """Make what was delivered durable before it is recorded as SENT (RELIABILITY rule 11)."""

    def close(self) -> None:
        """Release connections."""

    def problem(self) -> str:
        """What keeps the channel from working, naming the path or server; "" when it works."""

    def check(self) -> str:
        """Try the channel for real (log in, write a probe): what works, or `BackboneError`."""

    def unfinished(self) -> list[Path]:
        """Our own half-written files a crash left behind (removed at start)."""
