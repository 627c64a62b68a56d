"""GDPR: legal holds, erased accounts, and the one change an audit row may ever see.

The audit log stays append-only: no row is ever deleted, re-timed or re-labelled. The only
change the triggers allow is pseudonymisation (GDPR Art. 17): inside the one transaction of
`hauspost gdpr erase`, while that transaction holds a row in `pseudonymisation`, the
person's identifiers in actor/target/reason/details are replaced by their pseudonym. The
marker row is deleted before the transaction commits, so no other session ever sees it.
The same window lets the account link carry the pseudonym instead of the Matrix ID.

Revision ID: v0007_gdpr
Revises: v0006_access_reviews
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0007_gdpr"
down_revision: str | None = "v0006_access_reviews"
branch_labels: str | None = None
depends_on: str | None = None

# The messages are v0001's, written out: the statements are constants.
SQLITE_TRIGGERS = (
    "DROP TRIGGER audit_log_no_update",
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        WHEN NOT EXISTS (SELECT 1 FROM pseudonymisation)
          OR NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at OR NEW.action IS NOT OLD.action
          OR NEW.run_id IS NOT OLD.run_id
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    "DROP TRIGGER accounts_link_immutable",
    """CREATE TRIGGER accounts_link_immutable BEFORE UPDATE OF user_id, employee_id ON accounts
        WHEN (OLD.user_id IS NOT NEW.user_id OR OLD.employee_id IS NOT NEW.employee_id)
          AND NOT EXISTS (SELECT 1 FROM pseudonymisation)
        BEGIN SELECT RAISE(ABORT, 'the employee/account link is written once and never changed'); END""",
)

POSTGRES_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION hauspost_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM pseudonymisation)
             AND NEW.id = OLD.id AND NEW.at = OLD.at AND NEW.action = OLD.action
             AND NEW.run_id IS NOT DISTINCT FROM OLD.run_id THEN
            RETURN NEW;
          END IF;
          RAISE EXCEPTION 'audit_log is append-only';
        END $$""",
    """CREATE OR REPLACE FUNCTION hauspost_link_immutable() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'the employee/account link is written once and never changed';
          END IF;
          IF (OLD.user_id IS DISTINCT FROM NEW.user_id
              OR OLD.employee_id IS DISTINCT FROM NEW.employee_id)
             AND NOT EXISTS (SELECT 1 FROM pseudonymisation) THEN
            RAISE EXCEPTION 'the employee/account link is written once and never changed';
          END IF;
          RETURN NEW;
        END $$""",
)


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("employee_id", sa.String(255), nullable=False, index=True),
        sa.Column("set_at", sa.DateTime, nullable=False),
        sa.Column("set_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("lifted_at", sa.DateTime),
        sa.Column("lifted_by", sa.String(255)),
        sa.Column("lift_reason", sa.Text),
    )
    op.create_table(
        "pseudonymisation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
    )
    op.add_column("accounts", sa.Column("erased_at", sa.DateTime))
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRES_TRIGGERS}.get(dialect,
                                                                                     ()):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("v0007_gdpr is not reversible: erased people stay erased")
