"""Offboarding at leave dates between directory syncs: linked, still active accounts whose
employee's leave date (as last read from the directory) has ended in the company's time
zone get an offboarding job. A job that failed for good is not queued again."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioner.directory.leave import access_ends_at
from provisioner.store.jobs import KIND_OFFBOARD, JobSpec
from provisioner.store.models import AccountRow, EmployeeRow
from provisioner.store.service_models import JOB_FAILED, ServiceJobRow


def due_leavers(session: Session, now: datetime, tz: ZoneInfo) -> list[JobSpec]:
    rows = session.execute(
        select(AccountRow.user_id, EmployeeRow.employee_id, EmployeeRow.leave_date)
        .join(EmployeeRow, EmployeeRow.employee_id == AccountRow.employee_id)
        .where(AccountRow.active.is_(True), EmployeeRow.leave_date.is_not(None))
        .order_by(AccountRow.user_id)).all()
    failed = set(session.scalars(select(ServiceJobRow.dedupe_key)
                                 .where(ServiceJobRow.state == JOB_FAILED)))
    out: list[JobSpec] = []
    for user_id, employee_id, leave_date in rows:
        key = f"offboard:{user_id}"
        if leave_date is None or now < access_ends_at(leave_date, tz) or key in failed:
            continue
        out.append(JobSpec(kind=KIND_OFFBOARD, target=user_id,
                           reason=f"leave date {leave_date} has passed",
                           payload={"user_id": user_id, "employee_id": employee_id},
                           dedupe_key=key))
    return out
