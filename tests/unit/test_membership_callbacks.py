"""MembershipPolicy callbacks as Synapse calls them, with real event objects.

Federated requests are checked here at the unit level: building a signed federation
request from a fake remote server (signing keys, key fetch over TLS) is out of reach for
the integration tests; tests/integration/test_membership_policy.py covers the listener.
"""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api import NOT_SPAM
from synapse.module_api.errors import Codes, SynapseError

from synapse_modules._fail_closed import INTERNAL_ERROR_MESSAGE
from synapse_modules.membership import (
    RESTRICTED_USER_EVENT,
    MembershipPolicy,
    policy_state_key,
)
from tests.unit.test_membership_fakes import SERVER, FakeModuleApi, event, user_info

ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"
GONE = f"@gone:{SERVER}"
GUEST = f"@guest:{SERVER}"
ADMIN = f"@admin:{SERVER}"
CONTRACTOR = f"@contractor:{SERVER}"
SERVICE = f"@hauspost:{SERVER}"
REMOTE = "@mallory:other.example"
ROOM = "!room"
POLICY_ROOM = "!policy"


def make_policy(config: dict[str, Any] | None = None, *, fail: bool = False,
                policy_state: dict[str, Any] | None = None) -> MembershipPolicy:
    users = [user_info(ALICE), user_info(BOB), user_info(GONE, deactivated=True),
             user_info(GUEST, guest=True), user_info(ADMIN, admin=True),
             user_info(CONTRACTOR), user_info(SERVICE, admin=True)]
    rooms = {room: {("m.room.create", ""): event("m.room.create", ALICE, {}, state_key="")}
             for room in (ROOM, "!project", "!other")}
    if policy_state is not None:
        rooms[POLICY_ROOM] = {
            (RESTRICTED_USER_EVENT, policy_state_key(uid)): event(
                RESTRICTED_USER_EVENT, SERVICE, content, state_key=policy_state_key(uid),
                room_id=POLICY_ROOM)
            for uid, content in policy_state.items()}
    api = FakeModuleApi(users, rooms, fail=fail)
    parsed = MembershipPolicy.parse_config(config or {"exempt_users": [SERVICE]})
    return MembershipPolicy(parsed, api)  # type: ignore[arg-type]


def refused(result: object, fragment: str) -> bool:
    assert result != NOT_SPAM, "expected a refusal"
    assert isinstance(result, tuple)
    code, fields = result
    assert code == Codes.FORBIDDEN
    assert fragment in fields["error"], fields["error"]
    return True


async def test_registers_every_callback_it_relies_on() -> None:
    policy = make_policy()
    api = policy._api
    assert isinstance(api, FakeModuleApi)
    assert set(api.spam_callbacks) == {
        "user_may_invite", "user_may_send_3pid_invite", "user_may_join_room",
        "user_may_create_room", "user_may_create_room_alias", "user_may_publish_room",
        "federated_user_may_invite", "should_drop_federated_event"}
    assert set(api.rules_callbacks) == {
        "check_event_allowed", "on_create_room", "check_visibility_can_be_modified",
        "check_threepid_can_be_invited"}


async def test_invites() -> None:
    policy = make_policy()
    assert await policy.user_may_invite(ALICE, BOB, ROOM) == NOT_SPAM
    assert refused(await policy.user_may_invite(ALICE, REMOTE, ROOM), "outside the company")
    assert refused(await policy.user_may_invite(ALICE, GONE, ROOM), "deactivated")
    assert refused(await policy.user_may_invite(ALICE, GUEST, ROOM), "Guest accounts")
    assert refused(await policy.user_may_invite(ALICE, f"@nobody:{SERVER}", ROOM),
                   "not an employee account")


async def test_joins() -> None:
    policy = make_policy()
    assert await policy.user_may_join_room(BOB, ROOM, True) == NOT_SPAM
    assert refused(await policy.user_may_join_room(BOB, "!elsewhere:other.example", False),
                   "not hosted on this server")
    assert refused(await policy.user_may_join_room(GUEST, ROOM, False), "Guest accounts")


async def test_threepid_never_allowed() -> None:
    policy = make_policy()
    assert refused(await policy.user_may_send_3pid_invite(ALICE, "email", "a@b.example", ROOM),
                   "e-mail or phone")
    assert await policy.check_threepid_can_be_invited("email", "a@b.example", {}) is False


async def test_publish_and_visibility() -> None:
    policy = make_policy()
    assert refused(await policy.user_may_publish_room(ADMIN, ROOM), "room directory")
    assert await policy.check_visibility_can_be_modified(ROOM, {}, "public") is False
    assert await policy.check_visibility_can_be_modified(ROOM, {}, "private") is True


async def test_alias_creation_roles() -> None:
    from synapse.module_api import RoomAlias

    alias = RoomAlias.from_string(f"#team:{SERVER}")
    policy = make_policy()
    assert refused(await policy.user_may_create_room_alias(ALICE, alias), "created by IT")
    assert await policy.user_may_create_room_alias(ADMIN, alias) == NOT_SPAM
    assert await policy.user_may_create_room_alias(SERVICE, alias) == NOT_SPAM
    everyone = make_policy({"alias_creators": ["everyone"]})
    assert await everyone.user_may_create_room_alias(ALICE, alias) == NOT_SPAM


async def test_federated_invite_and_events_from_outside_are_refused() -> None:
    policy = make_policy()
    invite = event("m.room.member", REMOTE, {"membership": "invite"}, state_key=ALICE)
    assert refused(await policy.federated_user_may_invite(invite), "outside the company")
    assert await policy.should_drop_federated_event(
        event("m.room.message", REMOTE, {"body": "hi"})) is True
    assert await policy.should_drop_federated_event(
        event("m.room.encrypted", ALICE, {"ciphertext": "x"})) is False
    with pytest.raises(SynapseError) as info:
        await policy.check_event_allowed(
            event("m.room.member", REMOTE, {"membership": "join"}, state_key=REMOTE), {})
    assert info.value.code == 403 and "outside the company" in info.value.msg


async def test_remote_server_in_allowed_list_is_inside() -> None:
    policy = make_policy({"allowed_server_names": ["other.example"]})
    assert await policy.should_drop_federated_event(
        event("m.room.message", REMOTE, {"body": "hi"})) is False


@pytest.mark.parametrize(("ev", "fragment"), [
    (event("m.room.member", ALICE, {"membership": "invite"}, state_key=REMOTE),
     "outside the company"),
    (event("m.room.member", ADMIN, {"membership": "invite"}, state_key=REMOTE),
     "outside the company"),  # admins bypass the spam checker, not this backstop
    (event("m.room.member", ALICE, {"membership": "invite"}, state_key=GONE), "deactivated"),
    (event("m.room.member", GUEST, {"membership": "join"}, state_key=GUEST), "Guest"),
    (event("m.room.join_rules", ADMIN, {"join_rule": "public"}, state_key=""), "public"),
    (event("m.room.history_visibility", ALICE, {"history_visibility": "world_readable"},
           state_key=""), "readable for everyone"),
    (event("m.room.guest_access", ALICE, {"guest_access": "can_join"}, state_key=""), "Guest"),
    (event("m.room.third_party_invite", ALICE, {"display_name": "a"}, state_key="tok"),
     "e-mail"),
])
async def test_backstop_refuses_events(ev: Any, fragment: str) -> None:
    policy = make_policy()
    with pytest.raises(SynapseError) as info:
        await policy.check_event_allowed(ev, {})
    assert info.value.code == 403
    assert info.value.errcode == Codes.FORBIDDEN
    assert fragment in info.value.msg


@pytest.mark.parametrize("ev", [
    event("m.room.encrypted", ALICE, {"ciphertext": "x"}),
    event("m.room.member", ALICE, {"membership": "invite"}, state_key=BOB),
    event("m.room.member", BOB, {"membership": "join"}, state_key=BOB),
    event("m.room.member", GONE, {"membership": "leave"}, state_key=GONE),
    event("m.room.member", ALICE, {"membership": "ban"}, state_key=REMOTE),
    event("m.room.join_rules", ALICE, {"join_rule": "invite"}, state_key=""),
])
async def test_backstop_allows_normal_events(ev: Any) -> None:
    assert await make_policy().check_event_allowed(ev, {}) == (True, None)


async def test_restricted_group_from_config() -> None:
    policy = make_policy({"restricted_group": {"users": [CONTRACTOR], "allowed_rooms": [ROOM]}})
    assert await policy.user_may_join_room(CONTRACTOR, ROOM, True) == NOT_SPAM
    assert refused(await policy.user_may_invite(ALICE, CONTRACTOR, "!other"), "IT has listed")
    assert refused(await policy.user_may_create_room(CONTRACTOR, {}), "can't create rooms")
    assert await policy.user_may_create_room(ALICE, {}) == NOT_SPAM
    with pytest.raises(SynapseError) as info:
        await policy.check_event_allowed(
            event("m.room.member", ADMIN, {"membership": "invite"}, state_key=CONTRACTOR,
                  room_id="!other"), {})
    assert info.value.msg == (f"{CONTRACTOR} may only take part in the rooms IT has listed "
                              "for them, and this room is not one of them.")


async def test_restricted_group_from_policy_room() -> None:
    config = {"exempt_users": [SERVICE], "restricted_group": {"policy_room_id": POLICY_ROOM}}
    policy = make_policy(config, policy_state={
        CONTRACTOR: {"allowed_rooms": ["!project"]},
        BOB: {},  # restriction lifted
        GUEST: {"allowed_rooms": "!not-a-list"},  # malformed: restricted to nothing
    })
    assert await policy.user_may_join_room(CONTRACTOR, "!project", True) == NOT_SPAM
    assert refused(await policy.user_may_invite(ALICE, CONTRACTOR, ROOM), "IT has listed")
    assert await policy.user_may_invite(ALICE, BOB, ROOM) == NOT_SPAM
    assert await policy.user_may_create_room(BOB, {}) == NOT_SPAM
    assert refused(await policy.user_may_create_room(GUEST, {}), "can't create rooms")


async def test_only_exempt_accounts_write_the_policy_room() -> None:
    config = {"exempt_users": [SERVICE], "restricted_group": {"policy_room_id": POLICY_ROOM}}
    policy = make_policy(config, policy_state={})
    lift = event(RESTRICTED_USER_EVENT, CONTRACTOR, {}, state_key=policy_state_key(CONTRACTOR),
                 room_id=POLICY_ROOM)
    with pytest.raises(SynapseError) as info:
        await policy.check_event_allowed(lift, {})
    assert "Only IT's service account" in info.value.msg
    redaction = event("m.room.redaction", ADMIN, {"redacts": "$x"}, room_id=POLICY_ROOM)
    with pytest.raises(SynapseError) as info:
        await policy.check_event_allowed(redaction, {})
    assert info.value.msg == "Only IT's service account may change the restricted-access policy."
    by_service = event(RESTRICTED_USER_EVENT, SERVICE, {"allowed_rooms": []},
                       state_key=policy_state_key(CONTRACTOR), room_id=POLICY_ROOM)
    assert await policy.check_event_allowed(by_service, {}) == (True, None)


async def test_on_create_room_refuses_and_closes_guest_access() -> None:
    policy = make_policy()
    request: dict[str, Any] = {"preset": "private_chat", "invite": [BOB]}
    await policy.on_create_room(None, request, False)  # type: ignore[arg-type]
    assert request["initial_state"][-1]["content"] == {"guest_access": "forbidden"}
    with pytest.raises(SynapseError) as info:
        await policy.on_create_room(None, {"invite": [REMOTE]}, True)  # type: ignore[arg-type]
    assert "outside the company" in info.value.msg


async def test_internal_errors_refuse() -> None:
    policy = make_policy(fail=True)
    assert refused(await policy.user_may_invite(ALICE, BOB, ROOM), INTERNAL_ERROR_MESSAGE)
    assert refused(await policy.user_may_join_room(BOB, ROOM, True), INTERNAL_ERROR_MESSAGE)
    assert refused(await policy.user_may_create_room_alias(ADMIN, None),  # type: ignore[arg-type]
                   INTERNAL_ERROR_MESSAGE)
    with pytest.raises(SynapseError) as info:
        await policy.check_event_allowed(
            event("m.room.member", BOB, {"membership": "join"}, state_key=BOB), {})
    assert info.value.msg == INTERNAL_ERROR_MESSAGE
    broken = event("m.room.member", REMOTE, {"membership": "invite"}, state_key=ALICE)
    object.__setattr__(policy, "_boundary", None)  # any crash, even in pure code
    assert await policy.should_drop_federated_event(broken) is True
