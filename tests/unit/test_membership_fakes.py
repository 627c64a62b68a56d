"""Shared by the policy unit tests (no tests here): real Synapse events, an in-memory ModuleApi."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from synapse.events import make_event_from_dict
from synapse.module_api import EventBase, UserID, UserInfo

SERVER = "hauspost.test"
_ids = itertools.count(1)


def event(event_type: str, sender: str, content: dict[str, Any], *,
          state_key: str | None = None, room_id: str = "!room") -> EventBase:
    body: dict[str, Any] = {
        "type": event_type, "room_id": room_id, "sender": sender, "content": content,
        "event_id": f"$e{next(_ids)}", "auth_events": [], "prev_events": [], "depth": 1,
        "origin_server_ts": 1, "hashes": {}, "signatures": {},
    }
    if state_key is not None:
        body["state_key"] = state_key
    return make_event_from_dict(body)


def user_info(user_id: str, *, deactivated: bool = False, guest: bool = False,
              admin: bool = False) -> UserInfo:
    return UserInfo(user_id=UserID.from_string(user_id), appservice_id=None,
                    consent_server_notice_sent=None, consent_version=None, consent_ts=None,
                    user_type=None, creation_ts=0, is_admin=admin, is_deactivated=deactivated,
                    is_guest=guest, is_shadow_banned=False, approved=True, locked=False,
                    suspended=False)


class FakeModuleApi:
    """Only what the policies call; state and accounts are plain dicts."""

    def __init__(self, users: Iterable[UserInfo] = (),
                 room_state: dict[str, dict[tuple[str, str], EventBase]] | None = None,
                 fail: bool = False) -> None:
        self.server_name = SERVER
        self.users = {u.user_id.to_string(): u for u in users}
        self.room_state = room_state or {}
        self.fail = fail
        self.spam_callbacks: dict[str, Any] = {}
        self.rules_callbacks: dict[str, Any] = {}

    def register_spam_checker_callbacks(self, **kwargs: Any) -> None:
        self.spam_callbacks.update(kwargs)

    def register_third_party_rules_callbacks(self, **kwargs: Any) -> None:
        self.rules_callbacks.update(kwargs)

    def _maybe_fail(self) -> None:
        if self.fail:
            raise RuntimeError("database is gone")

    async def get_userinfo_by_id(self, user_id: str) -> UserInfo | None:
        self._maybe_fail()
        return self.users.get(user_id)

    async def is_user_admin(self, user_id: str) -> bool:
        self._maybe_fail()
        info = self.users.get(user_id)
        return info is not None and info.is_admin

    async def get_room_state(self, room_id: str, event_filter: Any = None
                             ) -> dict[tuple[str, str], EventBase]:
        self._maybe_fail()
        state = self.room_state.get(room_id, {})
        if event_filter is None:
            return dict(state)
        wanted = list(event_filter)
        return {k: v for k, v in state.items()
                if any(k[0] == t and (s is None or k[1] == s) for t, s in wanted)}
