"""Company time: input without an offset is the company's clock; output in its words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from provisioner.announcements.local_time import (
    TimeInputError,
    format_day,
    format_local,
    parse_company_time,
)

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")


def test_without_offset_is_company_time() -> None:
    parsed = parse_company_time("2026-12-07T12:00", BERLIN, "--ack-by")
    assert parsed.astimezone(UTC) == datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
    summer = parse_company_time("2026-07-01T12:00", BERLIN, "--ack-by")
    assert summer.astimezone(UTC) == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "utc"), [
    ("2026-12-07T12:00+01:00", datetime(2026, 12, 7, 11, 0, tzinfo=UTC)),
    ("2026-12-07T12:00Z", datetime(2026, 12, 7, 12, 0, tzinfo=UTC)),
    ("2026-12-07T12:00-05:00", datetime(2026, 12, 7, 17, 0, tzinfo=UTC)),
])
def test_an_offset_wins_over_the_company_time_zone(value: str, utc: datetime) -> None:
    assert parse_company_time(value, BERLIN, "--ack-by") == utc


def test_utc_company() -> None:
    assert parse_company_time("2026-12-07T12:00", ZoneInfo("UTC"), "--now") == datetime(
        2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_hour_skipped_in_spring_is_refused() -> None:
    with pytest.raises(TimeInputError) as info:
        parse_company_time("2026-03-29T02:30", BERLIN, "--ack-by")
    assert str(info.value) == ("--ack-by: 2026-03-29 02:30 does not exist in Europe/Berlin (the "
                               "clocks go forward then); give a time outside that hour or an "
                               "offset")
    assert info.value.exit_code == 2


def test_the_hour_repeated_in_autumn_needs_an_offset() -> None:
    with pytest.raises(TimeInputError) as info:
        parse_company_time("2026-10-25T02:30", BERLIN, "--ack-by")
    assert str(info.value) == ("--ack-by: 2026-10-25 02:30 occurs twice in Europe/Berlin (the "
                               "clocks go back then); add the offset: +02:00 for the first, "
                               "+01:00 for the second")
    first = parse_company_time("2026-10-25T02:30+02:00", BERLIN, "--ack-by")
    second = parse_company_time("2026-10-25T02:30+01:00", BERLIN, "--ack-by")
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)


def test_around_the_change_the_hours_are_exact() -> None:
    before = parse_company_time("2026-03-29T01:59", BERLIN, "--ack-by")
    after = parse_company_time("2026-03-29T03:00", BERLIN, "--ack-by")
    # (Python subtracts two times of one zone on the wall clock: compare in UTC.)
    assert after.astimezone(UTC) - before.astimezone(UTC) == timedelta(minutes=1)
    assert format_local(before, BERLIN, "de") == "So., 29. März 2026, 01:59 MEZ"
    assert format_local(after, BERLIN, "de") == "So., 29. März 2026, 03:00 MESZ"


def test_garbage_is_one_clear_line() -> None:
    with pytest.raises(TimeInputError, match=r"^--ack-by: expected an ISO date-time like "
                       r"2026-12-01T12:00 \(company time, Europe/Berlin\) or "
                       r"2026-12-01T12:00\+01:00, got 'Montag'$"):
        parse_company_time("Montag", BERLIN, "--ack-by")


@pytest.mark.parametrize(("utc", "de", "en"), [
    (datetime(2026, 12, 7, 11, 0, tzinfo=UTC), "Mo., 7. Dez. 2026, 12:00 MEZ",
     "Mon 7 Dec 2026, 12:00 CET"),
    (datetime(2026, 5, 3, 22, 5, tzinfo=UTC), "Mo., 4. Mai 2026, 00:05 MESZ",
     "Mon 4 May 2026, 00:05 CEST"),
    (datetime(2026, 9, 30, 6, 0, tzinfo=UTC), "Mi., 30. Sept. 2026, 08:00 MESZ",
     "Wed 30 Sep 2026, 08:00 CEST"),
])
def test_german_and_english_dates(utc: datetime, de: str, en: str) -> None:
    assert format_local(utc, BERLIN, "de") == de
    assert format_local(utc, BERLIN, "en") == en


def test_other_zones_and_short_forms() -> None:
    moment = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
    assert format_local(moment, ZoneInfo("UTC"), "de") == "Mo., 7. Dez. 2026, 11:00 UTC"
    assert format_local(moment, ZoneInfo("Europe/London"), "en") == "Mon 7 Dec 2026, 11:00 GMT"
    assert format_local(moment, ZoneInfo("Asia/Dubai"), "en") == "Mon 7 Dec 2026, 15:00 UTC+04:00"
    assert format_local(moment.astimezone(timezone(timedelta(hours=5))), BERLIN, "de",
                        weekday=False) == "7. Dez. 2026, 12:00 MEZ"
    assert (format_day(moment, BERLIN, "de"), format_day(moment, BERLIN, "en")) == (
        "7. Dez.", "7 Dec")
