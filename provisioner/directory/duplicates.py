"""Duplicate logins and employee ids across a whole read: every copy is reported, none kept.

Keeping "the first" would hand an account to whichever entry the directory happened to
return first; reporting all of them makes a person fix the data instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from provisioner.employee import Employee, SourceProblem

#: (location, employee): where an entry came from, for the report.
Located = tuple[str, Employee]


def duplicate_reasons(locations: Sequence[str],
                      keys: Mapping[str, Sequence[str | None]]) -> dict[int, str]:
    """index -> why that entry is a duplicate, for every entry sharing a key with another.

    `keys` maps a label ("employee id", "login") to one key per entry; None is not compared.
    """
    reasons: dict[int, list[str]] = defaultdict(list)
    for label, values in keys.items():
        by_value: dict[str, list[int]] = defaultdict(list)
        for index, value in enumerate(values):
            if value is not None:
                by_value[value].append(index)
        for value, indexes in by_value.items():
            if len(indexes) < 2:
                continue
            for i in indexes:
                others = ", ".join(locations[j] for j in indexes if j != i)
                reasons[i].append(f"duplicate {label} {value!r} (also at {others})")
    return {i: "; ".join(r) + "; skipped" for i, r in reasons.items()}


def reject_duplicates(
    entries: Sequence[Located], skipped: Sequence[SourceProblem] = (),
) -> tuple[tuple[Employee, ...], tuple[SourceProblem, ...]]:
    """Drop every entry whose employee id or localpart occurs more than once; report each.

    `skipped` are the problems of entries already left out: an entry sharing a login or id
    with one of them is a duplicate too (two people claim it; neither gets it).
    """
    count = len(entries)
    reasons = duplicate_reasons(
        [location for location, _ in entries] + [p.location for p in skipped],
        {"employee id": [e.employee_id for _, e in entries] + [p.employee_id for p in skipped],
         "login": [e.localpart for _, e in entries] + [p.localpart for p in skipped]},
    )
    kept = tuple(e for i, (_, e) in enumerate(entries) if i not in reasons)
    problems = tuple(
        SourceProblem(entries[i][0], reason, employee_id=entries[i][1].employee_id,
                      localpart=entries[i][1].localpart)
        for i, reason in sorted(reasons.items()) if i < count
    )
    return kept, problems
