"""The batched membership path (synapse_modules.members_batch) on a real Synapse with every
default module, as `hauspost init` writes them.

Only the service account may use it; every person is judged on their own (and by every
policy the admin API's join meets); the events it writes are the ones the admin API's
join writes; and people added this way use the room like anybody else: their clients see
it, and they read each other's encrypted messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from provisioner.homeserver.module_configs import default_modules, membership_policy
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.rooms.run import state_from_events
from synapse_modules.members_batch import BATCH_PATH, STATE_PATH
from tests.harness.e2ee import close_all, e2ee_login, send_text, sync_all, wait_for_decrypted
from tests.harness.synapse_server import SynapseServer, TestUser, start_synapse

pytestmark = pytest.mark.integration

SERVER = "hauspost.test"
RESTRICTED = f"@praktikant:{SERVER}"  # may be in no room at all (restricted_group)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    def restrict(config: dict[str, Any]) -> None:
        admin = f"@hauspost:{SERVER}"  # the service account `init` writes
        entry = membership_policy(admin)
        entry.config["restricted_group"]["users"] = [RESTRICTED]
        modules = [entry if m.module == entry.module else m
                   for m in default_modules(SERVER, admin, None)]
        config["modules"] = [{"module": m.module, "config": m.config} for m in modules]

    synapse = start_synapse(tmp_path_factory.mktemp("members-batch"), edit=restrict)
    try:
        yield synapse
    finally:
        synapse.stop()


def org_room(server: SynapseServer, name: str) -> str:
    """A room as the provisioner makes it: the service account's, invite-only, encrypted."""
    with server.admin() as c:
        resp = c.post("/_matrix/client/v3/createRoom", json={
            "preset": "private_chat", "name": name, "initial_state": [
                {"type": "m.room.encryption", "state_key": "",
                 "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]})
        resp.raise_for_status()
        return str(resp.json()["room_id"])


def post_batch(server: SynapseServer, token: str | None, room_id: str,
               user_ids: list[Any]) -> Any:
    with server.client(token) as c:
        return c.post(BATCH_PATH, json={"room_id": room_id, "user_ids": user_ids})


def members(server: SynapseServer, room_id: str) -> dict[str, dict[str, Any]]:
    """Every member event of the room, by member."""
    return {e["state_key"]: e for e in server.room_state(room_id)
            if e["type"] == "m.room.member"}


def deactivate(server: SynapseServer, user: TestUser) -> None:
    with server.admin() as c:
        c.post(f"/_synapse/admin/v1/deactivate/{quote(user.user_id)}",
               json={"erase": False}).raise_for_status()


def test_nobody_but_the_service_account_adds_members(server: SynapseServer) -> None:
    room = org_room(server, "Vertrieb")
    user = server.create_user()
    other_admin = server.create_user(admin=True)

    unauthenticated = post_batch(server, None, room, [user.user_id])
    as_user = post_batch(server, user.token, room, [user.user_id])
    as_other_admin = post_batch(server, other_admin.token, room, [user.user_id])
    with server.client(other_admin.token) as c:
        probe = c.get(BATCH_PATH)
    with server.admin() as c:
        size = c.get(BATCH_PATH)

    assert unauthenticated.status_code == 401, unauthenticated.text
    assert as_user.status_code == 403, as_user.text
    assert as_other_admin.status_code == 403, as_other_admin.text
    assert as_other_admin.json()["errcode"] == "M_FORBIDDEN"
    assert probe.status_code == 403
    assert size.json() == {"max_batch": 50}
    assert sorted(members(server, room)) == [server.admin_user_id]


def test_every_person_is_judged_and_the_rest_joined(server: SynapseServer) -> None:
    room = org_room(server, "Einkauf")
    jurgen = server.create_user(displayname="Jürgen Groß")
    fang = server.create_user(displayname="王芳")
    lucja = server.create_user(displayname="Łucja Wójcik")
    left = server.create_user(displayname="Ausgeschieden")
    banned = server.create_user(displayname="Gesperrt")
    already = server.create_user(displayname="Schon Drin")
    with server.admin() as c:
        c.post(f"/_synapse/admin/v1/join/{quote(room)}",
               json={"user_id": already.user_id}).raise_for_status()
        c.post(f"/_matrix/client/v3/rooms/{quote(room)}/ban",
               json={"user_id": banned.user_id, "reason": "test"}).raise_for_status()
    deactivate(server, left)
    with server.admin() as c:
        c.put(f"/_synapse/admin/v2/users/{quote(RESTRICTED)}",
              json={"displayname": "Praktikant"}).raise_for_status()
    batch = [jurgen.user_id, left.user_id, f"@nobody:{SERVER}", "@gast:elsewhere.test",
             fang.user_id, jurgen.user_id, "not an id", banned.user_id, already.user_id,
             RESTRICTED, lucja.user_id]

    resp = post_batch(server, server.admin_token, room, batch)

    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r.get("error") for r in results] == [
        None, "the account is deactivated", "no such account",
        "not an account of this server", None, "duplicate user ID in this batch",
        "not a user ID (@localpart:server)", "banned from the room", None,
        f"{RESTRICTED} may only take part in the rooms IT has listed for them, "
        "and this room is not one of them.", None]
    assert results[8] == {"user_id": already.user_id, "membership": "join",
                          "unchanged": True}
    state = members(server, room)
    joined = {u: e["content"].get("displayname") for u, e in state.items()
              if e["content"]["membership"] == "join"}
    assert joined == {server.admin_user_id: "hauspost", already.user_id: "Schon Drin",
                      jurgen.user_id: "Jürgen Groß", fang.user_id: "王芳",
                      lucja.user_id: "Łucja Wójcik"}
    assert state[banned.user_id]["content"]["membership"] == "ban"
    assert left.user_id not in state and RESTRICTED not in state


def test_a_room_that_is_not_here_is_refused_and_nothing_written(
        server: SynapseServer) -> None:
    user = server.create_user()
    resp = post_batch(server, server.admin_token, "!nichtda", [user.user_id])
    bad = post_batch(server, server.admin_token, "kein-raum", [user.user_id])
    too_many = post_batch(server, server.admin_token, org_room(server, "Groß"),
                          [f"@u{i}:{SERVER}" for i in range(51)])

    assert resp.status_code == 404, resp.text
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_INVALID_PARAM"
    assert too_many.status_code == 400 and too_many.json()["errcode"] == "M_TOO_LARGE"


def _events_of(server: SynapseServer, room_id: str, user_id: str) -> list[tuple[Any, ...]]:
    """The member events about `user_id`, oldest first, as (sender, membership, content)."""
    with server.admin() as c:
        resp = c.get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/messages",
                     params={"dir": "f", "limit": 1000})
        resp.raise_for_status()
    return [(e["sender"], e["content"]["membership"],
             {k: v for k, v in e["content"].items() if k != "membership"})
            for e in resp.json()["chunk"]
            if e["type"] == "m.room.member" and e["state_key"] == user_id]


def test_the_events_are_the_ones_the_admin_join_writes(server: SynapseServer) -> None:
    people = [server.create_user(displayname=name)
              for name in ("Anna Müller", "Ömer Yılmaz", "Søren Ærø")]
    # One of them invited earlier by hand: the batch only joins her, as the admin API does.
    by_admin, by_batch = org_room(server, "Per Admin-API"), org_room(server, "Im Stapel")
    for room in (by_admin, by_batch):
        with server.admin() as c:
            c.post(f"/_matrix/client/v3/rooms/{quote(room)}/invite",
                   json={"user_id": people[0].user_id}).raise_for_status()
    with server.admin() as c:
        for person in people:
            c.post(f"/_synapse/admin/v1/join/{quote(by_admin)}",
                   json={"user_id": person.user_id}).raise_for_status()

    resp = post_batch(server, server.admin_token, by_batch, [p.user_id for p in people])

    assert [r.get("error") for r in resp.json()["results"]] == [None, None, None]
    for person in people:
        expected = _events_of(server, by_admin, person.user_id)
        assert _events_of(server, by_batch, person.user_id) == expected
        assert [m for _, m, _ in expected] == ["invite", "join"]
    assert _events_of(server, by_batch, people[1].user_id) == [
        (server.admin_user_id, "invite", {}),  # include_profile_data_on_invite: off
        (people[1].user_id, "join", {"displayname": "Ömer Yılmaz"})]
    with server.client(people[2].token) as c:
        joined = c.get("/_matrix/client/v3/joined_rooms").json()["joined_rooms"]
        count = c.get(f"/_matrix/client/v3/rooms/{quote(by_batch)}/joined_members").json()
    assert by_batch in joined and by_admin in joined
    assert len(count["joined"]) == 4


def test_people_added_in_a_batch_read_each_others_encrypted_messages(
        server: SynapseServer, tmp_path: Path) -> None:
    room = org_room(server, "Standort Köln")
    anna, ben = server.create_user(displayname="Anna"), server.create_user(displayname="Ben")

    async def scenario() -> str:
        alice_client = await e2ee_login(server, anna, tmp_path / "anna")
        ben_client = await e2ee_login(server, ben, tmp_path / "ben")
        try:
            resp = post_batch(server, server.admin_token, room, [anna.user_id, ben.user_id])
            assert [r.get("error") for r in resp.json()["results"]] == [None, None]
            await sync_all(alice_client, ben_client)
            assert room in alice_client.rooms and room in ben_client.rooms
            assert alice_client.rooms[room].encrypted
            await send_text(alice_client, room, "Grüße aus Köln")
            event = await wait_for_decrypted(ben_client, room, body="Grüße aus Köln")
            return str(event.sender)
        finally:
            await close_all(alice_client, ben_client)

    assert asyncio.run(scenario()) == anna.user_id


def test_the_compact_room_read_gives_the_planner_what_the_admin_api_gives(
        server: SynapseServer) -> None:
    room = org_room(server, "Lager Süd")
    stayed, left, kicked, invited = (server.create_user(displayname=n) for n in (
        "Bleibt", "Geht", "Raus", "Eingeladen"))
    post_batch(server, server.admin_token, room, [stayed.user_id, left.user_id,
                                                  kicked.user_id])
    with server.client(left.token) as c:
        c.post(f"/_matrix/client/v3/rooms/{quote(room)}/leave", json={}).raise_for_status()
    with server.admin() as c:
        for path, body in (("kick", {"user_id": kicked.user_id, "reason": "Umzug"}),
                           ("invite", {"user_id": invited.user_id})):
            c.post(f"/_matrix/client/v3/rooms/{quote(room)}/{path}",
                   json=body).raise_for_status()
        c.put(f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.topic/",
              json={"topic": "Wareneingang"}).raise_for_status()

    async def both() -> tuple[Any, Any, Any]:
        async with SynapseAdmin(server.url, server.admin_token) as admin:
            return (await admin.room_state_compact(room),
                    await admin.room_state_compact("!gibtsnicht"),
                    (await admin.request("GET", f"/_synapse/admin/v1/rooms/{quote(room)}/state"
                                         )).json()["state"])

    compact, missing, full = asyncio.run(both())
    with server.client(stayed.token) as c:
        refused = c.get(STATE_PATH, params={"room_id": room})

    assert missing is None
    assert refused.status_code == 403
    assert state_from_events(compact) == state_from_events(full)
    state = state_from_events(compact)
    assert {u: (m.membership, m.sender) for u, m in state.members.items()} == {
        server.admin_user_id: ("join", server.admin_user_id),
        stayed.user_id: ("join", stayed.user_id), left.user_id: ("leave", left.user_id),
        kicked.user_id: ("leave", server.admin_user_id),
        invited.user_id: ("invite", server.admin_user_id)}
    assert state.topic == "Wareneingang" and state.name == "Lager Süd"
    assert len(compact) == len(full)


def test_a_person_refused_after_their_invitation_leaves_no_trace_in_the_chain(
        server: SynapseServer) -> None:
    """A suspended account passes the checks before any event, gets its invitation made,
    and then Synapse refuses its join: the invitation goes too, and the people around it
    (first in the chain, last in it) are joined as if the person had not been asked."""
    room = org_room(server, "Buchhaltung")
    suspended = [server.create_user(displayname=n) for n in ("Gesperrt Eins", "Gesperrt Zwei")]
    others = [server.create_user(displayname=n) for n in ("Ältere Kollegin", "Neuer Kollege")]
    with server.admin() as c:
        for person in suspended:
            c.put(f"/_synapse/admin/v1/suspend/{quote(person.user_id)}",
                  json={"suspend": True}).raise_for_status()
    # First in the batch (the chain's ordinary first event is undone), then in the middle.
    batch = [suspended[0].user_id, others[0].user_id, suspended[1].user_id,
             others[1].user_id]

    resp = post_batch(server, server.admin_token, room, batch)

    refusal = "Changing membership while account is suspended is not allowed."
    assert [r.get("error") for r in resp.json()["results"]] == [refusal, None, refusal, None]
    state = members(server, room)
    assert {u: e["content"]["membership"] for u, e in state.items()} == {
        server.admin_user_id: "join", others[0].user_id: "join", others[1].user_id: "join"}
    for person in suspended:
        assert _events_of(server, room, person.user_id) == []
    assert [m for _, m, _ in _events_of(server, room, others[1].user_id)] == ["invite", "join"]
