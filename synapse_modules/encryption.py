"""Encryption policy: every room end-to-end encrypted, and nobody can switch it off.

* `on_create_room` puts `m.room.encryption` (Megolm) into every new room's initial state,
  whatever the client asked for (DMs, spaces and API-created rooms included).
* `check_event_allowed` refuses changing the algorithm or removing encryption, and refuses
  plaintext room events: only the event types listed in `allowed_plaintext_types` may be
  sent unencrypted (the defaults are exactly what Element Web and Element X legitimately
  send in the clear; docs/policy-modules.md gives the reason for each).
* Indirect weakening is refused too (docs/policy-modules.md lists every path considered):
  weaker key rotation than the spec's defaults, redacting the
  room's `m.room.encryption` event (a redacted one has no algorithm: clients would read the
  room as unencrypted), and a tombstone that sends people on to a room that is not
  encrypted or not ours. Everyone is refused, server admins and the admin API included.

Hot path: Synapse hands `check_event_allowed` the room state before the event, so "is
this room encrypted?" is a dictionary lookup: no database round trip and no cache.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synapse.module_api import EventBase, JsonDict, ModuleApi, Requester, StateMap

from synapse_modules._config import ConfigReader
from synapse_modules._fail_closed import Refusal, event_allowed, fail_closed_raising
from synapse_modules.event_rules_state import register_check_event_allowed
from synapse_modules.request_context import current_request_path

logger = logging.getLogger(__name__)

ENCRYPTION = "m.room.encryption"
REDACTION = "m.room.redaction"
TOMBSTONE = "m.room.tombstone"
MEGOLM = "m.megolm.v1.aes-sha2"
#: The spec's defaults for Megolm session rotation: a room may rotate more often, never less.
ROTATION_LIMITS = {"rotation_period_ms": 604_800_000, "rotation_period_msgs": 100}

# Event types Element Web / Element X send unencrypted in encrypted rooms, and why.
DEFAULT_ALLOWED_PLAINTEXT_TYPES: Mapping[str, str] = {
    "m.room.encrypted": "the ciphertext itself",
    "m.reaction": "Element Web sends reactions in the clear so the server can aggregate them "
                  "(matrix-js-sdk never encrypts m.reaction)",
    "m.room.redaction": "redactions can't be encrypted (the server must read `redacts` to "
                        "remove content); they only carry an event ID and an optional reason",
}

UNENCRYPTED_ROOMS = ("refuse", "allow")


@dataclass(frozen=True)
class EncryptionPolicyConfig:
    allowed_plaintext_types: frozenset[str]
    plaintext_allowed_senders: frozenset[str]
    # Rooms that predate this policy and never turned encryption on.
    plaintext_in_unencrypted_rooms: str


def parse_encryption_config(raw: object) -> EncryptionPolicyConfig:
    reader = ConfigReader(raw)
    types = reader.str_list("allowed_plaintext_types",
                            default=tuple(DEFAULT_ALLOWED_PLAINTEXT_TYPES),
                            what="an event type")
    if "m.room.encrypted" not in types:
        raise reader.error("allowed_plaintext_types",
                           "a list that includes 'm.room.encrypted' (the ciphertext itself)",
                           list(types))
    senders = reader.user_id_list("plaintext_allowed_senders", default=())
    unencrypted = reader.string("plaintext_in_unencrypted_rooms", default="refuse",
                                choices=UNENCRYPTED_ROOMS)
    reader.finish()
    return EncryptionPolicyConfig(
        allowed_plaintext_types=frozenset(types),
        plaintext_allowed_senders=frozenset(senders),
        plaintext_in_unencrypted_rooms=unencrypted,
    )


# --------------------------------------------------------------------------------------
# Pure decisions.
# --------------------------------------------------------------------------------------

ENCRYPTION_CHANGE_REFUSAL = Refusal(
    "Encryption can't be switched off or changed on this server: every room uses "
    f"{MEGOLM}.")


def enforce_encryption_in_request(request: dict[str, Any]) -> None:
    """Make a createRoom body carry Megolm encryption in its initial state (in place)."""
    initial_state = [s for s in (request.get("initial_state") or ())
                     if not (isinstance(s, Mapping) and s.get("type") == ENCRYPTION)]
    requested = [s for s in (request.get("initial_state") or ())
                 if isinstance(s, Mapping) and s.get("type") == ENCRYPTION]
    content: dict[str, Any] = {"algorithm": MEGOLM}
    if requested and isinstance(requested[-1].get("content"), Mapping) \
            and requested[-1]["content"].get("algorithm") == MEGOLM:
        # Keep the client's rotation settings where they rotate at least as often as the
        # spec's defaults; drop weaker ones (clients then use the defaults).
        asked = requested[-1]["content"]
        content.update({key: asked[key] for key in ROTATION_LIMITS
                        if key in asked and _rotation_ok(asked[key], ROTATION_LIMITS[key])})
    initial_state.append({"type": ENCRYPTION, "state_key": "", "content": content})
    request["initial_state"] = initial_state


def _rotation_ok(value: object, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= limit


def refuse_encryption_change(event_type: str, state_key: str | None,
                             content: Mapping[str, Any]) -> Refusal | None:
    """The room's encryption state: Megolm, with key rotation no weaker than the spec's
    defaults (the floor every room keeps; rotating more often is allowed)."""
    if event_type != ENCRYPTION or state_key != "":
        return None
    if content.get("algorithm") != MEGOLM:
        return ENCRYPTION_CHANGE_REFUSAL
    if not all(_rotation_ok(content[key], limit) for key, limit in ROTATION_LIMITS.items()
               if key in content):
        return Refusal("Encryption keys must rotate at least weekly and every 100 messages "
                       "on this server; longer rotation periods are refused.")
    return None


def refuse_encryption_redaction(redacts: str | None, encryption_event_id: str | None
                                ) -> Refusal | None:
    """Redacting the room's m.room.encryption event would strip its algorithm."""
    if redacts is not None and redacts == encryption_event_id:
        return Refusal("The room's encryption event can't be redacted: that would switch "
                       "encryption off for every app.")
    return None


UPGRADE_PATH = re.compile(r"^/_matrix/client/(?:v3|r0)/rooms/[^/]+/upgrade$")


def refuse_tombstone(replacement_room: object, replacement_encrypted: bool,
                     request_path: str | None) -> Refusal | None:
    """A tombstone sends everyone on to its replacement room: it must be encrypted too.

    Synapse's own room upgrade creates the tombstone before the new room exists; it then
    clones this room's state, encryption included, into the new room. So a tombstone made
    by the upgrade endpoint passes; any other must name an encrypted room of ours."""
    if isinstance(replacement_room, str) and (
            replacement_encrypted
            or (request_path is not None and UPGRADE_PATH.match(request_path) is not None)):
        return None
    return Refusal("A room can only be replaced by an end-to-end encrypted room on this "
                   "server.")


def refuse_plaintext(config: EncryptionPolicyConfig, *, event_type: str, sender: str,
                     room_encrypted: bool) -> Refusal | None:
    """For non-state events only (state is never encrypted; see refuse_encryption_change)."""
    if event_type in config.allowed_plaintext_types:
        return None
    if sender in config.plaintext_allowed_senders:
        return None
    if not room_encrypted and config.plaintext_in_unencrypted_rooms == "allow":
        return None
    where = "this room is end-to-end encrypted" if room_encrypted else \
        "every room on this server must be end-to-end encrypted"
    return Refusal(f"Unencrypted {event_type} events are refused: {where}. Use an app with "
                   "encryption switched on (Element, Element X).")


def room_is_encrypted(state: StateMap[EventBase]) -> bool:
    event = state.get((ENCRYPTION, ""))
    return event is not None and event.content.get("algorithm") == MEGOLM


# --------------------------------------------------------------------------------------
# The module.
# --------------------------------------------------------------------------------------


class EncryptionPolicy:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: EncryptionPolicyConfig, api: ModuleApi) -> None:
        self._config = config
        self._api = api
        register_check_event_allowed(
            api, self.check_event_allowed, reads=[(ENCRYPTION, "")],
            on_create_room=self.on_create_room,
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> EncryptionPolicyConfig:
        return parse_encryption_config(config)

    @fail_closed_raising
    async def on_create_room(self, requester: Requester, request: dict[str, Any],
                             is_requester_admin: bool) -> None:
        enforce_encryption_in_request(request)

    @fail_closed_raising
    async def check_event_allowed(self, event: EventBase, state: StateMap[EventBase]
                                  ) -> tuple[bool, JsonDict | None]:
        return event_allowed(await self._refuse(event, state), event, logger)

    async def _refuse(self, event: EventBase, state: StateMap[EventBase]) -> Refusal | None:
        current = state.get((ENCRYPTION, ""))
        if not event.is_state():
            if event.type == REDACTION:
                refusal = refuse_encryption_redaction(
                    event.redacts, current.event_id if current is not None else None)
                if refusal is not None:
                    return refusal
            return refuse_plaintext(self._config, event_type=event.type, sender=event.sender,
                                    room_encrypted=room_is_encrypted(state))
        if event.type == TOMBSTONE and event.get_state_key() == "":
            replacement = event.content.get("replacement_room")
            return refuse_tombstone(replacement, isinstance(replacement, str)
                                    and await self._is_encrypted_room(replacement),
                                    current_request_path())
        return refuse_encryption_change(event.type, event.get_state_key(), event.content)

    async def _is_encrypted_room(self, room_id: str) -> bool:
        """A room this server hosts whose current state is Megolm-encrypted."""
        return room_is_encrypted(await self._api.get_room_state(room_id, [(ENCRYPTION, "")]))
