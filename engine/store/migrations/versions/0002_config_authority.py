"""Configuration authority: each side's draft, the pending version, the terms in force, and
every version that was in force (`configversion`).

Revision ID: 0002_config_authority
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_config_authority"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

NEW_SIDE_COLUMNS = (
    "draft_text",
    "terms_json",
    "pending_text",
    "pending_terms",
    "pending_message",
)


def upgrade() -> None:
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        for name in NEW_SIDE_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("pending_version", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_published", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("start_when_in_force", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "configversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("side_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("terms_json", sa.String(), nullable=False),
        sa.Column("config_text", sa.String(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("narrowed", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("configversion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_configversion_side_id"), ["side_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("configversion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_configversion_side_id"))
    op.drop_table("configversion")
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.drop_column("start_when_in_force")
        batch_op.drop_column("last_published")
        batch_op.drop_column("pending_version")
        for name in reversed(NEW_SIDE_COLUMNS):
            batch_op.drop_column(name)
