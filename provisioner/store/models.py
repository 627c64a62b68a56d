"""SQLAlchemy models of the provisioner's state: employees, accounts, runs, audit log.

The schema itself is created by the Alembic migrations in `provisioner/migrations`, never
by `create_all`, so a deployed database and a fresh one always have the same shape.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class EmployeeRow(Base):
    """The last directory record seen for an employee (for `offboard <employee-id>` and audit)."""

    __tablename__ = "employees"

    employee_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    localpart: Mapped[str] = mapped_column(String(255), index=True)
    display_name: Mapped[str] = mapped_column(String(1024))
    email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))
    leave_date: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(255), default="")
    department: Mapped[str | None] = mapped_column(String(255))
    location: Mapped[str | None] = mapped_column(String(255))
    #: Directory groups, sorted (console roles are mapped from them).
    groups: Mapped[list[str] | None] = mapped_column(JSON)
    #: Preferred language code from the directory ("de", "en"), if it has one.
    language: Mapped[str | None] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccountRow(Base):
    """The employee <-> Matrix account link (written once) and what we last applied."""

    __tablename__ = "accounts"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    employee_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_run_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("runs.id"))
    #: The display name and e-mail we last set; Synapse's listing has no e-mails, so
    #: e-mail drift is judged against this.
    display_name: Mapped[str | None] = mapped_column(String(1024))
    email: Mapped[str | None] = mapped_column(String(320))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Offboarded by hand: sync never reactivates it until the directory also lets go.
    hold: Mapped[bool] = mapped_column(Boolean, default=False)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deactivation_reason: Mapped[str | None] = mapped_column(Text)
    #: GDPR erasure done (Synapse erase + the store pseudonymised); ids are pseudonyms then.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(32))
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AuditRow(Base):
    """Append-only: no update or delete API, a flush guard, and database triggers."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("runs.id"), index=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RunLockRow(Base):
    """At most one row per lock name: the primary key makes a second holder fail."""

    __tablename__ = "run_lock"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
