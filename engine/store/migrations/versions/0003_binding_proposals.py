"""Review mode: the secondary's proposed binding (narrower directions) beside the version in force.

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


def downgrade() -> None:
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.drop_column("proposal")
