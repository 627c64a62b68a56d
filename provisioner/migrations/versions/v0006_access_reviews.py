"""Access reviews: who was in which room and why, as found at review time (ISO 27001 A.5.18).

Revision ID: v0006_access_reviews
Revises: v0005_employee_org
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0006_access_reviews"
down_revision: str | None = "v0005_employee_org"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "access_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("access_reviews")
