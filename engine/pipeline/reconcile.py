"""The start-up reconcile of folders with the database (G8)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select as sa_select
from sqlmodel import col, select

from engine.domain.side import SideCtx
from engine.pipeline.records import _Classified
from engine.store import fsutil
from engine.store.models import Message
from engine.vocab import ALL_FOLDERS, HOLD_FOLDERS, Folder, Reason

if TYPE_CHECKING:
    from engine.pipeline.core import Pipeline


log = logging.getLogger("backbone.pipeline")


class Reconciler:
    """Makes the folders match the database at start (the database is the truth)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    def placements(self) -> dict[int, list[tuple[int, str, str | None, str]]]:
        """Side id -> (message id, folder, hold, file name) of every message, in one query."""
        result: dict[int, list[tuple[int, str, str | None, str]]] = {}
        with self.p.db.session() as s:
            for message_id, side_id, folder, hold, file_name in s.execute(
                sa_select(
                    col(Message.id),
                    col(Message.side_id),
                    col(Message.folder),
                    col(Message.hold),
                    col(Message.file_name),
                )
            ):
                result.setdefault(side_id, []).append((message_id or 0, folder, hold, file_name))
        return result

    def reconcile(self, side: SideCtx, rows: list[tuple[int, str, str | None, str]] | None = None) -> int:
        """Make the folders match the database (run at every start); returns files fixed."""
        on_disk, stale_parts = _walk(side)
        stale_parts += self.p.channel_for(side).unfinished()
        for path in stale_parts:
            log.info("removing our own unfinished write %s", path)
            path.unlink(missing_ok=True)
        fixed = 0
        if rows is None:
            rows = self.placements().get(side.id, [])
        root = str(side.folders.root)
        for message_id, folder, hold, file_name in rows:
            # compared as text: building a Path per message costs more than the whole check
            expected_text = (
                os.path.join(root, folder, hold, file_name)
                if folder in HOLD_FOLDERS and hold
                else os.path.join(root, folder, file_name)
            )
            found = on_disk.pop(file_name, None)
            if found is None:
                with self.p.db.session() as s:
                    payload = s.exec(select(Message.payload).where(Message.id == message_id)).first()
                if payload is not None:  # the row is the truth: write its file again
                    fsutil.write_atomic(Path(expected_text), payload.encode(), durable=False)
                    fixed += 1
                continue
            if found != expected_text:
                fsutil.move(Path(found), Path(expected_text))
                fixed += 1
        for name, found_text in sorted(on_disk.items()):  # generated names sort in arrival order
            path = Path(found_text)
            # a file moved in before a crash kept its row from committing: file it again
            fixed += 1
            if path.suffix == ".bac":
                data = path.read_bytes()
                outcomes = self.p.receiver.classify(side, data, settled=True) or [
                    _Classified(Folder.REJECTED, None, Reason.UNREADABLE, "could not be opened at start")
                ]
                self.p.receiver.store(side, outcomes, name, data, source=path)
            else:
                self.p.receiver.store(
                    side,
                    [
                        _Classified(
                            Folder.UNKNOWN, None, Reason.ORPHAN_FILE, "found without a record at start"
                        )
                    ],
                    name,
                    b"",
                    source=path,
                )
        return fixed


def _walk(side: SideCtx) -> tuple[dict[str, str], list[Path]]:
    """The side's files by name (their paths as text) and our own staging leftovers; missing
    sub-folders are made. One scandir per folder: at start this runs for every side."""
    root = str(side.folders.root)
    on_disk: dict[str, str] = {}
    stale_parts: list[Path] = []

    def walk(folder: str) -> list[str]:
        subfolders: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir():
                        if not entry.is_symlink():  # as os.walk: a linked folder is not entered
                            subfolders.append(entry.name)
                            walk(entry.path)
                    elif entry.name.startswith(".") and entry.name.endswith(".part"):
                        stale_parts.append(Path(entry.path))
                    else:
                        on_disk[entry.name] = entry.path
        except FileNotFoundError:
            pass
        return subfolders

    present = set(walk(root))
    if not present.issuperset(ALL_FOLDERS):
        side.folders.ensure()
    return on_disk, stale_parts
