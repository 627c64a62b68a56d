"""The `retention:` section of the room policy: durations validated once, every mistake
named with file:line and key, and which lifetime each managed room gets."""

from __future__ import annotations

import pytest

from provisioner.duration import describe_ms, duration_ms
from provisioner.errors import EXIT_CONFIG
from provisioner.policy import PolicyError, parse_texts
from provisioner.policy.model import Lifetime

DAY = 86_400_000
ROOMS = """
spaces:
  - key: company
    name: Firma
rooms:
  - key: announcements
    name: Ankündigungen
  - key: project
    for_each: group
    match: "^projekt-"
    name: "{value}"
"""
EXPECTED = "expected a duration such as 1d, 52w or 2y (a whole number and one of s, m, h, d, w, y)"


def problems(*texts: str) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as info:
        parse_texts({f"p{i}.yaml": text for i, text in enumerate(texts)})
    assert info.value.exit_code == EXIT_CONFIG
    return info.value.problems


@pytest.mark.parametrize(("text", "ms"), [
    ("1d", DAY), ("52w", 52 * 7 * DAY), ("2y", 2 * 365 * DAY), ("36h", 36 * 3_600_000),
    ("90m", 90 * 60_000), ("30s", 30_000)])
def test_durations_count_as_synapse_counts_them(text: str, ms: int) -> None:
    assert duration_ms(text) == ms
    assert describe_ms(ms) == text


@pytest.mark.parametrize("value", ["2 years", "1.5y", "0d", "-1d", "1Y", "1", "y", "1ms", "",
                                   365, True, None, ["1y"]])
def test_what_is_not_a_duration(value: object) -> None:
    assert duration_ms(value) is None


def test_default_and_overrides_per_room_rule() -> None:
    policy = parse_texts({"p.yaml": ROOMS + """
retention:
  default: 1y
  media: 90d
  rooms:
    announcements: 2y
    project: 52w
"""})
    retention = policy.retention
    assert retention is not None
    assert retention.default == Lifetime("1y", 365 * DAY)
    assert retention.media == Lifetime("90d", 90 * DAY)
    assert retention.for_room("announcements") == Lifetime("2y", 730 * DAY)
    # A for_each rule's override covers each of its rooms.
    assert retention.for_room("project/projekt-apollo") == Lifetime("52w", 364 * DAY)
    assert retention.for_room("somewhere-else") == retention.default
    assert (retention.shortest.text, retention.longest.text) == ("52w", "2y")
    assert retention.source == "p.yaml:13"


def test_without_a_section_nothing_is_retained_by_policy() -> None:
    assert parse_texts({"p.yaml": ROOMS}).retention is None


def test_the_section_may_live_in_its_own_file() -> None:
    policy = parse_texts({"a.yaml": ROOMS, "b.yaml": "retention:\n  default: 1y\n"})
    assert policy.retention is not None and policy.retention.rooms == {}


def test_a_value_that_is_not_a_duration_names_file_line_key_and_what_was_expected() -> None:
    assert problems(ROOMS + "retention:\n  default: 1y\n  rooms:\n    announcements: 2 years\n"
                    ) == (f"p0.yaml:15: retention.rooms.announcements: {EXPECTED}, got str "
                          "'2 years'",)
    assert problems("retention:\n  default: 365\n") == (
        f"p0.yaml:2: retention.default: {EXPECTED}, got int 365",)


def test_every_bad_value_is_reported() -> None:
    assert problems(ROOMS + "retention:\n  default: forever\n  media: 1q\n  rooms:\n"
                    "    announcements: 1y\n    project: 0d\n") == (
        f"p0.yaml:13: retention.default: {EXPECTED}, got str 'forever'",
        f"p0.yaml:14: retention.media: {EXPECTED}, got str '1q'",
        f"p0.yaml:17: retention.rooms.project: {EXPECTED}, got str '0d'")


def test_shape_mistakes() -> None:
    assert problems("retention: 1y\n") == ("p0.yaml:1: retention: expected a mapping, got str",)
    assert problems("retention:\n  rooms: {}\n") == (
        "p0.yaml:1: retention: default: is required (how long messages are kept in every "
        "room without an override, e.g. 1y)",)
    assert problems("retention:\n  default: 1y\n  purge: daily\n") == (
        "p0.yaml:3: retention.purge: unknown key (expected one of: default, media, rooms)",)
    assert problems("retention:\n  default: 1y\n  rooms: [announcements]\n") == (
        "p0.yaml:3: retention.rooms: expected a mapping of room key to duration, got list",)


def test_overrides_name_rooms_of_the_policy() -> None:
    assert problems(ROOMS + "retention:\n  default: 1y\n  rooms:\n    anouncements: 2y\n"
                    "    company: 1y\n") == (
        "p0.yaml:15: retention.rooms.anouncements: no room with key 'anouncements'",
        "p0.yaml:16: retention.rooms.company: is a space: spaces hold no messages")


def test_one_section_for_the_whole_policy() -> None:
    assert problems("retention:\n  default: 1y\n", "retention:\n  default: 2y\n") == (
        "p1.yaml:1: retention: a second retention section (the first is at p0.yaml:1); "
        "the policy has one",)


def test_a_single_problem_is_one_line() -> None:
    with pytest.raises(PolicyError) as info:
        parse_texts({"p.yaml": "retention:\n  default: 2 years\n"})
    assert str(info.value) == (f"invalid room policy: p.yaml:2: retention.default: {EXPECTED}, "
                               "got str '2 years'")
