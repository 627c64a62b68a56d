"""Spaces are signposts (docs/policy-modules.md "Spaces").

A space lists rooms; Element never shows its timeline. A message posted into a space — by
a client that shows spaces as chat rooms, or straight through the API — reaches only the
few people on such clients: a company-wide message most of the company never sees. So no
timeline event (encrypted or not, messages, reactions, redactions) is allowed in a space,
from anyone but the provisioner; state events (`m.space.child`, name, avatar, membership)
pass as before, within the room's power levels and our other modules. It holds for the
company spaces and for spaces employees create themselves, whatever their power levels
say. Decided from the room's create event in the state Synapse passes in; fails closed.
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

CREATE = "m.room.create"
SPACE = "m.space"

SPACE_IS_A_SIGNPOST = ("A space lists rooms and holds no messages (most apps never show "
                       "them). Please write in one of its rooms.")


@dataclass(frozen=True)
class SpacesConfig:
    #: The provisioner's service account(s): the only senders of timeline events in spaces.
    provisioner_users: frozenset[str]


def parse_spaces_config(raw: object) -> SpacesConfig:
    reader = ConfigReader(raw)
    users = reader.provisioner_users()
    reader.finish()
    return SpacesConfig(provisioner_users=users)


def is_space(create_content: Any) -> bool:
    return isinstance(create_content, Mapping) and create_content.get("type") == SPACE


def refuse_timeline_in_space(*, is_state: bool, in_space: bool, sender: str,
                             provisioners: frozenset[str]) -> Refusal | None:
    if is_state or not in_space or sender in provisioners:
        return None
    return Refusal(SPACE_IS_A_SIGNPOST)


class SpacePolicy:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: SpacesConfig, api: ModuleApi) -> None:
        self._config = config
        register_check_event_allowed(api, self.check_event_allowed, reads=[(CREATE, "")])

    @staticmethod
    def parse_config(config: dict[str, Any]) -> SpacesConfig:
        return parse_spaces_config(config)

    @fail_closed_raising
    async def check_event_allowed(self, event: EventBase, state: StateMap[EventBase]
                                  ) -> tuple[bool, JsonDict | None]:
        create = state.get((CREATE, ""))
        refusal = refuse_timeline_in_space(
            is_state=event.is_state(),
            in_space=create is not None and is_space(create.content),
            sender=event.sender, provisioners=self._config.provisioner_users)
        return event_allowed(refusal, event, logger)
