"""The file-exchange channel: `SEND` (we write) and `RECEIVE` (the partner's messages) in one folder."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from engine.domain.folders import exchange_paths
from engine.errors import BackboneError, FieldError
from engine.store import fsutil
from engine.vocab import Folder


class FileChannel:
    """Writes each sealed file under a staging name into the exchange `SEND`, then renames it."""

    bundles = True
    fetched = False

    def __init__(self, exchange: Path) -> None:
        self.exchange = exchange
        self.send_dir, inbox = exchange_paths(exchange)
        self.inbox: Path | None = inbox

    @staticmethod
    def prepare(exchange: Path) -> Path:
        """Make a new side's exchange folder with SEND and RECEIVE (kept where they exist)."""
        for path in exchange_paths(exchange):
            if not path.exists():
                path.mkdir(parents=True, exist_ok=True)
            elif not path.is_dir():
                raise FieldError("exchange", f"exchange folder {path} exists but is not a folder")
        return exchange

    def deliver(self, name: str, data: bytes) -> None:
        """Write the file into SEND (readable by the partner's reader, maybe another user)."""
        fsutil.write_atomic(self.send_dir / name, data, sync_dir=False, mode=0o644)

    def flush(self) -> None:
        """fsync the SEND folder once for the files of this pass."""
        fsutil.fsync_dir(self.send_dir)

    def close(self) -> None:
        """Nothing to release."""

    def problem(self) -> str:
        """A missing folder, a dangling link, a file in its place or missing rights, by path."""
        inbox = self.send_dir.parent / Folder.RECEIVE
        return fsutil.folder_problem(self.send_dir, os.W_OK) or fsutil.folder_problem(inbox, os.W_OK)

    def check(self) -> str:
        """Both folders are there and SEND takes a file."""
        for folder in exchange_paths(self.exchange):
            if not folder.is_dir():
                raise BackboneError(f"{folder}: not a folder")
        probe = self.send_dir / f".probe-{secrets.token_hex(4)}.part"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BackboneError(f"{self.send_dir}: cannot write ({exc.strerror})") from None
        return f"exchange folder {self.exchange} is usable"

    def unfinished(self) -> list[Path]:
        """Staging files in SEND that a killed writer left."""
        with contextlib.suppress(OSError):  # missing or not a folder: sending will say so
            return [p for p in self.send_dir.iterdir() if p.name.startswith(".") and p.name.endswith(".part")]
        return []
