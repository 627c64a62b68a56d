"""Company time: reading a date-time an admin typed, and writing one for employees to read.

A date-time without an offset means the company's clock (`directory.time_zone`), because
that is the clock the people who type and read it live by. Wall-clock times that do not
exist (the hour skipped when the clocks go forward) or exist twice (the hour repeated when
they go back) are refused with a message that asks for an offset: guessing would move a
deadline by an hour.

Formatting uses a small table of German and English names instead of the C locale (not
installed on servers) or Babel (one more dependency for twelve month names).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from provisioner.errors import EXIT_USAGE, HauspostError


class TimeInputError(HauspostError):
    """A date-time given on the command line or in the console that cannot be used."""

    exit_code = EXIT_USAGE


_WEEKDAYS = {"de": ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."),
             "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}
# Duden's abbreviations: short names (Mai, Juni, Juli, März) are written out.
_MONTHS = {"de": ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.",
                  "Okt.", "Nov.", "Dez."),
           "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                  "Nov", "Dec")}
#: German names of the zone abbreviations tzdata writes in English.
_ZONE_NAMES = {"de": {"CET": "MEZ", "CEST": "MESZ", "WET": "WEZ", "WEST": "WESZ",
                      "EET": "OEZ", "EEST": "OESZ"}}


def parse_company_time(value: str, tz: ZoneInfo, option: str) -> datetime:
    """An ISO date-time; without an offset it is wall-clock time in `tz`."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise TimeInputError(f"{option}: expected an ISO date-time like 2026-12-01T12:00 "
                             f"(company time, {tz.key}) or 2026-12-01T12:00+01:00, "
                             f"got {value!r}") from None
    return parsed if parsed.tzinfo is not None else in_company_time(parsed, tz, option)


def in_company_time(naive: datetime, tz: ZoneInfo, option: str) -> datetime:
    """A wall-clock time in `tz`; refused when that wall-clock time is skipped or repeated."""
    parsed = naive
    first, second = parsed.replace(tzinfo=tz, fold=0), parsed.replace(tzinfo=tz, fold=1)
    round_trip = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if round_trip != parsed:
        raise TimeInputError(f"{option}: {parsed:%Y-%m-%d %H:%M} does not exist in {tz.key} "
                             "(the clocks go forward then); give a time outside that hour "
                             "or an offset")
    if first.utcoffset() != second.utcoffset():
        raise TimeInputError(
            f"{option}: {parsed:%Y-%m-%d %H:%M} occurs twice in {tz.key} (the clocks go back "
            f"then); add the offset: {_iso_offset(first)} for the first, "
            f"{_iso_offset(second)} for the second")
    return first


def _iso_offset(dt: datetime) -> str:
    offset = dt.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def zone_abbreviation(dt: datetime, language: str) -> str:
    """'MEZ' / 'CET', 'UTC'; zones without a letter abbreviation get 'UTC+03'."""
    name = dt.strftime("%Z")
    if not name or name[0] in "+-":
        return f"UTC{_iso_offset(dt)}"
    return _ZONE_NAMES.get(language, {}).get(name, name)


def format_local(dt: datetime, tz: ZoneInfo, language: str, *, weekday: bool = True) -> str:
    """'Mo., 7. Dez. 2026, 12:00 MEZ' / 'Mon 7 Dec 2026, 12:00 CET'."""
    local = dt.astimezone(tz)
    day = local.weekday()
    month = _MONTHS[language][local.month - 1]
    zone = zone_abbreviation(local, language)
    if language == "de":
        date = f"{local.day}. {month} {local.year}"
        prefix = f"{_WEEKDAYS['de'][day]}, " if weekday else ""
    else:
        date = f"{local.day} {month} {local.year}"
        prefix = f"{_WEEKDAYS['en'][day]} " if weekday else ""
    return f"{prefix}{date}, {local:%H:%M} {zone}"


def format_day(dt: datetime, tz: ZoneInfo, language: str) -> str:
    """'7. Dez.' / '7 Dec' (chart marks)."""
    local = dt.astimezone(tz)
    month = _MONTHS[language][local.month - 1]
    return f"{local.day}. {month}" if language == "de" else f"{local.day} {month}"
