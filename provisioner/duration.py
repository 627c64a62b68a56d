"""Durations as Synapse writes them in homeserver.yaml: a whole number and one unit.

`1d`, `52w`, `2y`: s, m, h, d, w and y (a year is 365 days, as Synapse counts it), so a
value means the same to the room policy, to `init` and to Synapse's own parser.
"""

from __future__ import annotations

import re

UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 7 * 86_400_000, "y": 365 * 86_400_000}
EXPECTED = "a duration such as 1d, 52w or 2y (a whole number and one of s, m, h, d, w, y)"
_DURATION = re.compile(r"^([1-9][0-9]{0,8})(s|m|h|d|w|y)$")


def duration_ms(value: object) -> int | None:
    """Milliseconds of a duration string, or None when `value` is not one."""
    if not isinstance(value, str):
        return None
    found = _DURATION.match(value)
    if found is None:
        return None
    return int(found.group(1)) * UNITS_MS[found.group(2)]


def describe_ms(ms: int) -> str:
    """The largest unit that divides `ms` exactly: 63072000000 -> '2y'."""
    for unit, size in sorted(UNITS_MS.items(), key=lambda item: -item[1]):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
