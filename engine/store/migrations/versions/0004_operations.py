"""Operations: advanced settings per synchronization, acknowledgements and resends, provenance of
field values, ignored issues, the change that stopped a side, REST API tokens and notifications.

Revision ID: 0004_operations
Revises: 0003_binding_proposals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_operations"
down_revision = "0003_binding_proposals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("synchronization", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settings", sa.String(), nullable=False, server_default="{}"))
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel_error_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("failure", sa.String(), nullable=False, server_default=""))
    with op.batch_alter_table("issuepair", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ignored", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("acked_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("acked_seq", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("resend_at", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("fieldstate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(), nullable=False, server_default=""))
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acked", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "apitoken",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("last_used", sa.DateTime(), nullable=True),
        sa.Column("revoked", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "notifyrecipient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_key", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sync_key", "address"),
    )
    with op.batch_alter_table("notifyrecipient", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifyrecipient_sync_key"), ["sync_key"], unique=False)
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("recipients", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.create_index("ix_notification_sync_kind", ["sync_key", "kind", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_sync_kind")
    op.drop_table("notification")
    with op.batch_alter_table("notifyrecipient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifyrecipient_sync_key"))
    op.drop_table("notifyrecipient")
    op.drop_table("apitoken")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("acked")
    with op.batch_alter_table("fieldstate", schema=None) as batch_op:
        batch_op.drop_column("source")
    with op.batch_alter_table("issuepair", schema=None) as batch_op:
        for name in ("resend_at", "acked_seq", "acked_epoch", "ignored"):
            batch_op.drop_column(name)
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.drop_column("failure")
        batch_op.drop_column("channel_error_since")
    with op.batch_alter_table("synchronization", schema=None) as batch_op:
        batch_op.drop_column("settings")
