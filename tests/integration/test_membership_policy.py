"""Company membership policy against a real Synapse: each forbidden action tried for real.

Most tests use the session `synapse` fixture (default modules, as `hauspost init` writes
them) with fresh users and rooms. Tests that need another config start their own Synapse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from provisioner.homeserver.module_configs import ModuleEntry, default_modules, membership_policy
from provisioner.homeserver.synapse_process import SynapseProcess, free_port
from synapse_modules.membership import RESTRICTED_USER_EVENT, policy_state_key
from tests.harness.synapse_server import SynapseServer, TestUser, start_synapse

OUTSIDER = "@x:other.example"
OUTSIDER_MESSAGE = ("@x:other.example is outside the company: only accounts on hauspost.test "
                    "can take part in rooms here.")


def call(server: SynapseServer, user: TestUser, method: str, path: str,
         body: dict[str, Any] | None = None, **params: str) -> httpx.Response:
    with server.client(user.token) as c:
        return c.request(method, path, json=body if body is not None else {}, params=params)


def invite(server: SynapseServer, user: TestUser, room_id: str, target: str) -> httpx.Response:
    return call(server, user, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                {"user_id": target})


def put_state(server: SynapseServer, user: TestUser, room_id: str, event_type: str,
              content: dict[str, Any], state_key: str = "") -> httpx.Response:
    return call(server, user, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/"
                f"{event_type}/{quote(state_key)}", content)


def refused(resp: httpx.Response, message: str) -> bool:
    assert resp.status_code == 403, resp.text
    assert resp.json() == {"errcode": "M_FORBIDDEN", "error": message}
    return True


def members(server: SynapseServer, room_id: str) -> dict[str, str]:
    return {e["state_key"]: e["content"]["membership"] for e in server.room_state(room_id)
            if e["type"] == "m.room.member"}


def service_account(server: SynapseServer) -> TestUser:
    return TestUser(server.admin_user_id, "", server.admin_token, "")


# -- allowed things still work -----------------------------------------------------------


def test_group_chat_and_direct_message_between_employees(synapse: SynapseServer) -> None:
    alice, bob, carol = (synapse.create_user() for _ in range(3))
    room_id = synapse.create_room(alice, name="Team", invite=[bob.user_id])
    assert invite(synapse, alice, room_id, carol.user_id).status_code == 200
    assert synapse.join(bob, room_id).status_code == 200
    assert synapse.join(carol, room_id).status_code == 200
    assert members(synapse, room_id) == {alice.user_id: "join", bob.user_id: "join",
                                         carol.user_id: "join"}
    dm = synapse.create_room(alice, is_direct=True, preset="trusted_private_chat",
                             invite=[bob.user_id])
    assert synapse.join(bob, dm).status_code == 200
    assert members(synapse, dm) == {alice.user_id: "join", bob.user_id: "join"}


def test_it_may_create_aliases_employees_may_not(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    room_id = synapse.create_room(alice)
    alias = f"#{synapse.unique('team')}:{synapse.server_name}"
    resp = call(synapse, alice, "PUT", f"/_matrix/client/v3/directory/room/{quote(alias)}",
                {"room_id": room_id})
    assert refused(resp, "Room addresses (aliases) can only be created by IT on this server.")
    resp = call(synapse, alice, "POST", "/_matrix/client/v3/createRoom",
                {"room_alias_name": synapse.unique("team")})
    assert refused(resp, "Room addresses (aliases) can only be created by IT on this server.")
    it = service_account(synapse)
    resp = call(synapse, it, "PUT", f"/_matrix/client/v3/directory/room/{quote(alias)}",
                {"room_id": room_id})
    assert resp.status_code == 200, resp.text


def test_admin_api_joins_an_employee(synapse: SynapseServer) -> None:
    it, alice = service_account(synapse), synapse.create_user()
    room_id = synapse.create_room(it, name="All staff")
    with synapse.admin() as c:
        resp = c.post(f"/_synapse/admin/v1/join/{quote(room_id)}", json={"user_id": alice.user_id})
    assert resp.status_code == 200, resp.text
    assert members(synapse, room_id)[alice.user_id] == "join"


# -- forbidden things, each tried for real ------------------------------------------------


def test_invite_to_another_server_refused(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    room_id = synapse.create_room(alice)
    assert refused(invite(synapse, alice, room_id, OUTSIDER), OUTSIDER_MESSAGE)
    resp = call(synapse, alice, "POST", "/_matrix/client/v3/createRoom", {"invite": [OUTSIDER]})
    assert refused(resp, OUTSIDER_MESSAGE)


def test_server_admin_cannot_invite_outsiders_either(synapse: SynapseServer) -> None:
    it = service_account(synapse)  # a server admin: Synapse skips the spam checker for it
    room_id = synapse.create_room(it)
    assert refused(invite(synapse, it, room_id, OUTSIDER), OUTSIDER_MESSAGE)
    assert OUTSIDER not in members(synapse, room_id)


def test_invite_of_unknown_or_deactivated_colleague_refused(synapse: SynapseServer) -> None:
    alice, leaver = synapse.create_user(), synapse.create_user()
    room_id = synapse.create_room(alice)
    nobody = synapse.mxid(synapse.unique("nobody"))
    assert refused(invite(synapse, alice, room_id, nobody),
                   f"{nobody} is not an employee account on this server.")
    with synapse.admin() as c:
        c.post(f"/_synapse/admin/v1/deactivate/{quote(leaver.user_id)}", json={}
               ).raise_for_status()
    assert refused(invite(synapse, alice, room_id, leaver.user_id),
                   f"{leaver.user_id} has been deactivated and can't be added to rooms.")


def test_stale_token_of_deactivated_user_is_rejected(synapse: SynapseServer) -> None:
    alice, leaver = synapse.create_user(), synapse.create_user()
    room_id = synapse.create_room(alice, invite=[leaver.user_id])
    assert synapse.join(leaver, room_id).status_code == 200
    with synapse.admin() as c:
        c.post(f"/_synapse/admin/v1/deactivate/{quote(leaver.user_id)}", json={}
               ).raise_for_status()
    for method, path, body in [
        ("GET", "/_matrix/client/v3/sync", None),
        ("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {}),
        ("PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.encrypted/t1",
         {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}),
    ]:
        with synapse.client(leaver.token) as c:
            resp = c.request(method, path, json=body)
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert members(synapse, room_id)[leaver.user_id] == "leave"


def test_threepid_invite_refused(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    room_id = synapse.create_room(alice)
    resp = call(synapse, alice, "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                {"medium": "email", "address": "someone@other.example",
                 "id_server": "127.0.0.1:9", "id_access_token": "x"})
    # Refused before Synapse asks any identity server (Synapse's own wording here).
    assert resp.status_code == 403, resp.text
    assert resp.json() == {"errcode": "M_FORBIDDEN", "error":
                           "This third-party identifier can not be invited in this room"}
    resp = call(synapse, alice, "POST", "/_matrix/client/v3/createRoom", {"invite_3pid": [
        {"medium": "email", "address": "a@other.example", "id_server": "127.0.0.1:9",
         "id_access_token": "x"}]})
    assert refused(resp, "Invitations by e-mail or phone number are switched off on this "
                         "server: invite colleagues by their Hauspost account instead.")


def test_join_room_on_another_server_refused(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    # By alias, Synapse answers before any module is asked (federation is off): 502.
    resp = call(synapse, alice, "POST", f"/_matrix/client/v3/join/{quote('#room:other.example')}")
    assert resp.status_code == 502
    # By room ID with a remote server hint, the policy refuses.
    for room_id in ("!abc:other.example", "!abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"):
        resp = call(synapse, alice, "POST", f"/_matrix/client/v3/join/{quote(room_id)}",
                    server_name="other.example")
        assert refused(resp, f"Room {room_id} is not hosted on this server; rooms outside "
                             "the company can't be joined.")


def test_publish_to_directory_refused(synapse: SynapseServer) -> None:
    alice, it = synapse.create_user(), service_account(synapse)
    room_id = synapse.create_room(alice)
    for user in (alice, it):
        resp = call(synapse, user, "PUT", f"/_matrix/client/v3/directory/list/room/"
                    f"{quote(room_id)}", {"visibility": "public"})
        assert refused(resp, "Rooms can't be published to the room directory on this server.")
    resp = call(synapse, alice, "POST", "/_matrix/client/v3/createRoom", {"visibility": "public"})
    assert refused(resp, "Rooms can't be published to the room directory on this server.")
    with synapse.client(alice.token) as c:
        assert c.get("/_matrix/client/v3/publicRooms").json()["chunk"] == []


def test_public_join_rule_refused(synapse: SynapseServer) -> None:
    alice, it = synapse.create_user(), service_account(synapse)
    room_id = synapse.create_room(alice)
    message = "Rooms can't be made public on this server: invite colleagues instead."
    assert refused(put_state(synapse, alice, room_id, "m.room.join_rules",
                             {"join_rule": "public"}), message)
    resp = call(synapse, alice, "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"})
    assert refused(resp, message)
    resp = call(synapse, it, "POST", "/_matrix/client/v3/createRoom", {"initial_state": [
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "public"}}]})
    assert refused(resp, message)
    assert put_state(synapse, alice, room_id, "m.room.join_rules",
                     {"join_rule": "knock"}).status_code == 200


def test_world_readable_history_refused(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    room_id = synapse.create_room(alice)
    assert refused(put_state(synapse, alice, room_id, "m.room.history_visibility",
                             {"history_visibility": "world_readable"}),
                   "Room history can't be made readable for everyone on this server.")
    assert put_state(synapse, alice, room_id, "m.room.history_visibility",
                     {"history_visibility": "joined"}).status_code == 200


def test_guest_access_refused(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    with synapse.client() as c:
        resp = c.post("/_matrix/client/v3/register", params={"kind": "guest"}, json={})
    assert resp.status_code == 403
    assert resp.json()["error"] == "Guest access is disabled"
    room_id = synapse.create_room(alice)
    guest_state = [e["content"] for e in synapse.room_state(room_id)
                   if e["type"] == "m.room.guest_access"]
    assert guest_state == [{"guest_access": "forbidden"}]
    assert refused(put_state(synapse, alice, room_id, "m.room.guest_access",
                             {"guest_access": "can_join"}),
                   "Guest access is switched off on this server.")


# -- restricted group, driven by a policy room ---------------------------------------------


def restart_with(server: SynapseServer, modules: list[ModuleEntry]) -> None:
    config_path = server.data_dir / "homeserver.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["modules"] = [{"module": m.module, "config": m.config} for m in modules]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    server.process.stop()
    server.process = SynapseProcess(config_path)
    server.process.start()
    server.process.wait_healthy(timeout=90)


@pytest.fixture
def policy_server(tmp_path: Path) -> Iterator[tuple[SynapseServer, str]]:
    server = start_synapse(tmp_path)
    try:
        policy_room = server.create_room(service_account(server), name="Access policy")
        entry = membership_policy(server.admin_user_id)
        entry.config["restricted_group"]["policy_room_id"] = policy_room
        modules = [entry if m.module == entry.module else m
                   for m in default_modules(server.server_name, server.admin_user_id, None)]
        restart_with(server, modules)
        yield server, policy_room
    finally:
        server.stop()


def test_restricted_group_follows_the_policy_room_live(
        policy_server: tuple[SynapseServer, str]) -> None:
    server, policy_room = policy_server
    it, alice, contractor = service_account(server), server.create_user(), server.create_user()
    project = server.create_room(alice, name="Project X")
    other = server.create_room(alice, name="Staff only")
    resp = put_state(server, it, policy_room, RESTRICTED_USER_EVENT,
                     {"allowed_rooms": [project]}, state_key=policy_state_key(contractor.user_id))
    assert resp.status_code == 200, resp.text

    listed = ("may only take part in the rooms IT has listed for them, and this room is "
              "not one of them.")
    assert refused(invite(server, alice, other, contractor.user_id),
                   f"{contractor.user_id} {listed}")
    assert invite(server, alice, project, contractor.user_id).status_code == 200
    assert server.join(contractor, project).status_code == 200
    resp = call(server, contractor, "POST", "/_matrix/client/v3/createRoom", {})
    assert refused(resp, "Your account may only take part in the rooms IT has listed for you, "
                         "so it can't create rooms.")

    # Power levels let alice write the policy; the module still says no.
    assert invite(server, it, policy_room, alice.user_id).status_code == 200
    assert server.join(alice, policy_room).status_code == 200
    levels = call(server, it, "GET", f"/_matrix/client/v3/rooms/{quote(policy_room)}/state/"
                  "m.room.power_levels/").json()
    assert put_state(server, it, policy_room, "m.room.power_levels",
                     {**levels, "users": {alice.user_id: 100}}).status_code == 200
    resp = put_state(server, alice, policy_room, RESTRICTED_USER_EVENT, {},
                     state_key=policy_state_key(contractor.user_id))
    assert refused(resp, "Only IT's service account may change the restricted-access policy.")

    # IT lifts the restriction: effective at once, no restart.
    assert put_state(server, it, policy_room, RESTRICTED_USER_EVENT, {},
                     state_key=policy_state_key(contractor.user_id)).status_code == 200
    assert invite(server, alice, other, contractor.user_id).status_code == 200


# -- a federation listener switched on by mistake -------------------------------------------


def test_federation_listener_on_by_mistake_still_no_outsiders(tmp_path: Path) -> None:
    """Signed requests from a fake remote are beyond this test (they need the remote's
    signing keys served over TLS); tests/unit/test_membership_callbacks.py checks the
    decisions for remote origins. Here: the listener really is on, federation is no longer
    whitelisted to nobody, and outsiders still can't be invited, nor remote rooms joined."""
    fed_port = free_port()

    def open_federation(config: dict[str, Any]) -> None:
        config["listeners"].append({"port": fed_port, "bind_addresses": ["127.0.0.1"],
                                    "type": "http", "tls": False,
                                    "resources": [{"names": ["federation"]}]})
        config.pop("federation_domain_whitelist", None)

    server = start_synapse(tmp_path, edit=open_federation)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{fed_port}", timeout=10) as c:
            assert c.get("/_matrix/federation/v1/version").status_code == 200
            unsigned = c.put("/_matrix/federation/v2/invite/!r/$e", json={})
            assert unsigned.status_code == 401
        alice = server.create_user()
        room_id = server.create_room(alice)
        assert refused(invite(server, alice, room_id, OUTSIDER), OUTSIDER_MESSAGE)
        assert refused(invite(server, service_account(server), room_id, OUTSIDER),
                       OUTSIDER_MESSAGE)
        resp = call(server, alice, "POST", "/_matrix/client/v3/join/!abc:other.example",
                    server_name="other.example")
        assert refused(resp, "Room !abc:other.example is not hosted on this server; rooms "
                             "outside the company can't be joined.")
    finally:
        server.stop()
