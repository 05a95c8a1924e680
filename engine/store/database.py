"""Database engine: SQLite (WAL, `BEGIN IMMEDIATE` for writes) by default, URL-configurable."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from engine.store import models  # noqa: F401  (registers the tables)

QUICK_CHECK_SECONDS = 5.0


class Database:
    """One database: sessions for reading and `write()` transactions that lock up front."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        self._write_engine: Engine = self.engine
        self._writer = threading.RLock()
        self._local = threading.local()
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
            self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")

    @classmethod
    def for_file(cls, path: Path) -> Database:
        return cls(f"sqlite:///{path}")

    def migrate(self) -> bool:
        """Bring the schema to the newest revision (a new database is built by the revisions)."""
        from engine.store import migrations

        with self.engine.begin() as connection:
            return migrations.upgrade(connection, SQLModel.metadata)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reading; inside this thread's open write transaction, that one (so a
        batch reads its own writes)."""
        active = getattr(self._local, "session", None)
        if active is not None:
            yield active
            return
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self, *, savepoint: bool = True) -> Iterator[Session]:
        """A write transaction that takes the lock at BEGIN, committed on success.

        Inside this thread's open write transaction it is a savepoint of that one instead, so a
        caller can batch many steps into one commit and a failed step still undoes only itself.
        Threads of this process queue on a lock first: SQLite's busy handler would make them
        sleep in steps of up to 100 ms instead."""
        active: Session | None = getattr(self._local, "session", None)
        if active is not None:
            if not savepoint:  # the caller has nothing to undo on its own: join the transaction
                yield active
                return
            with active.begin_nested():
                yield active
            return
        with (
            self._writer,
            Session(self._write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            self._local.session = session
            try:
                yield session
            finally:
                self._local.session = None

    def quick_check(self, budget: float = QUICK_CHECK_SECONDS) -> list[str] | None:
        """SQLite's `quick_check` within `budget` seconds: what it found ([] when sound), or None
        when the time ran out first (a big home: the rest is checked as it is read)."""
        if not self.is_sqlite:
            return []
        raw = self.engine.raw_connection()
        try:
            connection = raw.driver_connection
            assert isinstance(connection, sqlite3.Connection)
            deadline = time.monotonic() + budget
            connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            try:
                findings = [_one_line(row[0]) for row in connection.execute("PRAGMA quick_check(5)")]
            except sqlite3.OperationalError as exc:
                if "interrupt" not in str(exc):
                    raise
                return None
            finally:
                connection.set_progress_handler(None, 0)
        finally:
            raw.close()
        return [] if findings == ["ok"] else findings

    def damage_text(self, detail: object, *, damaged: bool = False) -> str:
        """The one line for a database that failed: which file, what, and what to do."""
        where = self.url.removeprefix("sqlite:///") if self.is_sqlite else "the database"
        what = "is damaged" if damaged else "failed"
        detail = _one_line(detail)
        return (
            f"{where}: the database {what} ({detail}). Stop every backbone process of this home; if "
            "`backbone doctor` finds damage, restore the file from a backup (the message files under "
            "data/ are filed again at the next start)"
        )

    def checkpoint_full(self) -> None:
        """Make every commit so far durable on power loss (before irreversible outside effects)."""
        if self.is_sqlite:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")

    def dispose(self) -> None:
        self.engine.dispose()


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


def integrity_report(path: Path) -> list[str]:
    """A full `integrity_check` of a database file, opened read-only: [] when sound."""
    if not path.exists():
        return [f"{path} does not exist"]
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            findings = [_one_line(row[0]) for row in connection.execute("PRAGMA integrity_check")]
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if findings == ["ok"] else findings


def _one_line(text: object) -> str:
    return " ".join(str(text).split()).replace("*** in database main *** ", "")
