"""`hauspost serve`: durable queue of accepted HR changes, SCIM resources, webhook replay cache.

Revision ID: v0002_service
Revises: v0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0002_service"
down_revision: str | None = "v0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "service_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target", sa.String(255), nullable=False, index=True),
        sa.Column("dedupe_key", sa.String(255), index=True),
        sa.Column("payload", sa.JSON),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("not_before", sa.DateTime, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False, index=True),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("last_error", sa.Text),
    )
    op.create_table(
        "scim_resources",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("resource_type", sa.String(32), nullable=False, index=True),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("employee_id", sa.String(255), index=True),
        sa.Column("user_id", sa.String(255), unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "webhook_seen",
        sa.Column("signature", sa.String(128), primary_key=True),
        sa.Column("received_at", sa.DateTime, nullable=False, index=True),
    )


def downgrade() -> None:
    for table in ("webhook_seen", "scim_resources", "service_jobs"):
        op.drop_table(table)
