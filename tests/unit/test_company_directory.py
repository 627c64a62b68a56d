"""When the company directory may skip Synapse's private-room pairs, and what it wraps."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from synapse.handlers.user_directory import UserDirectoryHandler
from synapse.storage.databases.main.user_directory import UserDirectoryStore

from synapse_modules.company_directory import (
    TRACK_PARAMS,
    pairs_unread_reason,
    skip_private_pairs,
)


def test_pairs_are_unread_only_with_search_all_users_and_no_federation() -> None:
    assert pairs_unread_reason(search_all_users=True, federation_whitelist={},
                               updates_directory=True) is None
    assert "search_all_users is off" in str(pairs_unread_reason(
        search_all_users=False, federation_whitelist={}, updates_directory=True))
    assert "federation is not off" in str(pairs_unread_reason(
        search_all_users=True, federation_whitelist=None, updates_directory=True))
    assert "federation is not off" in str(pairs_unread_reason(
        search_all_users=True, federation_whitelist={"partner.example": True},
        updates_directory=True))
    assert "does not update the user directory" in str(pairs_unread_reason(
        search_all_users=True, federation_whitelist={}, updates_directory=False))


class FakeHandler:
    def __init__(self) -> None:
        self.tracked: list[tuple[str, str]] = []

    async def _track_user_joined_room(self, room_id: str, joining_user_id: str) -> None:
        self.tracked.append((room_id, joining_user_id))


class FakeStore:
    def __init__(self) -> None:
        self.added: list[tuple[str, Any]] = []

    async def add_users_who_share_private_room(self, room_id: str,
                                               user_id_tuples: Any) -> None:
        self.added.append((room_id, user_id_tuples))

    async def is_room_world_readable_or_publicly_joinable(self, room_id: str) -> bool:
        return room_id == "!public"


def test_private_rooms_write_no_pairs_public_rooms_keep_synapses_path() -> None:
    handler, store = FakeHandler(), FakeStore()
    assert skip_private_pairs(handler, store) is None

    async def joins() -> None:
        await handler._track_user_joined_room("!team", "@a:x")
        await handler._track_user_joined_room("!public", "@b:x")
        await store.add_users_who_share_private_room("!team", {("@a:x", "@b:x")})

    asyncio.run(joins())
    assert handler.tracked == [("!public", "@b:x")]
    assert store.added == []
    wrapped = handler._track_user_joined_room
    assert skip_private_pairs(handler, store) is None  # idempotent
    assert handler._track_user_joined_room is wrapped


def test_a_changed_synapse_is_left_alone() -> None:
    class Changed(FakeHandler):
        async def _track_user_joined_room(self, room_id: str,  # type: ignore[override]
                                          user_id: str) -> None:
            return None

    handler, store = Changed(), FakeStore()
    original = handler._track_user_joined_room
    reason = skip_private_pairs(handler, store)
    assert reason is not None and "_track_user_joined_room takes" in reason
    assert handler._track_user_joined_room == original


@pytest.mark.parametrize(("cls", "name"), [
    (UserDirectoryHandler, "_track_user_joined_room"),
    (UserDirectoryStore, "add_users_who_share_private_room"),
    (UserDirectoryStore, "is_room_world_readable_or_publicly_joinable"),
])
def test_the_installed_synapse_has_the_shapes_we_wrap(cls: type, name: str) -> None:
    method = getattr(cls, name)
    params = tuple(inspect.signature(method).parameters)[1:]
    expected = {"_track_user_joined_room": TRACK_PARAMS,
                "add_users_who_share_private_room": ("room_id", "user_id_tuples"),
                "is_room_world_readable_or_publicly_joinable": ("room_id",)}[name]
    assert params == expected
