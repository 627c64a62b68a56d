"""Room intents: every action of a room sync's plan, written down before the first request
and deleted in the transaction that writes the action's audit row (docs/org-rooms.md,
"When a room sync dies"). A row left behind is a change whose audit row is missing; the
next room sync records it late if Synapse has it.

Revision ID: v0008_room_intents
Revises: v0007_gdpr
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0008_room_intents"
down_revision: str | None = "v0007_gdpr"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "room_intents",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("action", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("room_intents")
