"""The bot's pure decisions: may it post in a room, and are its secrets private."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from provisioner.announcements.bot import _secret, may_post

BOT = "@hauspost-bot:x"


def state(*, creator: str = "@hauspost:x", users: dict[str, int] | None = None,
          events_default: int = 0, encrypted_level: int | None = None,
          additional: list[str] | None = None) -> list[dict[str, Any]]:
    events = {} if encrypted_level is None else {"m.room.encrypted": encrypted_level}
    create_content: dict[str, Any] = {"room_version": "12"}
    if additional:
        create_content["additional_creators"] = additional
    return [{"type": "m.room.create", "state_key": "", "sender": creator,
             "content": create_content},
            {"type": "m.room.power_levels", "state_key": "", "sender": creator,
             "content": {"users": users or {}, "events_default": events_default,
                         "events": events}},
            {"type": "m.room.member", "state_key": BOT, "content": {"membership": "join"}}]


@pytest.mark.parametrize(("room", "allowed"), [
    (state(), True),  # an ordinary room: everyone may post
    (state(events_default=10), False),  # read-only, bot not listed
    (state(events_default=10, users={BOT: 10}), True),  # listed as poster
    (state(events_default=50, users={BOT: 10}), False),
    (state(events_default=0, encrypted_level=50, users={BOT: 10}), False),  # E2EE events count
    (state(creator=BOT, events_default=50), True),  # v12 creator: unlimited power
    (state(additional=[BOT], events_default=50), True),
])
def test_may_post(room: list[dict[str, Any]], allowed: bool) -> None:
    assert may_post(BOT, room) is allowed


def test_secrets_are_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "bot_password"
    first = _secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _secret(path) == first
