"""Announcements: posts, per-person recipients (acknowledgement only), notices, bot DMs.

Revision ID: v0004_announcements
Revises: v0003_rooms
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0004_announcements"
down_revision: str | None = "v0003_rooms"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "announcements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("target", sa.JSON, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("requires_ack", sa.Boolean, nullable=False),
        sa.Column("deadline", sa.DateTime),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("recipients_total", sa.Integer, nullable=False),
        sa.Column("delivered_total", sa.Integer, nullable=False),
        sa.Column("devices_total", sa.Integer, nullable=False),
        sa.Column("final_counts", sa.JSON),
        sa.Column("purged_at", sa.DateTime),
    )
    op.create_table(
        "announcement_posts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("announcement_id", sa.Integer,
                  sa.ForeignKey("announcements.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("room_id", sa.String(255), nullable=False, index=True),
        sa.Column("event_id", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "announcement_recipients",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("announcement_id", sa.Integer,
                  sa.ForeignKey("announcements.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("user_id", sa.String(255), nullable=False, index=True),
        sa.Column("employee_id", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(1024), nullable=False),
        sa.Column("department", sa.String(255)),
        sa.Column("manager_user_id", sa.String(255)),
        sa.Column("room_id", sa.String(255)),
        sa.Column("devices", sa.Integer, nullable=False),
        sa.Column("seen_at", sa.DateTime),
        sa.Column("acked_at", sa.DateTime),
        sa.Column("ack_via", sa.String(16)),
        sa.UniqueConstraint("announcement_id", "user_id"),
    )
    op.create_table(
        "announcement_notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("announcement_id", sa.Integer,
                  sa.ForeignKey("announcements.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("user_id", sa.String(255), nullable=False, index=True),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("claimed_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("room_id", sa.String(255)),
        sa.Column("event_id", sa.String(255), index=True),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("announcement_id", "user_id", "stage"),
    )
    op.create_table(
        "bot_direct_rooms",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("room_id", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("bot_direct_rooms", "announcement_notices", "announcement_recipients",
                  "announcement_posts", "announcements"):
        op.drop_table(table)
