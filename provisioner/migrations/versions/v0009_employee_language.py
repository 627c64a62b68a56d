"""Employees keep their preferred language from the directory (reminders and manager
summaries in the person's language).

Revision ID: v0009_employee_language
Revises: v0008_room_intents
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0009_employee_language"
down_revision: str | None = "v0008_room_intents"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # ADD COLUMN with a NULL default: no table rewrite on SQLite or PostgreSQL.
    op.add_column("employees", sa.Column("language", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("employees") as batch:
        batch.drop_column("language")
