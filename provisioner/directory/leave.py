"""When a leaver loses access: at the end of the leave date in the company's time zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from provisioner.employee import Employee, Status


def access_ends_at(leave_date: date, tz: ZoneInfo) -> datetime:
    """The first instant after the last working day: midnight starting the next day in `tz`.

    Built from the wall-clock date rather than by adding 24 h, so that a leave date on a
    DST change day still ends at local midnight.
    """
    return datetime.combine(leave_date + timedelta(days=1), time(0), tzinfo=tz)


def effective_status(employee: Employee, now: datetime, tz: ZoneInfo) -> Status:
    """The status the planner should act on at `now` (which must carry a time zone).

    INACTIVE if the source says so, or if the leave date has ended in the company's time
    zone; the leave date itself is still a working day.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("effective_status needs an aware datetime for `now` (e.g. UTC)")
    if employee.status is Status.INACTIVE:
        return Status.INACTIVE
    if employee.leave_date is not None and now >= access_ends_at(employee.leave_date, tz):
        return Status.INACTIVE
    return Status.ACTIVE
