"""The pure helpers around the room planner: reading room state, the createRoom body,
membership ordering, and the accounts a dry run counts as members."""

from __future__ import annotations

from provisioner.accounts.plan import CreateAccount, Deactivate, DeactivationReason, Plan
from provisioner.rooms.apply import create_body, creation_levels, member_streams, state_content
from provisioner.rooms.plan import (
    AddMember,
    CreateRoom,
    CreateSpace,
    Membership,
    RemoveMember,
    SetAvatar,
    SetName,
    SetTopic,
    power_levels,
)
from provisioner.rooms.run import accounts_after, members_count, state_from_events

SVC = "@hauspost:x.test"


def test_state_from_events() -> None:
    state = state_from_events([
        {"type": "m.room.name", "state_key": "", "content": {"name": "A"}, "sender": SVC},
        {"type": "m.room.topic", "state_key": "", "content": {"topic": "T", "m.topic": []}},
        {"type": "m.room.power_levels", "state_key": "", "content": {"users": {}}},
        {"type": "de.hauspost.managed", "state_key": "", "content": {"policy_key": "a"}},
        {"type": "m.room.member", "state_key": "@a:x.test", "sender": "@a:x.test",
         "content": {"membership": "leave"}},
        {"type": "m.room.member", "state_key": SVC, "sender": SVC,
         "content": {"membership": "join"}},
        {"type": "m.space.child", "state_key": "!child", "content": {"via": ["x.test"]}},
        {"type": "m.space.child", "state_key": "!removed", "content": {}},
        {"type": "m.room.name", "state_key": "odd", "content": {"name": "ignored"}},
    ])
    assert (state.name, state.topic, state.avatar) == ("A", "T", None)
    assert state.power_levels == {"users": {}}
    assert state.marker == {"policy_key": "a"}
    assert state.members == {"@a:x.test": Membership("leave", "@a:x.test"),
                             SVC: Membership("join", SVC)}
    assert state.children == {"!child"}
    assert members_count(state, SVC) == 0


def test_create_body_is_encrypted_invite_only_v12_and_marked() -> None:
    action = CreateSpace("company", "Muster GmbH", None, "mxc://x.test/a", None,
                         power_levels(), "shared", {"policy_key": "company",
                                                    "mandatory": False}, "archive")
    body = create_body(action, parent_room_id="!parent", server_name="x.test")
    assert body["room_version"] == "12"
    assert body["creation_content"] == {"type": "m.space"}
    assert body["power_level_content_override"] == power_levels()
    assert "topic" not in body
    state = {(s["type"], s["state_key"]): s["content"] for s in body["initial_state"]}
    assert state == {
        ("m.room.encryption", ""): {"algorithm": "m.megolm.v1.aes-sha2"},
        ("m.room.join_rules", ""): {"join_rule": "invite"},
        ("m.room.guest_access", ""): {"guest_access": "forbidden"},
        ("m.room.history_visibility", ""): {"history_visibility": "shared"},
        ("de.hauspost.managed", ""): {"policy_key": "company", "mandatory": False},
        ("m.room.avatar", ""): {"url": "mxc://x.test/a"},
        ("m.space.parent", "!parent"): {"via": ["x.test"], "canonical": True}}


def test_state_content_clears_with_empty_content() -> None:
    assert state_content(SetName("a", "x", "y")) == {"name": "y"}
    assert state_content(SetTopic("a", "x", None)) == {}
    assert state_content(SetAvatar("a", "mxc://x/y", None)) == {}


def _create(key: str, parent: str | None, space: bool = False) -> CreateRoom:
    kind = CreateSpace if space else CreateRoom
    return kind(key, name=key, topic=None, avatar=None, parent=parent, power_levels={},
                history_visibility="shared", marker={}, on_removed="archive")


def test_creation_levels_put_parents_before_children_and_siblings_together() -> None:
    company = _create("company", None, space=True)
    depts = _create("departments", "company", space=True)
    sales = _create("department/sales", "departments")
    hall = _create("announcements", "company")
    loose = _create("loose", "not-created-now")
    assert creation_levels([sales, hall, company, depts, loose]) == [
        [company, loose], [hall, depts], [sales]]
    assert creation_levels([]) == []


def test_member_streams_start_the_big_rooms_and_take_small_rooms_smallest_first() -> None:
    a1, a2, a3 = (AddMember("a", f"@{i}:x", "r") for i in "123")
    b1 = RemoveMember("b", "@1:x", "r")
    c1, c2 = AddMember("c", "@1:x", "r"), RemoveMember("c", "@2:x", "r")
    d = [AddMember("d", f"@{i}:x", "r") for i in range(5)]
    actions = [a1, d[0], a2, b1, c1, a3, c2, *d[1:]]
    # 11 changes on 4 streams: big is >= 11 / 8; one stream stays for the small room.
    assert member_streams(actions, 4) == ([d, [a1, a2, a3], [c1, c2]], [[b1]])
    # 11 on 2: big is >= 2.75 (d, a); one stream for the rest, so a waits at the head.
    assert member_streams(actions, 2) == ([d], [[a1, a2, a3], [b1], [c1, c2]])
    assert member_streams(actions, 1) == ([], [[b1], [c1, c2], [a1, a2, a3], d])
    assert member_streams([], 8) == ([], [])


def test_member_streams_give_every_big_room_of_a_company_its_own_stream() -> None:
    """The example company at 2,000: five rooms everybody is in (all-hands, four spaces)
    and 80 small ones; 16,001 changes on 8 streams. The old rule (half the streams) left
    the fifth big room at the end of the small rooms' queue: the run's tail."""
    big_keys = ["company", "alle", "abteilungen", "standorte", "projekte"]
    actions: list[AddMember] = []
    for key in big_keys:
        actions += [AddMember(key, f"@u{i}:x", "r") for i in range(2000)]
    actions.append(AddMember("alle", "@bot:x", "r"))
    for room in range(80):
        actions += [AddMember(f"team{room:02d}", f"@u{i}:x", "r") for i in range(75)]
    dedicated, shared = member_streams(actions, 8)
    assert [q[0].key for q in dedicated] == ["alle", "company", "abteilungen", "standorte",
                                             "projekte"]
    assert [len(q) for q in dedicated] == [2001, 2000, 2000, 2000, 2000]
    assert [q[0].key for q in shared] == [f"team{room:02d}" for room in range(80)]
    # The three other streams share 6,000 small changes: 2,000 each, as long as a big room.
    assert sum(len(q) for q in shared) == 3 * 2000


def test_dry_run_counts_planned_accounts() -> None:
    plan = Plan(actions=(CreateAccount("E2", "@new:x", "New"),
                         Deactivate("E1", "@old:x", DeactivationReason.REMOVED)))
    assert accounts_after(plan, {"E1": ("@old:x", True), "E3": ("@c:x", True)}) == {
        "E1": ("@old:x", False), "E2": ("@new:x", True), "E3": ("@c:x", True)}
