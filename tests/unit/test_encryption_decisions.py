"""Encryption policy: forced Megolm on creation, no switching off, no plaintext."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import Codes, SynapseError

from synapse_modules._fail_closed import INTERNAL_ERROR_MESSAGE
from synapse_modules.encryption import (
    MEGOLM,
    EncryptionPolicy,
    enforce_encryption_in_request,
    refuse_encryption_change,
    room_is_encrypted,
)
from tests.unit.test_membership_fakes import SERVER, FakeModuleApi, event

ALICE = f"@alice:{SERVER}"
BOT = f"@bot:{SERVER}"
ENCRYPTED_STATE = {("m.room.encryption", ""): event("m.room.encryption", ALICE,
                                                    {"algorithm": MEGOLM}, state_key="")}
ENCRYPTION_STATE = {"type": "m.room.encryption", "state_key": "",
                    "content": {"algorithm": MEGOLM}}


def make_policy(config: dict[str, Any] | None = None) -> EncryptionPolicy:
    api = FakeModuleApi()
    policy = EncryptionPolicy(EncryptionPolicy.parse_config(config or {}), api)  # type: ignore[arg-type]
    assert set(api.rules_callbacks) == {"check_event_allowed", "on_create_room"}
    return policy


@pytest.mark.parametrize(("request_body", "expected_initial_state"), [
    ({}, [ENCRYPTION_STATE]),
    ({"preset": "trusted_private_chat", "is_direct": True, "invite": ["@b:x"]},
     [ENCRYPTION_STATE]),
    ({"initial_state": [{"type": "m.room.encryption", "state_key": "",
                         "content": {"algorithm": "m.olm.v1.curve25519-aes-sha2"}}]},
     [ENCRYPTION_STATE]),
    ({"initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {}}]},
     [ENCRYPTION_STATE]),
    ({"initial_state": [{"type": "m.room.encryption", "state_key": "",
                         "content": {"algorithm": MEGOLM, "rotation_period_ms": 604800000}}]},
     [{"type": "m.room.encryption", "state_key": "",
       "content": {"algorithm": MEGOLM, "rotation_period_ms": 604800000}}]),
    ({"initial_state": [{"type": "m.room.name", "content": {"name": "x"}}]},
     [{"type": "m.room.name", "content": {"name": "x"}}, ENCRYPTION_STATE]),
])
def test_every_new_room_gets_megolm(request_body: dict[str, Any],
                                    expected_initial_state: list[dict[str, Any]]) -> None:
    enforce_encryption_in_request(request_body)
    assert request_body["initial_state"] == expected_initial_state


@pytest.mark.parametrize(("state_key", "content", "refused"), [
    ("", {"algorithm": MEGOLM}, False),
    ("", {"algorithm": MEGOLM, "rotation_period_msgs": 100}, False),
    ("", {}, True),
    ("", {"algorithm": "m.none"}, True),
    ("", {"algorithm": None}, True),
    ("other", {}, False),  # not the room's encryption setting; clients ignore it
])
def test_encryption_changes(state_key: str, content: dict[str, Any], refused: bool) -> None:
    refusal = refuse_encryption_change("m.room.encryption", state_key, content)
    assert (refusal is not None) is refused


def test_room_is_encrypted_only_with_megolm() -> None:
    assert room_is_encrypted(ENCRYPTED_STATE)
    assert not room_is_encrypted({})
    bogus = {("m.room.encryption", ""): event("m.room.encryption", ALICE, {}, state_key="")}
    assert not room_is_encrypted(bogus)


async def test_creation_callback_edits_the_request() -> None:
    request: dict[str, Any] = {"preset": "private_chat"}
    await make_policy().on_create_room(None, request, False)  # type: ignore[arg-type]
    assert request["initial_state"] == [ENCRYPTION_STATE]


@pytest.mark.parametrize(("event_type", "content"), [
    ("m.room.message", {"msgtype": "m.text", "body": "hi"}),
    ("m.sticker", {"body": "cat", "url": "mxc://x/y"}),
    ("m.poll.start", {"m.text": "?"}),
    ("org.matrix.msc3381.poll.start", {"org.matrix.msc3381.poll.start": {}}),
    ("org.matrix.msc3381.poll.response", {}),
    ("m.call.invite", {"call_id": "1"}),
    ("m.beacon", {}),
    ("com.example.custom", {"secret": "plaintext"}),
])
async def test_plaintext_refused_in_encrypted_rooms(event_type: str,
                                                    content: dict[str, Any]) -> None:
    with pytest.raises(SynapseError) as info:
        await make_policy().check_event_allowed(event(event_type, ALICE, content),
                                                ENCRYPTED_STATE)
    assert info.value.code == 403
    assert info.value.errcode == Codes.FORBIDDEN
    assert info.value.msg == (f"Unencrypted {event_type} events are refused: this room is "
                              "end-to-end encrypted. Use an app with encryption switched on "
                              "(Element, Element X).")


@pytest.mark.parametrize(("event_type", "content", "state_key"), [
    ("m.room.encrypted", {"algorithm": MEGOLM, "ciphertext": "x"}, None),
    ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x",
                                     "key": "x"}}, None),
    ("m.room.redaction", {"redacts": "$x"}, None),
    ("m.room.name", {"name": "Team"}, ""),
    ("m.room.member", {"membership": "join"}, ALICE),
    ("org.matrix.msc3401.call.member", {}, f"_{ALICE}_DEVICE"),
    ("m.room.encryption", {"algorithm": MEGOLM}, ""),
])
async def test_allowed_in_encrypted_rooms(event_type: str, content: dict[str, Any],
                                          state_key: str | None) -> None:
    ev = event(event_type, ALICE, content, state_key=state_key)
    assert await make_policy().check_event_allowed(ev, ENCRYPTED_STATE) == (True, None)


async def test_switching_off_refused() -> None:
    with pytest.raises(SynapseError) as info:
        await make_policy().check_event_allowed(
            event("m.room.encryption", ALICE, {}, state_key=""), ENCRYPTED_STATE)
    assert "can't be switched off" in info.value.msg


async def test_unencrypted_legacy_rooms() -> None:
    message = event("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(SynapseError) as info:
        await make_policy().check_event_allowed(message, {})
    assert "every room on this server must be end-to-end encrypted" in info.value.msg
    lenient = make_policy({"plaintext_in_unencrypted_rooms": "allow"})
    assert await lenient.check_event_allowed(message, {}) == (True, None)
    with pytest.raises(SynapseError) as info:
        await lenient.check_event_allowed(message, ENCRYPTED_STATE)
    assert info.value.msg.startswith("Unencrypted m.room.message events are refused: this "
                                     "room is end-to-end encrypted.")


async def test_configured_sender_and_types() -> None:
    policy = make_policy({"plaintext_allowed_senders": [BOT],
                          "allowed_plaintext_types": ["m.room.encrypted"]})
    assert await policy.check_event_allowed(
        event("m.room.message", BOT, {"body": "notice"}), ENCRYPTED_STATE) == (True, None)
    with pytest.raises(SynapseError) as info:
        await policy.check_event_allowed(
            event("m.reaction", ALICE, {}), ENCRYPTED_STATE)
    assert info.value.msg.startswith("Unencrypted m.reaction events are refused: this room "
                                     "is end-to-end encrypted.")


async def test_internal_error_refuses() -> None:
    policy = make_policy()
    object.__setattr__(policy, "_config", None)
    with pytest.raises(SynapseError) as info:
        await policy.check_event_allowed(event("m.room.message", ALICE, {}), ENCRYPTED_STATE)
    assert info.value.msg == INTERNAL_ERROR_MESSAGE
    with pytest.raises(SynapseError) as info:
        await policy.on_create_room(None, {"initial_state": 5}, False)  # type: ignore[arg-type]
    assert info.value.msg == INTERNAL_ERROR_MESSAGE
