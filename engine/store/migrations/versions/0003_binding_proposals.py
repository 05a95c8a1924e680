"""Review mode: the secondary's proposed binding (narrower directions) beside the version in force;
the embedded tracker's users with their e-mail addresses (user fields matched by e-mail).

Revision ID: 0003_binding_proposals
Revises: 0002_config_authority
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_binding_proposals"
down_revision = "0002_config_authority"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proposal", sa.String(), nullable=False, server_default=""))
    op.create_table(
        "trackeruser",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("trackeruser", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trackeruser_email"), ["email"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trackeruser", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trackeruser_email"))
    op.drop_table("trackeruser")
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.drop_column("proposal")
