"""Who gets an open announcement's room key later: the pure decisions of key_shares."""

from __future__ import annotations

import pytest

from provisioner.announcements.key_shares import SessionEntry, missing_devices, prune

A, B, C = "@a:x", "@b:x", "@c:x"


def entry(announcement_id: int = 1, **devices: set[str]) -> SessionEntry:
    return SessionEntry(announcement_id, "!room", "sess", "pickle",
                        {f"@{u}:x": d for u, d in devices.items()})


@pytest.mark.parametrize(("people", "current", "expected"), [
    # A new phone of an open recipient: exactly that device.
    ({A}, {A: {"OLD", "NEW"}}, {A: {"NEW"}}),
    # Devices that had the key at sending get nothing again.
    ({A}, {A: {"OLD"}}, {}),
    # Someone who is not (or no longer) open gets nothing, however many new devices.
    (set(), {A: {"OLD", "NEW"}, C: {"C1"}}, {}),
    ({A}, {A: {"OLD"}, C: {"C1"}}, {}),
    # A recipient who had no device at sending gets the key on their first one.
    ({A, B}, {A: {"OLD"}, B: {"B1"}}, {B: {"B1"}}),
    # A removed device is simply not listed any more: nothing to do.
    ({A}, {A: set()}, {}),
])
def test_missing_devices(people: set[str], current: dict[str, set[str]],
                         expected: dict[str, set[str]]) -> None:
    assert missing_devices(entry(a={"OLD"}), people, current) == expected


def test_prune_drops_closed_announcements_and_people_who_acknowledged() -> None:
    one = entry(1, a={"A1"}, b={"B1"})
    two = entry(2, a={"A1"})
    three = entry(3, c={"C1"})
    # 1: only a is still open (b acknowledged); 2: nobody (all acknowledged); 3: purged.
    kept = prune([one, two, three], {1: {A}})
    assert kept == [one]
    assert one.devices == {A: {"A1"}}


def test_entries_round_trip_through_json() -> None:
    original = entry(7, a={"A2", "A1"}, b=set())
    again = SessionEntry.from_json(original.to_json())
    assert again == original
    assert original.to_json()["devices"] == {A: ["A1", "A2"], B: []}
