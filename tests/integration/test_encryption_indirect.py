"""Encryption can't be weakened indirectly either (issue "Holds under attack", item 1).

Each path a room member with power — or a server admin — could take to make clients read a
room as unencrypted, tried against a real Synapse with our modules. The list of paths and
what stops each is in docs/policy-modules.md ("Indirect ways around encryption").
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.harness.synapse_server import SynapseServer, TestUser

pytestmark = pytest.mark.integration

MEGOLM = "m.megolm.v1.aes-sha2"


def admin_of(server: SynapseServer) -> TestUser:
    return TestUser(server.admin_user_id, "", server.admin_token, "")


def room_with_admin(server: SynapseServer) -> tuple[TestUser, TestUser, str]:
    """A room whose creator gave the server admin full power too."""
    owner, admin = server.create_user(), admin_of(server)
    room_id = server.create_room(owner, invite=[admin.user_id],
                                 power_level_content_override={"users": {admin.user_id: 100}})
    assert server.join(admin, room_id).status_code == 200
    return owner, admin, room_id


def state_event(server: SynapseServer, room_id: str, event_type: str) -> dict[str, Any]:
    [event] = [e for e in server.room_state(room_id)
               if e["type"] == event_type and e["state_key"] == ""]
    return event


def refused(resp: httpx.Response, text: str) -> None:
    assert resp.status_code == 403, resp.text
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert text in resp.json()["error"], resp.json()["error"]


def test_redacting_the_encryption_event_is_refused(synapse: SynapseServer) -> None:
    owner, admin, room_id = room_with_admin(synapse)
    encryption = state_event(synapse, room_id, "m.room.encryption")
    for who in (owner, admin):
        with synapse.client(who.token) as c:
            resp = c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/redact/"
                         f"{quote(encryption['event_id'])}/t{who.user_id[1:5]}", json={})
        refused(resp, "encryption event can't be redacted")
    # The admin API's "redact all of a user's events" takes the same road.
    with synapse.admin() as c:
        resp = c.post(f"/_synapse/admin/v1/user/{quote(owner.user_id)}/redact",
                      json={"rooms": [room_id]})
        assert resp.status_code == 200, resp.text
        redact_id = resp.json()["redact_id"]
        status = {}
        for _ in range(50):
            status = c.get(f"/_synapse/admin/v1/user/redact_status/{redact_id}").json()
            if status["status"] in ("complete", "failed"):
                break
            time.sleep(0.2)
    assert status["status"] == "complete", status
    # Synapse's redact-user API leaves state events alone; either way the state holds.
    after = state_event(synapse, room_id, "m.room.encryption")
    assert (after["event_id"], after["content"]) == (encryption["event_id"],
                                                     {"algorithm": MEGOLM})


@pytest.mark.parametrize("content", [
    {"algorithm": MEGOLM, "rotation_period_ms": 604_800_001},
    {"algorithm": MEGOLM, "rotation_period_msgs": 10_000},
    {"algorithm": MEGOLM, "rotation_period_msgs": "100"},
    {"algorithm": MEGOLM, "rotation_period_ms": 0},
])
def test_weaker_key_rotation_is_refused(synapse: SynapseServer, content: dict[str, Any]) -> None:
    owner, admin, room_id = room_with_admin(synapse)
    for who in (owner, admin):
        with synapse.client(who.token) as c:
            resp = c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.encryption/",
                         json=content)
        refused(resp, "rotate at least weekly")


def test_a_room_asked_for_with_weak_rotation_gets_the_defaults(synapse: SynapseServer) -> None:
    owner = synapse.create_user()
    room_id = synapse.create_room(owner, initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": MEGOLM, "rotation_period_msgs": 100_000,
                    "rotation_period_ms": 3_600_000}}])
    assert state_event(synapse, room_id, "m.room.encryption")["content"] == {
        "algorithm": MEGOLM, "rotation_period_ms": 3_600_000}


@pytest.mark.parametrize("replacement", ["!doesnotexist", "!abc:elsewhere.example", 42, None])
def test_a_tombstone_to_anything_but_an_encrypted_room_of_ours_is_refused(
        synapse: SynapseServer, replacement: object) -> None:
    owner, admin, room_id = room_with_admin(synapse)
    for who in (owner, admin):
        with synapse.client(who.token) as c:
            resp = c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.tombstone/",
                         json={"body": "Wir sind umgezogen", "replacement_room": replacement})
        refused(resp, "only be replaced by an end-to-end encrypted room")


def test_a_tombstone_to_an_encrypted_room_and_a_real_upgrade_work(synapse: SynapseServer) -> None:
    owner = synapse.create_user()
    old, new = synapse.create_room(owner), synapse.create_room(owner)
    with synapse.client(owner.token) as c:
        resp = c.put(f"/_matrix/client/v3/rooms/{quote(old)}/state/m.room.tombstone/",
                     json={"body": "Wir sind umgezogen", "replacement_room": new})
        assert resp.status_code == 200, resp.text
        upgraded = c.post(f"/_matrix/client/v3/rooms/{quote(new)}/upgrade",
                          json={"new_version": "12"})
    assert upgraded.status_code == 200, upgraded.text
    successor = upgraded.json()["replacement_room"]
    assert state_event(synapse, successor, "m.room.encryption")["content"]["algorithm"] == MEGOLM
    assert state_event(synapse, new, "m.room.tombstone")["content"]["replacement_room"] == successor
