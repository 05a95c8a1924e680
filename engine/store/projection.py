"""Whether the message folders are known to match the database, so a start can skip the walk.

The folders under `data/` are the database's projection (SPEC section 5). A start reconciles
them with the database; walking every folder of a big home costs seconds (10,000
synchronizations have 130,000 folders), and it only finds something after a process stopped in
the middle of its work or after the database file was replaced by a backup. Both are recorded,
as a file system records a clean unmount:

- every process that opens the home holds an exclusive `flock` on its own file in `processes/`
  and removes that file when it closes cleanly; a process that died (or whose work was cut short
  by an error, which `spoil` records) leaves its file behind, unlocked;
- the database and the file `processes/sealed` hold the same random token, written after a full
  reconcile and changed again by every clean close of a process that ran a step moving files. A
  database restored from a copy holds an older token than the file.

A start that finds no abandoned file and matching tokens knows nothing can differ; else it walks
every folder (`backbone run --reconcile` walks them anyway, after files were moved by hand)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
from pathlib import Path

from engine.store.database import Database
from engine.store.models import Setting

__all__ = ["Projection", "TOKEN_SETTING"]

log = logging.getLogger("backbone.home")

TOKEN_SETTING = "folders_token"
SEALED = "sealed"


class Projection:
    """This process's mark on a home, and the seal a full reconcile leaves."""

    def __init__(self, folder: Path, db: Database) -> None:
        self.folder = folder
        self.db = db
        self._fd: int | None = None
        self._mark: Path | None = None
        self._clean = True
        self._moved = False  # whether this process ran a step that moves files

    # -- this process ------------------------------------------------------------------------

    def open(self) -> None:
        """Mark the home as opened by this process (before it can move a file)."""
        if self._fd is not None:
            return
        self.folder.mkdir(mode=0o700, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        staging, mark = self.folder / f".{name}", self.folder / name
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked before it has the name a start looks at
        os.rename(staging, mark)
        self._fd, self._mark, self._clean = fd, mark, True

    def moving(self) -> None:
        """A step that may move files runs: the seal is renewed at a clean close."""
        self._moved = True

    def spoil(self) -> None:
        """Work of this process stopped half-way (an error, a file that was not where its row
        said): the next start walks every folder, as after a crash."""
        if self._clean:
            log.info("the folders are reconciled in full at the next start")
        self._clean = False

    def close(self) -> None:
        """Unmark the home; after clean work that moved files, change the seal (a copy of the
        database taken while this process had it open then no longer matches it)."""
        if self._fd is None:
            return
        fd, mark, self._fd, self._mark = self._fd, self._mark, None, None
        try:
            if self._clean and self._moved:
                try:
                    sealed = self._sealed_token()
                    if sealed is not None and sealed == self._db_token():
                        self._seal()
                except Exception as exc:  # noqa: BLE001 - a damaged database: the next start walks
                    log.warning("could not renew the folders' seal (%s); the next start reconciles", exc)
                with contextlib.suppress(OSError):
                    if mark is not None:
                        mark.unlink()
        finally:
            os.close(fd)  # releases the lock; a file left behind says the work was cut short

    # -- at the engine's start (with the engine lock) ---------------------------------------

    def abandoned(self) -> list[Path]:
        """The marks of processes that ended without a clean close (their lock is free)."""
        found: list[Path] = []
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return found
        for entry in entries:
            if entry.name == SEALED or entry.name.startswith(".") or entry.path == str(self._mark):
                continue
            try:
                fd = os.open(entry.path, os.O_RDWR)
            except OSError:
                continue  # removed meanwhile by a process closing
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: that process runs
            finally:
                os.close(fd)
            found.append(Path(entry.path))
        return found

    def why_walk(self, abandoned: list[Path]) -> str | None:
        """Why the folders may differ from the database (None: they match), given the
        `abandoned` marks."""
        if not self._clean:
            return "work of this process stopped half-way"
        if abandoned:
            return f"{len(abandoned)} process(es) stopped without finishing their work"
        sealed = self._sealed_token()
        if sealed is None:
            return "no full reconcile recorded yet"
        if sealed != self._db_token():
            return "the database is not the one the folders were last reconciled with (a backup?)"
        return None

    def sealed_after_walk(self, abandoned: list[Path]) -> None:
        """After a full reconcile: the folders match the database; forget the abandoned marks."""
        for mark in abandoned:
            mark.unlink(missing_ok=True)
        self._clean, self._moved = True, False
        self._seal()

    # -- the seal ------------------------------------------------------------------------------

    def _seal(self) -> None:
        token = secrets.token_hex(16)
        with self.db.write() as s:
            row = s.get(Setting, TOKEN_SETTING)
            if row is None:
                s.add(Setting(name=TOKEN_SETTING, value=token))
            else:
                row.value = token
        # the database first: a stop between leaves them different, and the next start walks
        staging = self.folder / f".{SEALED}.{os.getpid()}"
        staging.write_text(token + "\n")
        os.replace(staging, self.folder / SEALED)

    def _sealed_token(self) -> str | None:
        try:
            return (self.folder / SEALED).read_text().strip() or None
        except OSError:
            return None

    def _db_token(self) -> str | None:
        with self.db.session() as s:
            row = s.get(Setting, TOKEN_SETTING)
            return row.value if row is not None else None
