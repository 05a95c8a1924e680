"""Alembic's environment: runs the revisions on the connection `migrations.upgrade` hands in."""

from __future__ import annotations

from alembic import context


def run() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, render_as_batch=True)  # batch mode: SQLite alters by copy
    with context.begin_transaction():
        context.run_migrations()


if getattr(context, "config", None) is not None:  # run by Alembic, not imported by a module walk
    run()
