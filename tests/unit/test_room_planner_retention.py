"""Retention in the pure room planner: each managed room gets `m.room.retention` from the
policy's retention section when it is created, a policy change or a change made by hand
is planned back (old and new), spaces are left alone."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from provisioner.policy import PolicySet, parse_texts
from provisioner.rooms.apply import create_body, state_content
from provisioner.rooms.plan import (
    CreateRoom,
    ManagedRoom,
    Member,
    RoomState,
    SetRetention,
    expand,
    plan_rooms,
)
from provisioner.rooms.run import state_from_events
from tests.unit.test_room_planner import CTX, SERVICE, STAFF, converged

DAY = 86_400_000
ROOMS = """
spaces:
  - key: company
    name: Muster GmbH
rooms:
  - key: announcements
    name: Ankündigungen
    space: company
    read_only: true
  - key: department
    for_each: department
    name: "Abteilung {value}"
  - key: project
    for_each: group
    match: "^projekt-"
    name: "{value}"
"""
RETENTION = """
retention:
  default: 1y
  rooms:
    announcements: 2y
    project: 52w
"""
POLICY = parse_texts({"p.yaml": ROOMS + RETENTION})


def retained(policy: PolicySet, members: Sequence[Member] = STAFF
             ) -> tuple[dict[str, ManagedRoom], dict[str, RoomState]]:
    """Managed rooms and their state as a finished sync under `policy` leaves them."""
    managed, states = converged(policy, members)
    wanted = {d.key: d.retention for d in expand(policy, members, SERVICE)
              if d.kind == "room"}
    return managed, {k: dataclasses.replace(s, retention=wanted.get(k, {}))
                     for k, s in states.items()}


def test_new_rooms_are_created_with_the_lifetime_of_their_rule() -> None:
    plan = plan_rooms(POLICY, STAFF, {}, {}, CTX)
    created = {a.key: dict(a.retention) for a in plan.actions if isinstance(a, CreateRoom)}
    assert created == {
        "company": {},  # a space holds no messages
        "announcements": {"max_lifetime": 730 * DAY},
        "department/IT": {"max_lifetime": 365 * DAY},
        "department/Sales": {"max_lifetime": 365 * DAY},
        "project/projekt-x": {"max_lifetime": 364 * DAY},
    }
    assert plan.desired_retention == {k: v for k, v in created.items() if k != "company"}
    assert not any(isinstance(a, SetRetention) for a in plan.actions)
    announcements = next(a for a in plan.actions if a.key == "announcements")
    assert announcements.describe() == ("create room announcements 'Ankündigungen' in space "
                                        "company (encrypted, invite only, messages kept 2y)")
    json.dumps(plan.to_json())


def test_create_body_carries_the_retention_state_and_a_space_none() -> None:
    plan = plan_rooms(POLICY, STAFF, {}, {}, CTX)
    bodies = {a.key: create_body(a, parent_room_id=None, server_name="example.com")
              for a in plan.actions if isinstance(a, CreateRoom)}
    retention = {key: [s["content"] for s in body["initial_state"]
                       if s["type"] == "m.room.retention"] for key, body in bodies.items()}
    assert retention["announcements"] == [{"max_lifetime": 730 * DAY}]
    assert retention["company"] == []


def test_without_a_retention_section_rooms_get_none() -> None:
    policy = parse_texts({"p.yaml": ROOMS})
    plan = plan_rooms(policy, STAFF, {}, {}, CTX)
    assert {dict(a.retention).get("max_lifetime") for a in plan.actions
            if isinstance(a, CreateRoom)} == {None}
    managed, states = converged(policy, STAFF)
    assert plan_rooms(policy, STAFF, managed, states, CTX).actions == ()


def test_converged_retention_plans_nothing() -> None:
    managed, states = retained(POLICY)
    assert plan_rooms(POLICY, STAFF, managed, states, CTX).actions == ()


def test_a_change_by_hand_is_reverted_with_old_and_new() -> None:
    managed, states = retained(POLICY)
    states["department/IT"] = dataclasses.replace(states["department/IT"],
                                                  retention={"max_lifetime": 10 * 365 * DAY})
    states["announcements"] = dataclasses.replace(states["announcements"], retention={})
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert plan.actions == (
        SetRetention("announcements", {}, {"max_lifetime": 730 * DAY}),
        SetRetention("department/IT", {"max_lifetime": 3650 * DAY},
                     {"max_lifetime": 365 * DAY}))
    assert [a.describe() for a in plan.actions] == [
        "set retention of announcements: none -> 2y",
        "set retention of department/IT: 10y -> 1y"]
    assert plan.counts()["set_retention"] == 2


def test_a_min_lifetime_set_by_hand_is_drift_too() -> None:
    managed, states = retained(POLICY)
    states["department/IT"] = dataclasses.replace(
        states["department/IT"], retention={"max_lifetime": 365 * DAY, "min_lifetime": DAY})
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert plan.actions == (SetRetention("department/IT",
                                         {"max_lifetime": 365 * DAY, "min_lifetime": DAY},
                                         {"max_lifetime": 365 * DAY}),)


def test_a_policy_change_reaches_every_room_of_its_rule_and_no_other() -> None:
    managed, states = retained(POLICY)
    shorter = parse_texts({"p.yaml": ROOMS + RETENTION.replace("default: 1y", "default: 180d")})
    plan = plan_rooms(shorter, STAFF, managed, states, CTX)
    assert plan.actions == (
        SetRetention("department/IT", {"max_lifetime": 365 * DAY},
                     {"max_lifetime": 180 * DAY}),
        SetRetention("department/Sales", {"max_lifetime": 365 * DAY},
                     {"max_lifetime": 180 * DAY}))


def test_removing_the_section_clears_the_rooms_retention() -> None:
    managed, states = retained(POLICY)
    plan = plan_rooms(parse_texts({"p.yaml": ROOMS}), STAFF, managed, states, CTX)
    assert sorted((a.key, dict(a.old), dict(a.new)) for a in plan.actions
                  if isinstance(a, SetRetention)) == [
        ("announcements", {"max_lifetime": 730 * DAY}, {}),
        ("department/IT", {"max_lifetime": 365 * DAY}, {}),
        ("department/Sales", {"max_lifetime": 365 * DAY}, {}),
        ("project/projekt-x", {"max_lifetime": 364 * DAY}, {})]
    assert len(plan.actions) == 4
    assert state_content(SetRetention("a", {"max_lifetime": 1}, {})) == {}


def test_spaces_are_left_alone() -> None:
    managed, states = retained(POLICY)
    states["company"] = dataclasses.replace(states["company"], retention={"max_lifetime": 1})
    assert plan_rooms(POLICY, STAFF, managed, states, CTX).actions == ()


def test_retention_is_read_from_the_room_state() -> None:
    state = state_from_events([
        {"type": "m.room.retention", "state_key": "", "content": {"max_lifetime": DAY}},
        {"type": "m.room.retention", "state_key": "odd", "content": {"max_lifetime": 1}}])
    assert state.retention == {"max_lifetime": DAY}
    assert state_from_events([]).retention == {}
    assert state_content(SetRetention("a", {}, {"max_lifetime": DAY})) == {"max_lifetime": DAY}
