"""Pure decisions behind the indirect encryption paths and the leaver-session guard."""

from __future__ import annotations

import asyncio

import pytest
from synapse.module_api.errors import ConfigError, SynapseError

from synapse_modules.encryption import (
    MEGOLM,
    enforce_encryption_in_request,
    refuse_encryption_change,
    refuse_encryption_redaction,
    refuse_tombstone,
)
from synapse_modules.sessions import DEACTIVATED, guard_token_issuing, token_subject

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("content", "allowed"), [
    ({"algorithm": MEGOLM}, True),
    ({"algorithm": MEGOLM, "rotation_period_ms": 604_800_000, "rotation_period_msgs": 100}, True),
    ({"algorithm": MEGOLM, "rotation_period_msgs": 10}, True),
    ({"algorithm": MEGOLM, "rotation_period_ms": 604_800_001}, False),
    ({"algorithm": MEGOLM, "rotation_period_msgs": 101}, False),
    ({"algorithm": MEGOLM, "rotation_period_msgs": True}, False),
    ({"algorithm": MEGOLM, "rotation_period_ms": -1}, False),
    ({}, False),
])
def test_encryption_content(content: dict[str, object], allowed: bool) -> None:
    assert (refuse_encryption_change("m.room.encryption", "", content) is None) is allowed


def test_create_room_keeps_only_stronger_rotation() -> None:
    request = {"initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {
        "algorithm": MEGOLM, "rotation_period_ms": 3_600_000, "rotation_period_msgs": 5000}}]}
    enforce_encryption_in_request(request)
    assert request["initial_state"] == [{"type": "m.room.encryption", "state_key": "",
                                         "content": {"algorithm": MEGOLM,
                                                     "rotation_period_ms": 3_600_000}}]


def test_redaction_of_the_encryption_event() -> None:
    assert refuse_encryption_redaction("$enc", "$enc") is not None
    assert refuse_encryption_redaction("$message", "$enc") is None
    assert refuse_encryption_redaction(None, "$enc") is None
    assert refuse_encryption_redaction("$x", None) is None


@pytest.mark.parametrize(("replacement", "encrypted", "path", "allowed"), [
    ("!new", True, "/_matrix/client/v3/rooms/!old/state/m.room.tombstone/", True),
    ("!new", False, "/_matrix/client/v3/rooms/!old/state/m.room.tombstone/", False),
    ("!new", False, "/_matrix/client/v3/rooms/!old/upgrade", True),
    ("!new", False, "/_matrix/client/r0/rooms/!old/upgrade", True),
    ("!new", False, "/_matrix/client/v3/rooms/!old/upgradex", False),
    ("!new", False, None, False),
    (None, True, "/_matrix/client/v3/rooms/!old/upgrade", False),
    (42, True, None, False),
])
def test_tombstones(replacement: object, encrypted: bool, path: str | None,
                    allowed: bool) -> None:
    assert (refuse_tombstone(replacement, encrypted, path) is None) is allowed


class FakeAuthHandler:
    def __init__(self) -> None:
        self.issued: list[tuple[str, str | None]] = []

    async def create_access_token_for_user_id(self, user_id: str, device_id: str | None,
                                              valid_until_ms: int | None,
                                              puppets_user_id: str | None = None) -> str:
        self.issued.append((user_id, puppets_user_id))
        return "syt_token"


def test_the_token_guard_refuses_tokens_acting_as_a_deactivated_account() -> None:
    handler = FakeAuthHandler()
    gone = {"@leaver:x.test"}

    async def is_deactivated(user_id: str) -> bool:
        return user_id in gone

    guard_token_issuing(handler, is_deactivated)
    guard_token_issuing(handler, is_deactivated)  # idempotent: wrapped once

    async def issue(user_id: str, puppet: str | None) -> str:
        return await handler.create_access_token_for_user_id(user_id, None, None, puppet)

    assert asyncio.run(issue("@admin:x.test", "@active:x.test")) == "syt_token"
    with pytest.raises(SynapseError) as refused:
        asyncio.run(issue("@admin:x.test", "@leaver:x.test"))
    assert (refused.value.code, refused.value.errcode, refused.value.msg) == (
        403, "M_USER_DEACTIVATED", DEACTIVATED)
    with pytest.raises(SynapseError):
        asyncio.run(issue("@leaver:x.test", None))
    assert handler.issued == [("@admin:x.test", "@active:x.test")]
    assert token_subject("@admin:x.test", None) == "@admin:x.test"


def test_the_guard_fails_closed_and_checks_the_shape() -> None:
    handler = FakeAuthHandler()

    async def broken(user_id: str) -> bool:
        raise RuntimeError("database gone")

    guard_token_issuing(handler, broken)
    with pytest.raises(SynapseError) as refused:
        asyncio.run(handler.create_access_token_for_user_id("@a:x.test", None, None))
    assert refused.value.code == 403
    assert handler.issued == []

    class Changed:
        async def create_access_token_for_user_id(self, user: str, device: str | None,
                                                  valid: int | None) -> str:
            return ""

    with pytest.raises(ConfigError, match="takes"):
        guard_token_issuing(Changed(), broken)
