"""Repository functions over the store. Links are inserted once; audit rows only appended.

There is deliberately no function that updates or deletes an audit row or a link.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from provisioner.employee import Employee, Link
from provisioner.store.models import AccountRow, AuditRow, EmployeeRow, RunRow

_EMPLOYEES = cast(Table, EmployeeRow.__table__)

# --- accounts ----------------------------------------------------------------------------


def load_links(session: Session) -> list[Link]:
    rows = session.execute(select(AccountRow.employee_id, AccountRow.user_id, AccountRow.email,
                                  AccountRow.hold, AccountRow.display_name,
                                  AccountRow.active)).all()
    return [Link(employee_id=r[0], user_id=r[1], email=r[2], hold=bool(r[3]),
                 display_name=r[4], active=bool(r[5])) for r in rows]


def get_account(session: Session, user_id: str) -> AccountRow | None:
    return session.get(AccountRow, user_id)


def get_account_by_employee(session: Session, employee_id: str) -> AccountRow | None:
    return session.scalars(
        select(AccountRow).where(AccountRow.employee_id == employee_id)).first()


def insert_link(session: Session, *, employee_id: str, user_id: str, now: datetime,
                run_id: int | None, display_name: str | None, email: str | None) -> AccountRow:
    """Store the employee <-> account link. Raises IntegrityError if either side is taken."""
    row = AccountRow(user_id=user_id, employee_id=employee_id, created_at=now,
                     created_run_id=run_id, display_name=display_name, email=email,
                     active=True, hold=False)
    session.add(row)
    return row


def record_deactivated(row: AccountRow, *, now: datetime, reason: str, hold: bool) -> None:
    row.active = False
    row.deactivated_at = now
    row.deactivation_reason = reason
    row.hold = hold or row.hold


# --- employees ---------------------------------------------------------------------------


def _employee_values(e: Employee, source: str) -> dict[str, Any]:
    return {"localpart": e.localpart, "display_name": e.display_name, "email": e.email,
            "status": e.status.value, "leave_date": e.leave_date, "source": source,
            "department": e.department, "location": e.location, "groups": sorted(e.groups),
            "language": e.language}


_EMPLOYEE_FIELDS = ("localpart", "display_name", "email", "status", "leave_date", "source",
                    "department", "location", "groups", "language")


def save_employees(session: Session, employees: Iterable[Employee], *, source: str,
                   now: datetime) -> int:
    """Insert new and update changed employee records; returns how many rows changed.

    Core statements in bulk: a sync of 10,000 employees must not spend seconds here.
    """
    table = _EMPLOYEES
    columns = [table.c.employee_id, *(table.c[f] for f in _EMPLOYEE_FIELDS)]
    existing = {row[0]: tuple(row[1:]) for row in session.execute(select(*columns))}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for emp in employees:
        values = _employee_values(emp, source)
        current = existing.get(emp.employee_id)
        if current is None:
            inserts.append({"employee_id": emp.employee_id, "first_seen_at": now,
                            "updated_at": now, **values})
        elif current != tuple(values[f] for f in _EMPLOYEE_FIELDS):
            updates.append({"b_id": emp.employee_id, "updated_at": now, **values})
    if inserts:
        session.execute(insert(table), inserts)
    if updates:
        session.execute(update(table).where(table.c.employee_id == bindparam("b_id")),
                        updates)
    return len(inserts) + len(updates)


def get_employee(session: Session, employee_id: str) -> EmployeeRow | None:
    return session.get(EmployeeRow, employee_id)


# --- runs --------------------------------------------------------------------------------


def start_run(session: Session, *, kind: str, actor: str, now: datetime, dry_run: bool,
              forced: bool) -> RunRow:
    run = RunRow(kind=kind, actor=actor, started_at=now, dry_run=dry_run, forced=forced,
                 status="running")
    session.add(run)
    session.flush()
    return run


def finish_run(session: Session, run_id: int, *, now: datetime, status: str,
               summary: dict[str, Any]) -> None:
    run = session.get(RunRow, run_id)
    if run is None:
        raise LookupError(f"run {run_id} not found")
    run.finished_at = now
    run.status = status
    run.summary = summary


# --- audit -------------------------------------------------------------------------------


def append_audit(session: Session, *, actor: str, action: str, target: str, now: datetime,
                 reason: str | None = None, run_id: int | None = None,
                 details: dict[str, Any] | None = None) -> AuditRow:
    row = AuditRow(at=now, actor=actor, action=action, target=target, reason=reason,
                   run_id=run_id, details=details)
    session.add(row)
    return row


@dataclass(frozen=True)
class AuditQuery:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    run_id: int | None = None
    limit: int | None = None


def query_audit(session: Session, query: AuditQuery) -> Sequence[AuditRow]:
    """Audit rows matching every given filter, oldest first (bound parameters only)."""
    stmt = select(AuditRow)
    if query.since is not None:
        stmt = stmt.where(AuditRow.at >= query.since)
    if query.until is not None:
        stmt = stmt.where(AuditRow.at < query.until)
    if query.actor is not None:
        stmt = stmt.where(AuditRow.actor == query.actor)
    if query.action is not None:
        stmt = stmt.where(AuditRow.action == query.action)
    if query.target is not None:
        stmt = stmt.where(AuditRow.target == query.target)
    if query.run_id is not None:
        stmt = stmt.where(AuditRow.run_id == query.run_id)
    stmt = stmt.order_by(AuditRow.id)
    if query.limit is not None:
        # Newest N, still printed oldest first.
        inner = stmt.order_by(None).order_by(AuditRow.id.desc()).limit(query.limit).subquery()
        return list(reversed(session.scalars(
            select(AuditRow).join(inner, AuditRow.id == inner.c.id).order_by(AuditRow.id.desc())
        ).all()))
    return session.scalars(stmt).all()

