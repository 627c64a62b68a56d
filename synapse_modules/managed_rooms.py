"""Managed rooms: the org-chart rooms the provisioner keeps (docs/org-rooms.md).

The provisioner writes a `de.hauspost.managed` state event into every room it manages
(state_key "", content {"policy_key": ..., "mandatory": bool}). This module reads it from
the room state Synapse hands `check_event_allowed`, so every decision is exact and the
same in every worker, without a database query per event:

* a member of a mandatory room can't leave it (neither by /leave nor by kicking
  themselves, nor by rejecting the invite); a deactivated account still leaves, because
  offboarding parts every room;
* in a managed room only the provisioner adds, removes or bans people, whatever power
  level someone has been given;
* only the provisioner may write the marker, in any room: nobody can make a room managed
  (and trap people in it) or unmark a managed one.

Rooms without the marker (group chats, DMs) are untouched by this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synapse.module_api import EventBase, JsonDict, ModuleApi, StateMap

from synapse_modules._config import ConfigReader
from synapse_modules._fail_closed import Refusal, event_allowed, fail_closed_raising
from synapse_modules.event_rules_state import register_check_event_allowed

logger = logging.getLogger(__name__)

MARKER = "de.hauspost.managed"
MEMBER = "m.room.member"


@dataclass(frozen=True)
class ManagedRoomsConfig:
    #: The provisioner's service account(s): the only ones who manage these rooms.
    provisioner_users: frozenset[str]


def parse_managed_rooms_config(raw: object) -> ManagedRoomsConfig:
    reader = ConfigReader(raw)
    users = reader.provisioner_users()
    reader.finish()
    return ManagedRoomsConfig(provisioner_users=users)


# --------------------------------------------------------------------------------------
# Pure decisions.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    policy_key: str
    mandatory: bool

    @staticmethod
    def from_content(content: Mapping[str, Any] | None) -> Marker | None:
        """None when the room is not managed (no marker, or emptied when released)."""
        if not content or not isinstance(content.get("policy_key"), str):
            return None
        # Anything but an explicit false counts as mandatory: a malformed marker must not
        # let people out.
        return Marker(content["policy_key"], content.get("mandatory") is not False)


MARKER_REFUSAL = Refusal("Only IT's provisioning service can mark a room as a managed "
                         "company room or change that mark.")


def refuse_marker_write(event_type: str) -> Refusal | None:
    return MARKER_REFUSAL if event_type == MARKER else None


def refuse_membership_by_others(marker: Marker | None, sender: str, target: str,
                                membership: str) -> Refusal | None:
    """Invites, kicks and bans in a managed room are the provisioner's alone."""
    if marker is None or sender == target:
        return None
    verb = {"invite": "invite people to", "ban": "ban people from"}.get(
        membership, "remove people from")
    return Refusal(f"This is a managed company room ({marker.policy_key}): its members "
                   f"follow the org chart, so only IT's provisioning service can {verb} it.")


def refuse_leaving(marker: Marker | None, sender: str, target: str, membership: str, *,
                   deactivated: bool) -> Refusal | None:
    if marker is None or not marker.mandatory or sender != target or membership != "leave":
        return None
    if deactivated:
        return None  # offboarding parts every room
    return Refusal(f"You can't leave this room: it is a mandatory company room "
                   f"({marker.policy_key}). You can mute it instead; ask IT if you think "
                   "you shouldn't be in it.")


# --------------------------------------------------------------------------------------
# The module.
# --------------------------------------------------------------------------------------


class ManagedRoomsPolicy:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: ManagedRoomsConfig, api: ModuleApi) -> None:
        self._config = config
        self._api = api
        register_check_event_allowed(api, self.check_event_allowed, reads=[(MARKER, "")])

    @staticmethod
    def parse_config(config: dict[str, Any]) -> ManagedRoomsConfig:
        return parse_managed_rooms_config(config)

    @fail_closed_raising
    async def check_event_allowed(self, event: EventBase, state: StateMap[EventBase]
                                  ) -> tuple[bool, JsonDict | None]:
        return event_allowed(await self._refuse(event, state), event, logger)

    async def _refuse(self, event: EventBase, state: StateMap[EventBase]) -> Refusal | None:
        # Hot path: messages are not state events and return at once.
        if not event.is_state() or event.sender in self._config.provisioner_users:
            return None
        refusal = refuse_marker_write(event.type)
        if refusal is not None or event.type != MEMBER:
            return refusal
        marker_event = state.get((MARKER, ""))
        marker = Marker.from_content(marker_event.content if marker_event else None)
        if marker is None:
            return None
        target, membership = event.state_key, event.membership
        refusal = refuse_membership_by_others(marker, event.sender, target, membership)
        if refusal is None and membership == "leave" and marker.mandatory:
            info = await self._api.get_userinfo_by_id(event.sender)
            refusal = refuse_leaving(marker, event.sender, target, membership,
                                     deactivated=info is not None and info.is_deactivated)
        return refusal
