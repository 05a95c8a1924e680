"""Database engine: SQLite (WAL, `BEGIN IMMEDIATE` for writes) by default, URL-configurable."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from . import models  # noqa: F401  (registers the tables)


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

    def create_all(self) -> None:
        SQLModel.metadata.create_all(self.engine)

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
