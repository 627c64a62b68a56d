"""Managed rooms: policy key <-> room ID link for the org-chart rooms (docs/org-rooms.md).

Revision ID: v0003_rooms
Revises: v0002_service
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0003_rooms"
down_revision: str | None = "v0002_service"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "managed_rooms",
        sa.Column("policy_key", sa.String(255), primary_key=True),
        sa.Column("room_id", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("on_removed", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_run_id", sa.Integer, sa.ForeignKey("runs.id")),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("managed_rooms")
