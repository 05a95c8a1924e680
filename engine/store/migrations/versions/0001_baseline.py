"""Baseline: the schema of every home made before migrations (schema version 3).

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("media_type", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("stored_name", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("marker", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attachment_issue_id"), ["issue_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_attachment_marker"), ["marker"], unique=False)

    op.create_table(
        "changelog",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("op", sa.String(), nullable=False),
        sa.Column("data", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("changelog", schema=None) as batch_op:
        batch_op.create_index("ix_changelog_project_id", ["project", "id"], unique=False)

    op.create_table(
        "comment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("marker", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comment_issue_id"), ["issue_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_comment_marker"), ["marker"], unique=False)

    op.create_table(
        "customfield",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("options", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project", "name"),
    )
    with op.batch_alter_table("customfield", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customfield_project"), ["project"], unique=False)

    op.create_table(
        "fieldstate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("side_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.String(), nullable=False),
        sa.Column("mapping_id", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("at", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("side_id", "pair_id", "mapping_id"),
    )
    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("side_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.String(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_history_side_id"), ["side_id"], unique=False)

    op.create_table(
        "installation",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "issue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("issue_type", sa.String(), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("priority", sa.String(), nullable=False),
        sa.Column("labels", sa.String(), nullable=False),
        sa.Column("assignee", sa.String(), nullable=True),
        sa.Column("reporter", sa.String(), nullable=False),
        sa.Column("due_date", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("custom", sa.String(), nullable=False),
        sa.Column("sync_marker", sa.String(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_issue_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_issue_project"), ["project"], unique=False)
        batch_op.create_index(batch_op.f("ix_issue_sync_marker"), ["sync_marker"], unique=False)

    op.create_table(
        "issuelink",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("marker", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("issuelink", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_issuelink_marker"), ["marker"], unique=False)
        batch_op.create_index(batch_op.f("ix_issuelink_source_id"), ["source_id"], unique=False)

    op.create_table(
        "issuepair",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("side_id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.String(), nullable=False),
        sa.Column("issue_id", sa.String(), nullable=True),
        sa.Column("out_epoch", sa.Integer(), nullable=False),
        sa.Column("out_seq", sa.Integer(), nullable=False),
        sa.Column("in_epoch", sa.Integer(), nullable=False),
        sa.Column("in_seq", sa.Integer(), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("side_id", "pair_id"),
    )
    with op.batch_alter_table("issuepair", schema=None) as batch_op:
        batch_op.create_index("ix_pair_side_issue", ["side_id", "issue_id"], unique=False)

    op.create_table(
        "message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("side_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("uuid", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("pair_id", sa.String(), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("folder", sa.String(), nullable=False),
        sa.Column("hold", sa.String(), nullable=True),
        sa.Column("file_name", sa.String(), nullable=False),
        sa.Column("original_name", sa.String(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("reason_code", sa.String(), nullable=False),
        sa.Column("reason_text", sa.String(), nullable=False),
        sa.Column("payload", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", sa.Float(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.create_index("ix_message_folder_side", ["folder", "side_id"], unique=False)
        batch_op.create_index(
            "ix_message_order", ["side_id", "direction", "pair_id", "epoch", "seq"], unique=False
        )
        batch_op.create_index("ix_message_side_folder", ["side_id", "folder", "id"], unique=False)
        batch_op.create_index("ix_message_uuid", ["side_id", "uuid"], unique=False)

    op.create_table(
        "project",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "setting",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "synchronization",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        sa.Column("sync_user", sa.String(), nullable=False),
        sa.Column("review", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("status_detail", sa.String(), nullable=False),
        sa.Column("draft_state", sa.String(), nullable=False),
        sa.Column("encryption", sa.Boolean(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "syncside",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_key", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("folder", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("partner_endpoint", sa.String(), nullable=False),
        sa.Column("partner_project", sa.String(), nullable=False),
        sa.Column("exchange", sa.String(), nullable=True),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("config_text", sa.String(), nullable=False),
        sa.Column("pairing_secret", sa.String(), nullable=False),
        sa.Column("own_fingerprint", sa.String(), nullable=False),
        sa.Column("partner_fingerprint", sa.String(), nullable=False),
        sa.Column("own_key_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("partner_key_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mail_settings", sa.String(), nullable=False),
        sa.Column("channel_error", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_syncside_sync_key"), ["sync_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("syncside", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_syncside_sync_key"))

    op.drop_table("syncside")
    op.drop_table("synchronization")
    op.drop_table("setting")
    op.drop_table("project")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index("ix_message_uuid")
        batch_op.drop_index("ix_message_side_folder")
        batch_op.drop_index("ix_message_order")
        batch_op.drop_index("ix_message_folder_side")

    op.drop_table("message")
    with op.batch_alter_table("issuepair", schema=None) as batch_op:
        batch_op.drop_index("ix_pair_side_issue")

    op.drop_table("issuepair")
    with op.batch_alter_table("issuelink", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issuelink_source_id"))
        batch_op.drop_index(batch_op.f("ix_issuelink_marker"))

    op.drop_table("issuelink")
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issue_sync_marker"))
        batch_op.drop_index(batch_op.f("ix_issue_project"))
        batch_op.drop_index(batch_op.f("ix_issue_parent_id"))

    op.drop_table("issue")
    op.drop_table("installation")
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_history_side_id"))

    op.drop_table("history")
    op.drop_table("fieldstate")
    with op.batch_alter_table("customfield", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customfield_project"))

    op.drop_table("customfield")
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comment_marker"))
        batch_op.drop_index(batch_op.f("ix_comment_issue_id"))

    op.drop_table("comment")
    with op.batch_alter_table("changelog", schema=None) as batch_op:
        batch_op.drop_index("ix_changelog_project_id")

    op.drop_table("changelog")
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachment_marker"))
        batch_op.drop_index(batch_op.f("ix_attachment_issue_id"))

    op.drop_table("attachment")
