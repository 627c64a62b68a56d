"""The pure room planner: given this policy, these employees and this room state, exactly
these actions."""

from __future__ import annotations

import json
from collections.abc import Sequence

from provisioner.employee import Employee
from provisioner.policy import PolicySet, parse_texts
from provisioner.rooms.plan import (
    AddMember,
    AddSpaceChild,
    ArchiveRoom,
    CreateRoom,
    CreateSpace,
    DesiredRoom,
    ManagedRoom,
    Member,
    Membership,
    ReleaseRoom,
    RemoveMember,
    RemoveSpaceChild,
    RoomAction,
    RoomPlanContext,
    RoomState,
    SetName,
    SetPowerLevels,
    expand,
    plan_rooms,
    power_levels,
)

SERVICE = "@hauspost:example.com"
CTX = RoomPlanContext(server_name="example.com", service_user_id=SERVICE,
                      protected=frozenset({"@it:example.com"}))

POLICY = parse_texts({"p.yaml": """
spaces:
  - key: company
    name: Muster GmbH
  - key: departments
    name: Abteilungen
    parent: company
rooms:
  - key: announcements
    name: Ankündigungen
    space: company
    mandatory: true
    read_only: true
    roles: {poster: {group: gf}}
  - key: department
    for_each: department
    name: "Abteilung {value}"
    space: departments
    mandatory: true
    roles: {moderator: {group: teamleads}}
  - key: project
    for_each: group
    match: "^projekt-"
    name: "{value}"
  - key: kept
    for_each: group
    match: "^keep-"
    name: "{value}"
    on_removed: keep
  - key: berlin
    name: Berlin
    members: {location: Berlin}
"""})


def member(uid: str, department: str | None = None, location: str | None = None,
           groups: Sequence[str] = ()) -> Member:
    return Member(f"@{uid}:example.com", Employee(uid, uid, uid.title(), department=department,
                                                  location=location, groups=frozenset(groups)))


ANNA = member("anna", "Sales", "Berlin", ["teamleads", "projekt-x"])
BEN = member("ben", "IT", "Köln", ["gf"])
CARL = member("carl", "Sales", "Hamburg")
STAFF = [ANNA, BEN, CARL]


def converged(policy: PolicySet, members: Sequence[Member], announcer: str | None = None
              ) -> tuple[dict[str, ManagedRoom], dict[str, RoomState]]:
    """Managed rooms and state exactly as the policy wants them (what a finished sync leaves)."""
    desired = expand(policy, members, SERVICE, announcer)
    managed = {d.key: ManagedRoom(d.key, f"!{d.key}", d.kind, "active", d.on_removed)
               for d in desired}
    return managed, {d.key: _state(d, desired) for d in desired}


def _state(d: DesiredRoom, desired: list[DesiredRoom]) -> RoomState:
    children = frozenset(f"!{c.key}" for c in desired if c.parent == d.key)
    members = {u: Membership("join", u) for u in d.members} | {SERVICE: Membership("join",
                                                                                  SERVICE)}
    return RoomState(name=d.name, topic=d.topic, avatar=d.avatar,
                     history_visibility=d.history_visibility, power_levels=d.power_levels,
                     marker=d.marker, members=members, children=children)


def kinds(actions: Sequence[RoomAction]) -> list[tuple[str, ...]]:
    out = []
    for a in actions:
        extra = getattr(a, "user_id", None) or getattr(a, "child", None)
        out.append((a.kind, a.key) + ((extra,) if extra else ()))
    return out


def test_first_run_creates_spaces_then_rooms_and_joins_exactly_the_matching_people() -> None:
    plan = plan_rooms(POLICY, STAFF, {}, {}, CTX)
    assert kinds(plan.actions) == [
        ("create_space", "company"), ("create_space", "departments"),
        ("create_room", "announcements"), ("create_room", "department/IT"),
        ("create_room", "department/Sales"), ("create_room", "project/projekt-x"),
        ("create_room", "berlin"),
        ("add_space_child", "company", "departments"),
        ("add_space_child", "company", "announcements"),
        ("add_space_child", "departments", "department/IT"),
        ("add_space_child", "departments", "department/Sales"),
        ("add_member", "company", "@anna:example.com"),
        ("add_member", "company", "@ben:example.com"),
        ("add_member", "company", "@carl:example.com"),
        ("add_member", "departments", "@anna:example.com"),
        ("add_member", "departments", "@ben:example.com"),
        ("add_member", "departments", "@carl:example.com"),
        ("add_member", "announcements", "@anna:example.com"),
        ("add_member", "announcements", "@ben:example.com"),
        ("add_member", "announcements", "@carl:example.com"),
        ("add_member", "department/IT", "@ben:example.com"),
        ("add_member", "department/Sales", "@anna:example.com"),
        ("add_member", "department/Sales", "@carl:example.com"),
        ("add_member", "project/projekt-x", "@anna:example.com"),
        ("add_member", "berlin", "@anna:example.com"),
    ]
    sales = next(a for a in plan.actions if isinstance(a, CreateRoom)
                 and a.key == "department/Sales")
    assert sales.name == "Abteilung Sales"
    assert sales.marker == {"policy_key": "department/Sales", "mandatory": True}
    # Team lead Anna moderates her department; the service account (creator) is not listed.
    assert sales.power_levels["users"] == {"@anna:example.com": 50}
    announcements = next(a for a in plan.actions if a.key == "announcements"
                         and isinstance(a, CreateRoom))
    assert announcements.power_levels["users"] == {"@ben:example.com": 10}
    assert announcements.power_levels["events_default"] == 10
    assert isinstance(plan.actions[0], CreateSpace)
    add = plan.actions[-1]
    assert isinstance(add, AddMember) and add.reason == "matches location berlin"


def test_converged_state_plans_nothing() -> None:
    managed, states = converged(POLICY, STAFF)
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert plan.actions == ()
    assert plan.desired_members["announcements"] == 3


def test_drift_in_name_and_power_levels_is_reverted_with_old_and_new() -> None:
    managed, states = converged(POLICY, STAFF)
    sales = states["department/Sales"]
    hacked = dict(sales.power_levels, users={"@anna:example.com": 50, "@carl:example.com": 100})
    states["department/Sales"] = RoomState(
        name="Sales (inoffiziell)", topic=sales.topic, avatar=sales.avatar,
        history_visibility=sales.history_visibility, power_levels=hacked, marker=sales.marker,
        members=sales.members, children=sales.children)
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert plan.actions == (
        SetName("department/Sales", "Sales (inoffiziell)", "Abteilung Sales"),
        SetPowerLevels("department/Sales", hacked, dict(sales.power_levels)))
    assert plan.actions[1].describe() == ("set power levels of department/Sales: "
                                          "@carl:example.com 100 -> -")


def test_department_change_moves_between_department_rooms() -> None:
    managed, states = converged(POLICY, STAFF)
    carl_in_it = member("carl", "IT", "Hamburg")
    plan = plan_rooms(POLICY, [ANNA, BEN, carl_in_it], managed, states, CTX)
    assert plan.actions == (
        AddMember("department/IT", "@carl:example.com", "matches department IT (mandatory)"),
        RemoveMember("department/Sales", "@carl:example.com",
                     "no longer matches department Sales"))


def test_renaming_a_room_in_the_policy_renames_it_and_creates_nothing() -> None:
    managed, states = converged(POLICY, STAFF)
    renamed = parse_texts({"p.yaml": "rooms:\n  - key: berlin\n    name: Standort Berlin\n"
                                     "    members: {location: Berlin}\n"})
    plan = plan_rooms(renamed, STAFF, {"berlin": managed["berlin"]},
                      {"berlin": states["berlin"]}, CTX)
    assert plan.actions == (SetName("berlin", "Berlin", "Standort Berlin"),)


def test_left_optional_room_stays_left_but_mandatory_room_is_rejoined() -> None:
    managed, states = converged(POLICY, STAFF)
    for key in ("berlin", "department/Sales"):
        s = states[key]
        states[key] = RoomState(s.name, s.topic, s.avatar, s.history_visibility,
                                s.power_levels, s.marker,
                                {**s.members, ANNA.user_id: Membership("leave", ANNA.user_id)},
                                s.children)
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert kinds(plan.actions) == [("add_member", "department/Sales", ANNA.user_id)]


def test_removed_by_the_provisioner_is_added_again_when_matching_again() -> None:
    managed, states = converged(POLICY, STAFF)
    s = states["berlin"]
    states["berlin"] = RoomState(s.name, s.topic, s.avatar, s.history_visibility,
                                 s.power_levels, s.marker,
                                 {**s.members, ANNA.user_id: Membership("leave", SERVICE)},
                                 s.children)
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert kinds(plan.actions) == [("add_member", "berlin", ANNA.user_id)]


def test_an_invitation_left_by_a_cut_admin_join_is_joined_again() -> None:
    """The admin API joins in two events (the service account invites, the person joins);
    Synapse killed between them leaves an invitation nobody accepts. It is no membership:
    the join is planned again (found by the fault suite: a hire stayed invited)."""
    managed, states = converged(POLICY, STAFF)
    s = states["berlin"]
    states["berlin"] = RoomState(s.name, s.topic, s.avatar, s.history_visibility,
                                 s.power_levels, s.marker,
                                 {**s.members, ANNA.user_id: Membership("invite", SERVICE)},
                                 s.children)
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert kinds(plan.actions) == [("add_member", "berlin", ANNA.user_id)]


def test_removed_group_archives_its_room_and_keep_releases() -> None:
    dana = member("dana", "IT", "Köln", ["keep-y"])
    managed, states = converged(POLICY, [*STAFF, dana])
    anna_no_project = member("anna", "Sales", "Berlin", ["teamleads"])
    dana_no_group = member("dana", "IT", "Köln")
    # A space listing the project room, to see it taken out of the hierarchy.
    states["company"] = RoomState(**{**states["company"].__dict__,
                                     "children": states["company"].children
                                     | {"!project/projekt-x"}})
    plan = plan_rooms(POLICY, [anna_no_project, BEN, CARL, dana_no_group], managed, states,
                      CTX)
    assert plan.actions == (
        RemoveSpaceChild("company", "project/projekt-x"),
        RemoveMember("project/projekt-x", ANNA.user_id, "room archived"),
        ReleaseRoom("kept/keep-y",
                    "no longer in the policy, or its for_each value no longer exists"),
        ArchiveRoom("project/projekt-x",
                    "no longer in the policy, or its for_each value no longer exists"))
    # Once archived, nothing more happens to it.
    managed["project/projekt-x"] = ManagedRoom("project/projekt-x", "!project/projekt-x",
                                               "room", "archived")
    managed["kept/keep-y"] = ManagedRoom("kept/keep-y", "!kept/keep-y", "room", "released")
    states["company"] = RoomState(**{**states["company"].__dict__,
                                     "children": states["company"].children
                                     - {"!project/projekt-x"}})
    again = plan_rooms(POLICY, [anna_no_project, BEN, CARL, dana_no_group], managed, states,
                       CTX)
    assert again.actions == ()


def test_incomplete_read_removes_nobody_and_archives_nothing() -> None:
    managed, states = converged(POLICY, STAFF)
    context = RoomPlanContext(server_name="example.com", service_user_id=SERVICE,
                              removals_allowed=False)
    plan = plan_rooms(POLICY, [BEN], managed, states, context)
    assert {a.kind for a in plan.actions} == set()
    # Anna from 4 rooms, Carl from 3, and two rooms (Sales, projekt-x) not archived.
    assert plan.withheld_removals == 9
    assert plan.notes == ("the directory read was incomplete or had bad entries: 9 "
                          "removal(s)/archiving(s) withheld",)


def test_held_protected_and_foreign_members() -> None:
    managed, states = converged(POLICY, STAFF)
    s = states["berlin"]
    states["berlin"] = RoomState(s.name, s.topic, s.avatar, s.history_visibility,
                                 s.power_levels, s.marker,
                                 {**s.members, "@it:example.com": Membership("join", SERVICE),
                                  "@old:example.com": Membership("join", SERVICE)},
                                 s.children)
    context = RoomPlanContext(server_name="example.com", service_user_id=SERVICE,
                              protected=frozenset({"@it:example.com"}),
                              held=frozenset({CARL.user_id}))
    # Anna gone from the directory: removed. Carl's entry was skipped as bad: untouched.
    plan = plan_rooms(POLICY, [BEN], managed, states, context)
    removed = {(a.key, a.user_id, a.reason) for a in plan.actions
               if isinstance(a, RemoveMember)}
    assert ("berlin", "@old:example.com", "not an active employee") in removed
    assert ("berlin", ANNA.user_id, "not an active employee") in removed
    assert not any(u in (CARL.user_id, "@it:example.com", SERVICE) for _, u, _ in removed)


def test_released_key_back_in_the_policy_creates_a_new_room() -> None:
    managed, states = converged(POLICY, STAFF)
    managed["berlin"] = ManagedRoom("berlin", "!berlin", "room", "released")
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert kinds(plan.actions) == [("create_room", "berlin"),
                                   ("add_member", "berlin", ANNA.user_id)]


def test_archived_room_back_in_the_policy_is_restored() -> None:
    managed, states = converged(POLICY, STAFF)
    managed["berlin"] = ManagedRoom("berlin", "!berlin", "room", "archived")
    s = states["berlin"]
    states["berlin"] = RoomState(s.name, s.topic, s.avatar, s.history_visibility,
                                 power_levels(archived=True),
                                 {"policy_key": "berlin", "mandatory": False, "archived": True},
                                 {SERVICE: Membership("join", SERVICE),
                                  ANNA.user_id: Membership("leave", SERVICE)}, s.children)
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert kinds(plan.actions) == [("set_power_levels", "berlin"), ("set_marker", "berlin"),
                                   ("add_member", "berlin", ANNA.user_id)]


def test_space_members_are_the_members_of_everything_inside() -> None:
    desired = {d.key: d for d in expand(POLICY, STAFF, SERVICE)}
    assert desired["departments"].members == {ANNA.user_id, BEN.user_id, CARL.user_id}
    only_berlin = parse_texts({"p.yaml": "spaces:\n  - key: s\n    name: S\nrooms:\n"
                                         "  - key: b\n    name: B\n    space: s\n"
                                         "    members: {location: Berlin}\n"})
    assert {d.key: d.members for d in expand(only_berlin, STAFF, SERVICE)} == {
        "s": frozenset({ANNA.user_id}), "b": frozenset({ANNA.user_id})}


def test_missing_room_state_is_a_problem_not_a_second_room() -> None:
    managed, states = converged(POLICY, STAFF)
    del states["berlin"]
    plan = plan_rooms(POLICY, STAFF, managed, states, CTX)
    assert plan.actions == ()
    assert plan.problems == ("room berlin (!berlin) is managed but Synapse has no state for "
                             "it; left alone",)


def test_new_room_in_existing_space_is_listed_in_it() -> None:
    managed, states = converged(POLICY, STAFF)
    newcomer = member("eva", "HR", "Berlin")
    plan = plan_rooms(POLICY, [*STAFF, newcomer], managed, states, CTX)
    assert kinds(plan.actions) == [
        ("create_room", "department/HR"),
        ("add_space_child", "departments", "department/HR"),
        ("add_member", "company", newcomer.user_id),
        ("add_member", "departments", newcomer.user_id),
        ("add_member", "announcements", newcomer.user_id),
        ("add_member", "department/HR", newcomer.user_id),
        ("add_member", "berlin", newcomer.user_id)]
    assert isinstance(plan.actions[1], AddSpaceChild)


def test_room_moved_to_another_space_leaves_the_old_one() -> None:
    text = """
spaces:
  - key: company
    name: Muster GmbH
  - key: departments
    name: Abteilungen
    parent: company
rooms:
  - key: berlin
    name: Berlin
    space: SPACE
    members: {location: Berlin}
"""
    before = parse_texts({"p.yaml": text.replace("SPACE", "company")})
    after = parse_texts({"p.yaml": text.replace("SPACE", "departments")})
    managed, states = converged(before, [ANNA])
    plan = plan_rooms(after, [ANNA], managed, states, CTX)
    assert plan.actions == (AddSpaceChild("departments", "berlin"),
                            RemoveSpaceChild("company", "berlin"),
                            # Anna now sees the departments space: her room is in it.
                            AddMember("departments", ANNA.user_id,
                                      "matches members of the rooms inside"))


def test_rehire_is_put_back_into_optional_rooms_left_by_deactivation() -> None:
    managed, states = converged(POLICY, STAFF)
    s = states["berlin"]
    # Deactivation parted Anna (as Anna) at t=1000; she was rehired at t=2000.
    states["berlin"] = RoomState(s.name, s.topic, s.avatar, s.history_visibility,
                                 s.power_levels, s.marker,
                                 {**s.members, ANNA.user_id: Membership("leave", ANNA.user_id,
                                                                        1000)},
                                 s.children)
    rehired = RoomPlanContext(server_name="example.com", service_user_id=SERVICE,
                              rehired_at={ANNA.user_id: 2000})
    assert kinds(plan_rooms(POLICY, STAFF, managed, states, rehired).actions) == [
        ("add_member", "berlin", ANNA.user_id)]
    # A leave after the rehire is her own choice again.
    later = RoomPlanContext(server_name="example.com", service_user_id=SERVICE,
                            rehired_at={ANNA.user_id: 500})
    assert plan_rooms(POLICY, STAFF, managed, states, later).actions == ()


def test_plan_json_is_serialisable_and_counts_exactly() -> None:
    data = json.loads(json.dumps(plan_rooms(POLICY, STAFF, {}, {}, CTX).to_json()))
    assert data["counts"]["create_space"] == 2
    assert data["counts"]["create_room"] == 5
    assert data["counts"]["add_member"] == 14
    assert data["actions"][0] == {
        "action": "create_space", "key": "company", "name": "Muster GmbH", "topic": None,
        "avatar": None, "parent": None, "power_levels": power_levels(space=True),
        "history_visibility": "shared", "marker": {"policy_key": "company",
                                                   "mandatory": False},
        "on_removed": "archive", "retention": {}}


def test_spaces_are_signposts_nobody_posts_in() -> None:
    """A space's timeline is the provisioner's alone; a space whose power levels were
    loosened by hand is put back (drift reverted, like any managed room)."""
    plan = plan_rooms(POLICY, STAFF, {}, {}, CTX)
    spaces = [a for a in plan.actions if a.kind == "create_space"]
    assert [a.key for a in spaces] == ["company", "departments"]
    for action in spaces:
        assert action.power_levels["events_default"] == 100  # type: ignore[attr-defined]
        assert action.power_levels["events"]["m.reaction"] == 100  # type: ignore[attr-defined]
    rooms = [a for a in plan.actions if a.kind == "create_room"]
    assert {a.power_levels["events_default"] for a in rooms} == {0, 10}  # type: ignore[attr-defined]
