"""Leavers lose access at the end of their leave date in the company's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from provisioner.directory.leave import access_ends_at, effective_status
from provisioner.employee import Employee, Status

BERLIN = ZoneInfo("Europe/Berlin")


def leaver(leave: date | None, status: Status = Status.ACTIVE) -> Employee:
    return Employee("E1", "anna", "Anna", status=status, leave_date=leave)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("now", "expected"), [
    # 31 March 2026 is summer time in Berlin (UTC+2): the day ends at 22:00 UTC.
    (utc("2026-03-31T21:59:59"), Status.ACTIVE),
    (utc("2026-03-31T22:00:00"), Status.INACTIVE),
    (utc("2026-03-30T12:00:00"), Status.ACTIVE),
    (utc("2026-04-02T00:00:00"), Status.INACTIVE),
])
def test_leave_date_ends_at_local_midnight(now: datetime, expected: Status) -> None:
    assert effective_status(leaver(date(2026, 3, 31)), now, BERLIN) is expected


def test_winter_leave_date_ends_at_23_utc() -> None:
    employee = leaver(date(2026, 1, 30))
    assert effective_status(employee, utc("2026-01-30T22:59:59"), BERLIN) is Status.ACTIVE
    assert effective_status(employee, utc("2026-01-30T23:00:00"), BERLIN) is Status.INACTIVE


def test_leave_date_on_the_dst_change_day_still_ends_at_local_midnight() -> None:
    # 29 March 2026 has 23 hours in Berlin; the next midnight is CEST (UTC+2).
    assert access_ends_at(date(2026, 3, 29), BERLIN) == utc("2026-03-29T22:00:00")
    # The day before the change ends at CET midnight (UTC+1).
    assert access_ends_at(date(2026, 3, 28), BERLIN) == utc("2026-03-28T23:00:00")


def test_now_in_another_offset_is_compared_as_an_instant() -> None:
    tokyo_now = datetime(2026, 4, 1, 7, 0, tzinfo=timezone(timedelta(hours=9)))  # 22:00 UTC
    assert effective_status(leaver(date(2026, 3, 31)), tokyo_now, BERLIN) is Status.INACTIVE


def test_the_company_time_zone_decides_not_utc() -> None:
    auckland = ZoneInfo("Pacific/Auckland")  # UTC+13 in March
    employee = leaver(date(2026, 3, 31))
    assert effective_status(employee, utc("2026-03-31T10:59:59"), auckland) is Status.ACTIVE
    assert effective_status(employee, utc("2026-03-31T11:00:00"), auckland) is Status.INACTIVE


def test_no_leave_date_stays_active_and_inactive_stays_inactive() -> None:
    now = utc("2026-03-31T12:00:00")
    assert effective_status(leaver(None), now, BERLIN) is Status.ACTIVE
    assert effective_status(leaver(None, Status.INACTIVE), now, BERLIN) is Status.INACTIVE
    future = leaver(date(2030, 1, 1), Status.INACTIVE)
    assert effective_status(future, now, BERLIN) is Status.INACTIVE


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        effective_status(leaver(date(2026, 3, 31)), datetime(2026, 4, 1), BERLIN)
