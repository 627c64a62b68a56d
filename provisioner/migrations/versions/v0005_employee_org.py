"""Employees keep their department, location and directory groups (console search, roles).

Revision ID: v0005_employee_org
Revises: v0004_announcements
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0005_employee_org"
down_revision: str | None = "v0004_announcements"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # ADD COLUMN with NULL defaults: no table rewrite on SQLite or PostgreSQL.
    op.add_column("employees", sa.Column("department", sa.String(255)))
    op.add_column("employees", sa.Column("location", sa.String(255)))
    op.add_column("employees", sa.Column("groups", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("employees") as batch:
        batch.drop_column("groups")
        batch.drop_column("location")
        batch.drop_column("department")
