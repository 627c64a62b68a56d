"""Membership policy predicates: each decision, and each way around it, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_modules.membership import (
    PUBLISH_REFUSAL,
    THREEPID_REFUSAL,
    Boundary,
    close_guest_access,
    refuse_alias,
    refuse_creation_request,
    refuse_inactive_account,
    refuse_outsider,
    refuse_restricted_room,
    refuse_room_state,
    refuse_unknown_room,
    server_of,
)
from tests.unit.test_membership_fakes import user_info

BOUNDARY = Boundary("hauspost.test", frozenset({"branch.example"}))


@pytest.mark.parametrize(("user_id", "inside"), [
    ("@a:hauspost.test", True),
    ("@a:branch.example", True),
    ("@a:other.example", False),
    ("@a:hauspost.test.evil.example", False),  # suffix tricks
    ("@a:evilhauspost.test", False),
    ("@a:hauspost.test:8448", False),  # same host, other port: another server name
    ("@hauspost.test", False),  # malformed: no server part
    ("", False),
])
def test_boundary(user_id: str, inside: bool) -> None:
    assert BOUNDARY.is_inside(user_id) is inside
    refusal = refuse_outsider(BOUNDARY, user_id)
    assert (refusal is None) is inside
    if refusal is not None:
        assert refusal.message == (f"{user_id} is outside the company: only accounts on "
                                   "branch.example, hauspost.test can take part in rooms here.")


def test_server_of() -> None:
    assert server_of("@a:b.example:8448") == "b.example:8448"
    assert server_of("@nocolon") == ""


def test_inactive_accounts() -> None:
    uid = "@a:hauspost.test"
    assert refuse_inactive_account(uid, user_info(uid)) is None
    missing = refuse_inactive_account(uid, None)
    assert missing is not None and missing.message == (
        "@a:hauspost.test is not an employee account on this server.")
    gone = refuse_inactive_account(uid, user_info(uid, deactivated=True))
    assert gone is not None and "deactivated" in gone.message
    guest = refuse_inactive_account(uid, user_info(uid, guest=True))
    assert guest is not None and guest.message == (
        "Guest accounts can't take part in rooms on this server.")


def test_restricted_rooms() -> None:
    assert refuse_restricted_room("@c:x", "!r1", None) is None
    assert refuse_restricted_room("@c:x", "!r1", frozenset({"!r1"})) is None
    refusal = refuse_restricted_room("@c:x", "!r2", frozenset({"!r1"}))
    assert refusal is not None and "IT has listed" in refusal.message
    assert refuse_restricted_room("@c:x", "!r1", frozenset()) is not None


@pytest.mark.parametrize(("event_type", "content", "refused"), [
    ("m.room.join_rules", {"join_rule": "public"}, True),
    ("m.room.join_rules", {"join_rule": "invite"}, False),
    ("m.room.join_rules", {"join_rule": "knock"}, False),
    ("m.room.join_rules", {"join_rule": "restricted", "allow": []}, False),
    ("m.room.history_visibility", {"history_visibility": "world_readable"}, True),
    ("m.room.history_visibility", {"history_visibility": "shared"}, False),
    ("m.room.guest_access", {"guest_access": "can_join"}, True),
    ("m.room.guest_access", {"guest_access": "forbidden"}, False),
    ("m.room.third_party_invite", {"display_name": "a@b"}, True),
    ("m.room.name", {"name": "public"}, False),
])
def test_room_state(event_type: str, content: dict[str, Any], refused: bool) -> None:
    assert (refuse_room_state(event_type, content) is not None) is refused


def test_alias_roles() -> None:
    default = frozenset({"server_admins", "exempt_users"})
    assert refuse_alias(default, is_admin=False, is_exempt=False) is not None
    assert refuse_alias(default, is_admin=True, is_exempt=False) is None
    assert refuse_alias(default, is_admin=False, is_exempt=True) is None
    assert refuse_alias(frozenset({"server_admins"}), is_admin=False, is_exempt=True) is not None
    assert refuse_alias(frozenset({"everyone"}), is_admin=False, is_exempt=False) is None
    assert refuse_alias(frozenset(), is_admin=True, is_exempt=True) is not None


def test_unknown_room() -> None:
    assert refuse_unknown_room("!r", True) is None
    refusal = refuse_unknown_room("!r:other.example", False)
    assert refusal is not None and "not hosted on this server" in refusal.message


@pytest.mark.parametrize(("request_body", "expected"), [
    ({}, None),
    ({"preset": "private_chat", "invite": ["@b:hauspost.test"], "is_direct": True}, None),
    ({"visibility": "public"}, PUBLISH_REFUSAL),
    ({"visibility": "private", "preset": "public_chat"},
     refuse_room_state("m.room.join_rules", {"join_rule": "public"})),
    ({"invite_3pid": [{"medium": "email", "address": "a@b.example"}]}, THREEPID_REFUSAL),
    ({"invite": ["@b:hauspost.test", "@x:other.example"]},
     refuse_outsider(BOUNDARY, "@x:other.example")),
    ({"initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "public"}}]},
     refuse_room_state("m.room.join_rules", {"join_rule": "public"})),
    ({"initial_state": [{"type": "m.room.history_visibility",
                         "content": {"history_visibility": "world_readable"}}]},
     refuse_room_state("m.room.history_visibility", {"history_visibility": "world_readable"})),
    ({"initial_state": ["garbage", {"type": "m.room.name", "content": {"name": "x"}}]}, None),
])
def test_creation_request(request_body: dict[str, Any], expected: object) -> None:
    assert refuse_creation_request(request_body, BOUNDARY) == expected


def test_guest_access_closed_on_creation_unless_the_client_set_it() -> None:
    body: dict[str, Any] = {"preset": "private_chat"}
    close_guest_access(body)
    assert body["initial_state"] == [{"type": "m.room.guest_access", "state_key": "",
                                      "content": {"guest_access": "forbidden"}}]
    explicit: dict[str, Any] = {"initial_state": [
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}}]}
    close_guest_access(explicit)
    assert len(explicit["initial_state"]) == 1
