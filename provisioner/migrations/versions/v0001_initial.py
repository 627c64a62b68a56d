"""Initial schema: employees, accounts, runs, append-only audit log, run lock.

Revision ID: v0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

APPEND_ONLY_MESSAGE = "audit_log is append-only"
LINK_MESSAGE = "the employee/account link is written once and never changed"

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END""",
    f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END""",
    f"""CREATE TRIGGER accounts_link_immutable BEFORE UPDATE OF user_id, employee_id ON accounts
        WHEN OLD.user_id IS NOT NEW.user_id OR OLD.employee_id IS NOT NEW.employee_id
        BEGIN SELECT RAISE(ABORT, '{LINK_MESSAGE}'); END""",
    f"""CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
        BEGIN SELECT RAISE(ABORT, '{LINK_MESSAGE}'); END""",
)

POSTGRES_TRIGGERS = (
    f"""CREATE FUNCTION hauspost_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION hauspost_audit_append_only()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION hauspost_audit_append_only()""",
    f"""CREATE FUNCTION hauspost_link_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' OR OLD.user_id IS DISTINCT FROM NEW.user_id
             OR OLD.employee_id IS DISTINCT FROM NEW.employee_id THEN
            RAISE EXCEPTION '{LINK_MESSAGE}';
          END IF;
          RETURN NEW;
        END $$""",
    """CREATE TRIGGER accounts_link_immutable BEFORE UPDATE OR DELETE ON accounts
        FOR EACH ROW EXECUTE FUNCTION hauspost_link_immutable()""",
)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("summary", sa.JSON),
    )
    op.create_table(
        "employees",
        sa.Column("employee_id", sa.String(255), primary_key=True),
        sa.Column("localpart", sa.String(255), nullable=False, index=True),
        sa.Column("display_name", sa.String(1024), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("leave_date", sa.Date),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("first_seen_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("employee_id", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_run_id", sa.Integer, sa.ForeignKey("runs.id")),
        sa.Column("display_name", sa.String(1024)),
        sa.Column("email", sa.String(320)),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("hold", sa.Boolean, nullable=False),
        sa.Column("deactivated_at", sa.DateTime),
        sa.Column("deactivation_reason", sa.Text),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("actor", sa.String(255), nullable=False, index=True),
        sa.Column("action", sa.String(64), nullable=False, index=True),
        sa.Column("target", sa.String(255), nullable=False, index=True),
        sa.Column("reason", sa.Text),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), index=True),
        sa.Column("details", sa.JSON),
    )
    op.create_table(
        "run_lock",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    # Other databases rely on the code-level guard only (documented in docs/accounts.md).
    triggers = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRES_TRIGGERS}.get(dialect, ())
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS accounts_link_immutable ON accounts")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS hauspost_link_immutable()")
        op.execute("DROP FUNCTION IF EXISTS hauspost_audit_append_only()")
    for table in ("run_lock", "audit_log", "accounts", "employees", "runs"):
        op.drop_table(table)
