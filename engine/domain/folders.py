"""The message folders of one synchronization side (SPEC section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.vocab import ALL_FOLDERS, HOLD_FOLDERS, Folder

__all__ = ["SideFolders", "exchange_paths"]


@dataclass(frozen=True)
class SideFolders:
    """`data/<sync-key>/<PROJECT>-<n>/` and its sub-folders."""

    root: Path

    def ensure(self) -> None:
        for name in ALL_FOLDERS:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def path(self, folder: str, file_name: str, hold: str | None = None) -> Path:
        if folder in HOLD_FOLDERS and hold:
            return self.root / folder / hold / file_name
        return self.root / folder / file_name

    def folder(self, folder: str, hold: str | None = None) -> Path:
        return self.root / folder / hold if hold else self.root / folder


def exchange_paths(exchange: Path) -> tuple[Path, Path]:
    """The exchange folder's `SEND` (we write) and `RECEIVE` (the partner's messages)."""
    return exchange / Folder.SEND, exchange / Folder.RECEIVE
