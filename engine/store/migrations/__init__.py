"""Schema migrations (Alembic): a revision per change of the tables; a home is upgraded at open.

`upgrade(database)` brings a database to the newest revision: a new one is built by the
revisions, a home made before migrations existed (it has tables but no `alembic_version`) is
stamped with the baseline first. Nothing calls `create_all` on an existing home."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).parent
BASELINE = "0001_baseline"
#: the newest revision (a test checks it is Alembic's head): a home already there opens without
#: importing Alembic, which costs start-up time and memory in every command
HEAD = "0006_tracker_problems"


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of Backbone TUI knows (read from the revisions)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(HERE))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    """The database's revision, or None when it has none (new, or made before migrations)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(connection: Connection, metadata: MetaData) -> bool:
    """Bring the database to the newest revision; True if anything was done.

    An empty database gets today's tables at once and is stamped with the newest revision
    (Alembic's recipe for a new database; a test checks it equals running every revision)."""
    found = current(connection)
    if found == HEAD:
        return False
    from alembic import command

    config = _config(connection)
    if found is None and not inspect(connection).has_table("synchronization"):
        metadata.create_all(connection)
        command.stamp(config, "head")
        return True
    if found is None:
        command.stamp(config, BASELINE)  # a home from before migrations: it has the baseline's tables
    command.upgrade(config, "head")
    return True
