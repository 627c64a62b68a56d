"""Encryption policy against a real Synapse with real E2EE clients (matrix-nio, vodozemac).

Uses the session `synapse` fixture, which loads the default modules exactly as
`hauspost init` writes them; every test makes its own users and rooms.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from nio import RoomRedactResponse

from tests.harness.e2ee import (
    close_all,
    create_encrypted_room,
    e2ee_login,
    join_and_sync,
    send_content,
    send_text,
    sync_all,
    wait_for_decrypted,
)
from tests.harness.synapse_server import SynapseServer, TestUser, start_synapse

MEGOLM = "m.megolm.v1.aes-sha2"
PLAINTEXT_MESSAGE = ("Unencrypted m.room.message events are refused: this room is end-to-end "
                     "encrypted. Use an app with encryption switched on (Element, Element X).")
SWITCH_OFF_MESSAGE = ("Encryption can't be switched off or changed on this server: every room "
                      f"uses {MEGOLM}.")


def encryption_state(server: SynapseServer, room_id: str) -> list[dict[str, Any]]:
    return [e["content"] for e in server.room_state(room_id) if e["type"] == "m.room.encryption"]


def admin_timeline(server: SynapseServer, room_id: str) -> list[dict[str, Any]]:
    with server.admin() as c:
        resp = c.get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/messages",
                     params={"dir": "b", "limit": 1000})
        resp.raise_for_status()
        chunk: list[dict[str, Any]] = resp.json()["chunk"]
        return chunk


def stored_event_json(server: SynapseServer, room_id: str) -> list[str]:
    """The raw event JSON Synapse stored for the room (read-only look at SQLite)."""
    db = sqlite3.connect(f"file:{server.data_dir / 'homeserver.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT json FROM event_json WHERE room_id = ?", (room_id,)).fetchall()
    finally:
        db.close()
    return [str(r[0]) for r in rows]


def power_levels(server: SynapseServer, user: TestUser, room_id: str) -> dict[str, Any]:
    with server.client(user.token) as c:
        resp = c.get(f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.power_levels/")
        resp.raise_for_status()
        content: dict[str, Any] = resp.json()
        return content


def send_plain(server: SynapseServer, user: TestUser, room_id: str, event_type: str,
               content: dict[str, Any]) -> httpx.Response:
    with server.client(user.token) as c:
        return c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{event_type}/"
                     f"{server.unique('txn')}", json=content)


def put_state(server: SynapseServer, user: TestUser, room_id: str, event_type: str,
              content: dict[str, Any]) -> httpx.Response:
    with server.client(user.token) as c:
        return c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/",
                     json=content)


async def test_room_created_without_encryption_is_encrypted_and_server_sees_only_ciphertext(
        synapse: SynapseServer, tmp_path: Path) -> None:
    alice_user, bob_user = synapse.create_user(), synapse.create_user()
    alice = await e2ee_login(synapse, alice_user, tmp_path)
    bob = await e2ee_login(synapse, bob_user, tmp_path)
    try:
        room_id = await create_encrypted_room(alice, invite=[bob.user_id], encrypted=False)
        assert encryption_state(synapse, room_id) == [{"algorithm": MEGOLM}]
        await join_and_sync(bob, room_id)
        await sync_all(alice, bob)
        secret = f"payroll figures {synapse.unique('secret')}"
        await send_text(alice, room_id, secret)
        received = await wait_for_decrypted(bob, room_id, body=secret)
        assert received.sender == alice.user_id

        timeline = admin_timeline(synapse, room_id)
        message_types = {e["type"] for e in timeline if "state_key" not in e}
        assert message_types == {"m.room.encrypted"}
        assert all(secret not in str(e) for e in timeline)
        stored = stored_event_json(synapse, room_id)
        assert any('"m.room.encrypted"' in row for row in stored)
        assert all(secret not in row for row in stored)
    finally:
        await close_all(alice, bob)


async def test_direct_message_is_encrypted_and_readable(synapse: SynapseServer,
                                                        tmp_path: Path) -> None:
    alice = await e2ee_login(synapse, synapse.create_user(), tmp_path)
    bob = await e2ee_login(synapse, synapse.create_user(), tmp_path)
    try:
        # What Element sends for "Start chat", minus the encryption it would add itself.
        resp = await alice.room_create(invite=[bob.user_id], is_direct=True,
                                       preset=None, initial_state=[])
        room_id = str(resp.room_id)
        assert encryption_state(synapse, room_id) == [{"algorithm": MEGOLM}]
        await join_and_sync(bob, room_id)
        await sync_all(alice, bob)
        await send_text(bob, room_id, "lunch at 12?")
        await wait_for_decrypted(alice, room_id, body="lunch at 12?")
    finally:
        await close_all(alice, bob)


async def test_requested_weaker_algorithm_is_replaced(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    room_id = synapse.create_room(alice, initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.none"}}])
    assert encryption_state(synapse, room_id) == [{"algorithm": MEGOLM}]


def test_plaintext_message_refused(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    room_id = synapse.create_room(alice)
    resp = send_plain(synapse, alice, room_id, "m.room.message",
                      {"msgtype": "m.text", "body": "in the clear"})
    assert resp.status_code == 403
    assert resp.json() == {"errcode": "M_FORBIDDEN", "error": PLAINTEXT_MESSAGE}
    for event_type, content in [("m.sticker", {"body": "x", "url": "mxc://a/b", "info": {}}),
                                ("org.matrix.msc3381.poll.start", {"body": "poll?"}),
                                ("m.poll.start", {"body": "poll?"})]:
        resp = send_plain(synapse, alice, room_id, event_type, content)
        assert resp.status_code == 403, event_type
        assert resp.json()["error"].startswith(f"Unencrypted {event_type} events are refused")
    assert all("in the clear" not in row for row in stored_event_json(synapse, room_id))


def test_decisions_hold_with_narrowed_state_in_a_room_of_many(synapse: SynapseServer) -> None:
    """Synapse hands our callbacks only the state they declare (event_rules_state.py).

    The log proves the narrowing is installed in this Synapse; the refusals prove the
    encryption event still reaches the policy among 40 members' state: plaintext by the
    last joiner, a switch-off by the creator and a redaction of the encryption event.
    """
    log = (synapse.data_dir / "homeserver.log").read_text(encoding="utf-8", errors="replace")
    assert "check_event_allowed loads only the room state our callbacks declare" in log
    creator = synapse.create_user()
    members = [synapse.create_user() for _ in range(40)]
    room_id = synapse.create_room(creator, preset="private_chat")
    with synapse.client(creator.token) as c:
        for member in members:
            c.post(f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                   json={"user_id": member.user_id}).raise_for_status()
    for member in members:
        synapse.join(member, room_id).raise_for_status()
    resp = send_plain(synapse, members[-1], room_id, "m.room.message",
                      {"msgtype": "m.text", "body": "in the clear, late joiner"})
    assert (resp.status_code, resp.json()["error"]) == (403, PLAINTEXT_MESSAGE)
    resp = put_state(synapse, creator, room_id, "m.room.encryption", {})
    assert (resp.status_code, resp.json()["error"]) == (403, SWITCH_OFF_MESSAGE)
    encryption_id = next(e["event_id"] for e in synapse.room_state(room_id)
                         if e["type"] == "m.room.encryption")
    with synapse.client(creator.token) as c:
        resp = c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/redact/"
                     f"{quote(encryption_id)}/{synapse.unique('txn')}", json={})
    assert resp.status_code == 403
    assert encryption_state(synapse, room_id) == [{"algorithm": MEGOLM}]
    members_now = [e for e in synapse.room_state(room_id) if e["type"] == "m.room.member"]
    assert len(members_now) == 41


def test_switching_encryption_off_or_changing_it_refused(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    room_id = synapse.create_room(alice)
    for content in ({}, {"algorithm": "m.none"}, {"algorithm": "m.olm.v1.curve25519-aes-sha2"}):
        resp = put_state(synapse, alice, room_id, "m.room.encryption", content)
        assert resp.status_code == 403, content
        assert resp.json() == {"errcode": "M_FORBIDDEN", "error": SWITCH_OFF_MESSAGE}
    # The service account is a server admin: no exemption from this rule either.
    with synapse.client(alice.token) as c:
        resp = c.post(f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                      json={"user_id": synapse.admin_user_id})
        assert resp.status_code == 200, resp.text
    admin = TestUser(synapse.admin_user_id, "", synapse.admin_token, "")
    assert synapse.join(admin, room_id).status_code == 200
    with synapse.client(alice.token) as c:
        resp = c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.power_levels/",
                     json={**power_levels(synapse, alice, room_id),
                           "users": {admin.user_id: 100}})
        assert resp.status_code == 200, resp.text
    resp = put_state(synapse, admin, room_id, "m.room.encryption", {})
    assert resp.status_code == 403
    assert encryption_state(synapse, room_id) == [{"algorithm": MEGOLM}]


async def test_reactions_and_redactions_still_work(synapse: SynapseServer,
                                                   tmp_path: Path) -> None:
    alice_user, bob_user = synapse.create_user(), synapse.create_user()
    alice = await e2ee_login(synapse, alice_user, tmp_path)
    bob = await e2ee_login(synapse, bob_user, tmp_path)
    try:
        room_id = await create_encrypted_room(alice, invite=[bob.user_id])
        await join_and_sync(bob, room_id)
        await sync_all(alice, bob)
        message_id = await send_text(alice, room_id, "ship it?")
        await wait_for_decrypted(bob, room_id, body="ship it?")
        relation = {"m.relates_to": {"rel_type": "m.annotation", "event_id": message_id,
                                     "key": "👍"}}
        # Element Web sends reactions in the clear, Element X encrypts them: both pass.
        plain = send_plain(synapse, bob_user, room_id, "m.reaction", relation)
        assert plain.status_code == 200, plain.text
        encrypted_reaction = await send_content(alice, room_id, "m.reaction", relation)
        redaction = await bob.room_redact(room_id, plain.json()["event_id"], reason="oops")
        assert isinstance(redaction, RoomRedactResponse), redaction
        redaction = await alice.room_redact(room_id, message_id)
        assert isinstance(redaction, RoomRedactResponse), redaction
        types = [e["type"] for e in admin_timeline(synapse, room_id) if "state_key" not in e]
        assert types.count("m.room.redaction") == 2
        assert "m.reaction" in types
        assert encrypted_reaction in {e["event_id"] for e in admin_timeline(synapse, room_id)}
    finally:
        await close_all(alice, bob)


def test_state_events_stay_allowed(synapse: SynapseServer) -> None:
    alice = synapse.create_user()
    room_id = synapse.create_room(alice, name="Team")
    assert put_state(synapse, alice, room_id, "m.room.name", {"name": "Team B"}).status_code == 200
    assert put_state(synapse, alice, room_id, "m.room.topic", {"topic": "x"}).status_code == 200
    resp = put_state(synapse, alice, room_id, "m.room.encryption",
                     {"algorithm": MEGOLM, "rotation_period_ms": 604800000})
    assert resp.status_code == 200, resp.text




def test_module_encrypts_even_without_the_config_default(tmp_path: Path) -> None:
    """`encryption_enabled_by_default_for_room_type` removed: the module alone still encrypts."""
    server = start_synapse(tmp_path, remove_keys=("encryption_enabled_by_default_for_room_type",))
    try:
        alice = server.create_user()
        for body in ({}, {"preset": "private_chat", "initial_state": []},
                     {"preset": "trusted_private_chat", "is_direct": True}):
            room_id = server.create_room(alice, **body)
            assert encryption_state(server, room_id) == [{"algorithm": MEGOLM}], body
        resp = send_plain(server, alice, room_id, "m.room.message",
                          {"msgtype": "m.text", "body": "x"})
        assert resp.status_code == 403, resp.text
    finally:
        server.stop()
