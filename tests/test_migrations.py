"""Schema migrations: the revisions build what the models describe, and old homes are stamped."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from backbone_tui.cli import main
from engine.service.installation import Installation
from engine.store import migrations

BASELINE = "0001_baseline"


def test_the_newest_revision_is_known_without_alembic() -> None:
    assert migrations.head() == migrations.HEAD


def test_the_revisions_build_what_the_models_describe(tmp_path: Path) -> None:
    """A model change without its revision fails here (a new home takes the models' tables)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as connection:
        config = migrations._config(connection)
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        command.upgrade(config, "head")
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        assert compare_metadata(context, SQLModel.metadata) == []
        assert migrations.current(connection) == migrations.head()
    engine.dispose()


def test_a_home_made_before_migrations_is_stamped_and_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "h"
    inst = Installation(home)
    inst.tracker.create_project("ACME", "Acme")
    inst.tracker.create_issue("ACME", "Task", {"summary": "kept"}, as_user="alice")
    inst.close()
    engine = create_engine(f"sqlite:///{home / 'backbone.db'}")
    with engine.begin() as old:  # the schema homes had before migrations, as they left it
        command.downgrade(migrations._config(old), BASELINE)
        old.exec_driver_sql("DROP TABLE alembic_version")
    engine.dispose()
    assert main(["--home", str(home), "issue", "list"]) == 0
    assert "kept" in capsys.readouterr().out
    with sqlite3.connect(home / "backbone.db") as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    connection.close()
    assert revision == migrations.head()
