"""A tracker account remembers that its credentials were refused, so the pipeline stops using it
until an administrator fixes them (Jira locks an account after a few failed log-ins).

Revision ID: 0006_tracker_problems
Revises: 0005_trackers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_tracker_problems"
down_revision = "0005_trackers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trackeraccount", schema=None) as batch_op:
        batch_op.add_column(sa.Column("problem", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("problem_since", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trackeraccount", schema=None) as batch_op:
        batch_op.drop_column("problem_since")
        batch_op.drop_column("problem")
