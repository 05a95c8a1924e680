"""Real trackers: the Jira and Redmine accounts, each side's tracker, and the changes read from a
remote tracker with where reading stopped.

Revision ID: 0005_trackers
Revises: 0004_operations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_trackers"
down_revision = "0004_operations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tracker", sa.String(), nullable=False, server_default="embedded"))
    op.create_table(
        "trackeraccount",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("api_version", sa.Integer(), nullable=False),
        sa.Column("auth", sa.String(), nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("secret", sa.String(), nullable=False),
        sa.Column("options", sa.String(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "remotechange",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tracker", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("remote_key", sa.String(), nullable=False),
        sa.Column("issue_id", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("op", sa.String(), nullable=False),
        sa.Column("data", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tracker", "remote_key"),
    )
    with op.batch_alter_table("remotechange", schema=None) as batch_op:
        batch_op.create_index(
            "ix_remotechange_tracker_project_id", ["tracker", "project", "id"], unique=False
        )
    op.create_table(
        "remotecursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tracker", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("cursor", sa.String(), nullable=False),
        sa.Column("polled", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tracker", "project"),
    )


def downgrade() -> None:
    op.drop_table("remotecursor")
    with op.batch_alter_table("remotechange", schema=None) as batch_op:
        batch_op.drop_index("ix_remotechange_tracker_project_id")
    op.drop_table("remotechange")
    op.drop_table("trackeraccount")
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.drop_column("tracker")
