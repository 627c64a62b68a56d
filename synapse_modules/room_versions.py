"""Only current room versions (docs/policy-modules.md "Room versions").

Older room versions have weaker authorisation rules (e.g. v1–v5 without the signature
and state-resolution fixes, v6–v11 without room creators as the top power level), and
Synapse's `createRoom` accepts every version it knows. This module refuses any
`m.room.create` event for a room version below the configured minimum (default:
Synapse's own default room version) — for a new room and for the new room of an upgrade,
for every user including server admins, since it decides on the event itself in
`check_event_allowed`. Unknown or experimental versions are refused too. Fails closed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from synapse.config.server import DEFAULT_ROOM_VERSION
from synapse.module_api import EventBase, JsonDict, ModuleApi, StateMap

from synapse_modules._config import ConfigReader
from synapse_modules._fail_closed import Refusal, event_allowed, fail_closed_raising
from synapse_modules.event_rules_state import register_check_event_allowed

logger = logging.getLogger(__name__)

CREATE = "m.room.create"
_NUMERIC = re.compile(r"^[1-9][0-9]{0,3}$")


@dataclass(frozen=True)
class RoomVersionConfig:
    minimum_room_version: int


def parse_room_version_config(raw: object) -> RoomVersionConfig:
    reader = ConfigReader(raw)
    value = reader.string("minimum_room_version", default=DEFAULT_ROOM_VERSION)
    if not _NUMERIC.match(value):
        raise reader.error("minimum_room_version", "a room version number such as '12'",
                           value)
    reader.finish()
    return RoomVersionConfig(minimum_room_version=int(value))


def refuse_room_version(version: object, minimum: int) -> Refusal | None:
    """Refuse versions below `minimum` and anything that is not a plain version number."""
    # The create event of a version 1 room may omit the key (the spec's default).
    version = "1" if version is None else version
    if isinstance(version, str) and _NUMERIC.match(version) and int(version) >= minimum:
        return None
    return Refusal(f"Room version {version} is not allowed on this server: rooms use "
                   f"version {minimum} or newer, whose rules are safer.")


class RoomVersionPolicy:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: RoomVersionConfig, api: ModuleApi) -> None:
        self._config = config
        register_check_event_allowed(api, self.check_event_allowed, reads=())

    @staticmethod
    def parse_config(config: dict[str, Any]) -> RoomVersionConfig:
        return parse_room_version_config(config)

    @fail_closed_raising
    async def check_event_allowed(self, event: EventBase, state: StateMap[EventBase]
                                  ) -> tuple[bool, JsonDict | None]:
        refusal = None
        if event.type == CREATE and event.is_state():
            refusal = refuse_room_version(event.content.get("room_version"),
                                          self._config.minimum_room_version)
        return event_allowed(refusal, event, logger)
