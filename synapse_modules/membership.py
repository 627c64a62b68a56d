"""Company membership policy: only active employees of our own server take part in rooms.

Enforced inside Synapse so it holds for every client, every worker, and also when
someone loosens homeserver.yaml by mistake (e.g. switches a federation listener on):

* invites, joins and knocks only for local, existing, active, non-guest accounts;
* no invites to other servers, no e-mail/phone (3pid) invites, no joins to rooms this
  server does not host, and every event from another server is dropped/refused;
* no publishing to the room directory, no `public` join rule, no `world_readable`
  history, no guest access; room aliases only for the configured roles;
* a *restricted group* (e.g. contractors) may only be in listed rooms and can't create
  rooms. The list comes from this config and, optionally, from a policy room whose state
  only exempt accounts may write (so the provisioner can drive it without a restart).

Each decision is a named predicate returning a `Refusal` or None; the callbacks only
gather facts and ask them. `check_event_allowed` is the backstop that sees every event
(server admins and the admin API included); the spam-checker callbacks refuse earlier
with a clearer message. See docs/policy-modules.md.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from synapse.module_api import (
    EventBase,
    JsonDict,
    ModuleApi,
    Requester,
    RoomAlias,
    StateMap,
    UserInfo,
)

from synapse_modules._config import ConfigReader
from synapse_modules._fail_closed import (
    Refusal,
    SpamResult,
    drop_event,
    event_allowed,
    fail_closed,
    fail_closed_raising,
    refuse_spam,
    spam_result,
)
from synapse_modules.event_rules_state import register_check_event_allowed

logger = logging.getLogger(__name__)

# State event in the policy room: state_key = policy_state_key(user ID),
# content {"allowed_rooms": [room IDs]}.
RESTRICTED_USER_EVENT = "de.hauspost.restricted_user"


def policy_state_key(user_id: str) -> str:
    # Synapse refuses state keys that start with "@" unless they name the sender itself.
    return f"user:{user_id}"

ALIAS_ROLES = ("everyone", "server_admins", "exempt_users")

MEMBER = "m.room.member"
JOIN_RULES = "m.room.join_rules"
HISTORY_VISIBILITY = "m.room.history_visibility"
GUEST_ACCESS = "m.room.guest_access"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
ENTERING = frozenset({"invite", "join", "knock"})
POLICY_ROOM_GUARDED_TYPES = frozenset({RESTRICTED_USER_EVENT, "m.room.power_levels",
                                       "m.room.redaction"})


def server_of(user_id: str) -> str:
    """The server part of a user ID ("" if malformed, which no allowed list contains)."""
    return user_id.partition(":")[2]


@dataclass(frozen=True)
class RestrictedGroupConfig:
    users: frozenset[str]
    allowed_rooms: frozenset[str]
    policy_room_id: str | None


@dataclass(frozen=True)
class MembershipPolicyConfig:
    # Our own server is always allowed; these are extra servers of the same company.
    allowed_server_names: frozenset[str]
    exempt_users: frozenset[str]
    alias_creators: frozenset[str]
    restricted: RestrictedGroupConfig


def parse_membership_config(raw: object) -> MembershipPolicyConfig:
    reader = ConfigReader(raw)
    allowed = reader.server_name_list("allowed_server_names", default=())
    exempt = reader.user_id_list("exempt_users", default=())
    alias_creators = reader.str_list("alias_creators", default=("server_admins", "exempt_users"),
                                     choices=ALIAS_ROLES, what="a role")
    group = reader.section("restricted_group")
    restricted = RestrictedGroupConfig(
        users=frozenset(group.user_id_list("users", default=())),
        allowed_rooms=frozenset(group.room_id_list("allowed_rooms", default=())),
        policy_room_id=group.optional_str("policy_room_id"),
    )
    if restricted.policy_room_id is not None and not restricted.policy_room_id.startswith("!"):
        raise group.error("policy_room_id", "a room ID like '!abc123'",
                          restricted.policy_room_id)
    group.finish()
    reader.finish()
    overlap = restricted.users & frozenset(exempt)
    if overlap:
        raise reader.error("restricted_group.users",
                           "no account that is also in exempt_users", sorted(overlap)[0])
    return MembershipPolicyConfig(
        allowed_server_names=frozenset(allowed),
        exempt_users=frozenset(exempt),
        alias_creators=frozenset(alias_creators),
        restricted=restricted,
    )


# --------------------------------------------------------------------------------------
# Pure decisions: facts in, Refusal (or None = allowed) out.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Boundary:
    """Which servers count as "the company"."""

    own_server: str
    extra_servers: frozenset[str]

    def is_inside(self, user_id: str) -> bool:
        server = server_of(user_id)
        return server == self.own_server or server in self.extra_servers

    @property
    def names(self) -> str:
        return ", ".join(sorted({self.own_server} | self.extra_servers))


def refuse_outsider(boundary: Boundary, user_id: str) -> Refusal | None:
    if boundary.is_inside(user_id):
        return None
    return Refusal(f"{user_id} is outside the company: only accounts on {boundary.names} "
                   "can take part in rooms here.")


def refuse_inactive_account(user_id: str, info: UserInfo | None) -> Refusal | None:
    if info is None:
        return Refusal(f"{user_id} is not an employee account on this server.")
    if info.is_deactivated:
        return Refusal(f"{user_id} has been deactivated and can't be added to rooms.")
    if info.is_guest:
        return Refusal("Guest accounts can't take part in rooms on this server.")
    return None


def refuse_restricted_room(user_id: str, room_id: str,
                           allowed_rooms: Collection[str] | None) -> Refusal | None:
    """`allowed_rooms` is None for unrestricted accounts."""
    if allowed_rooms is None or room_id in allowed_rooms:
        return None
    return Refusal(f"{user_id} may only take part in the rooms IT has listed for them, "
                   "and this room is not one of them.")


def refuse_room_state(event_type: str, content: Mapping[str, Any]) -> Refusal | None:
    """Room settings that would open a room beyond the company's employees."""
    if event_type == JOIN_RULES and content.get("join_rule") == "public":
        return Refusal("Rooms can't be made public on this server: invite colleagues instead.")
    if event_type == HISTORY_VISIBILITY and content.get("history_visibility") == "world_readable":
        return Refusal("Room history can't be made readable for everyone on this server.")
    if event_type == GUEST_ACCESS and content.get("guest_access") == "can_join":
        return Refusal("Guest access is switched off on this server.")
    if event_type == THIRD_PARTY_INVITE:
        return THREEPID_REFUSAL
    return None


THREEPID_REFUSAL = Refusal("Invitations by e-mail or phone number are switched off on this "
                           "server: invite colleagues by their Hauspost account instead.")
PUBLISH_REFUSAL = Refusal("Rooms can't be published to the room directory on this server.")
CREATE_REFUSAL_RESTRICTED = Refusal("Your account may only take part in the rooms IT has "
                                    "listed for you, so it can't create rooms.")


def refuse_alias(roles: frozenset[str], *, is_admin: bool, is_exempt: bool) -> Refusal | None:
    if "everyone" in roles:
        return None
    if is_admin and "server_admins" in roles:
        return None
    if is_exempt and "exempt_users" in roles:
        return None
    return Refusal("Room addresses (aliases) can only be created by IT on this server.")


def refuse_unknown_room(room_id: str, room_known: bool) -> Refusal | None:
    if room_known:
        return None
    return Refusal(f"Room {room_id} is not hosted on this server; rooms outside the company "
                   "can't be joined.")


def refuse_creation_request(request: Mapping[str, Any], boundary: Boundary) -> Refusal | None:
    """A createRoom body that would open the room up: refuse before any event is made."""
    if request.get("visibility") == "public":
        return PUBLISH_REFUSAL
    if request.get("preset") == "public_chat":
        return refuse_room_state(JOIN_RULES, {"join_rule": "public"})
    if request.get("invite_3pid"):
        return THREEPID_REFUSAL
    for invitee in request.get("invite") or ():
        refusal = refuse_outsider(boundary, str(invitee))
        if refusal is not None:
            return refusal
    for state in request.get("initial_state") or ():
        if isinstance(state, Mapping) and isinstance(state.get("content"), Mapping):
            refusal = refuse_room_state(str(state.get("type")), state["content"])
            if refusal is not None:
                return refusal
    return None


def close_guest_access(request: dict[str, Any]) -> None:
    """Add `guest_access: forbidden` to a createRoom body (in place).

    Synapse's private_chat preset (what Element uses) writes `can_join`, which our own
    check would then refuse; writing `forbidden` up front keeps room creation working.
    """
    initial_state = list(request.get("initial_state") or ())
    if not any(isinstance(s, Mapping) and s.get("type") == GUEST_ACCESS for s in initial_state):
        initial_state.append({"type": GUEST_ACCESS, "state_key": "",
                              "content": {"guest_access": "forbidden"}})
    request["initial_state"] = initial_state


def allowed_rooms_from_policy_state(event: EventBase | None) -> frozenset[str] | None:
    """The rooms a restricted user may be in, per the policy room (None: not restricted)."""
    if event is None:
        return None
    rooms = event.content.get("allowed_rooms")
    if rooms is None and not event.content:
        # Empty content is how Matrix "deletes" state: the restriction was lifted.
        return None
    if not isinstance(rooms, list):
        # Malformed restriction: keep the user restricted to nothing rather than free.
        logger.warning("policy event %s has no valid allowed_rooms list; treating as none",
                       event.event_id)
        return frozenset()
    return frozenset(r for r in rooms if isinstance(r, str))


# --------------------------------------------------------------------------------------
# The module: gathers facts, asks the predicates.
# --------------------------------------------------------------------------------------


class MembershipPolicy:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: MembershipPolicyConfig, api: ModuleApi) -> None:
        self._config = config
        self._api = api
        self._boundary = Boundary(api.server_name, config.allowed_server_names)
        api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            user_may_send_3pid_invite=self.user_may_send_3pid_invite,
            user_may_join_room=self.user_may_join_room,
            user_may_create_room=self.user_may_create_room,
            user_may_create_room_alias=self.user_may_create_room_alias,
            user_may_publish_room=self.user_may_publish_room,
            federated_user_may_invite=self.federated_user_may_invite,
            should_drop_federated_event=self.should_drop_federated_event,
        )
        register_check_event_allowed(
            api, self.check_event_allowed, reads=(),
            on_create_room=self.on_create_room,
            check_visibility_can_be_modified=self.check_visibility_can_be_modified,
            check_threepid_can_be_invited=self.check_threepid_can_be_invited,
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> MembershipPolicyConfig:
        return parse_membership_config(config)

    # -- facts ----------------------------------------------------------------------

    async def _allowed_rooms_for(self, user_id: str) -> frozenset[str] | None:
        """Rooms a restricted user may be in; None if the user is not restricted.

        Read from the database on each membership change (rare, not the message path),
        so every worker sees the provisioner's latest policy at once.
        """
        restricted = self._config.restricted
        from_config = restricted.allowed_rooms if user_id in restricted.users else None
        from_policy: frozenset[str] | None = None
        if restricted.policy_room_id is not None:
            key = (RESTRICTED_USER_EVENT, policy_state_key(user_id))
            state = await self._api.get_room_state(restricted.policy_room_id, [key])
            from_policy = allowed_rooms_from_policy_state(state.get(key))
        if from_config is None:
            return from_policy
        if from_policy is None:
            return from_config
        return from_config | from_policy

    async def _is_exempt_or_admin(self, user_id: str) -> tuple[bool, bool]:
        is_exempt = user_id in self._config.exempt_users
        is_admin = self._boundary.is_inside(user_id) and await self._api.is_user_admin(user_id)
        return is_exempt, is_admin

    async def _refuse_entering(self, user_id: str, room_id: str) -> Refusal | None:
        """Can `user_id` be invited to / join / knock on `room_id`?"""
        refusal = refuse_outsider(self._boundary, user_id)
        if refusal is None:
            refusal = refuse_inactive_account(user_id, await self._api.get_userinfo_by_id(user_id))
        if refusal is None:
            refusal = refuse_restricted_room(user_id, room_id,
                                             await self._allowed_rooms_for(user_id))
        return refusal

    # -- spam checker ---------------------------------------------------------------

    @fail_closed(refuse_spam)
    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> SpamResult:
        refusal = refuse_outsider(self._boundary, inviter)
        if refusal is None:
            refusal = await self._refuse_entering(invitee, room_id)
        return spam_result(refusal)

    @fail_closed(refuse_spam)
    async def user_may_send_3pid_invite(self, inviter: str, medium: str, address: str,
                                        room_id: str) -> SpamResult:
        return spam_result(THREEPID_REFUSAL)

    @fail_closed(refuse_spam)
    async def user_may_join_room(self, user_id: str, room_id: str,
                                 is_invited: bool) -> SpamResult:
        refusal = await self._refuse_entering(user_id, room_id)
        if refusal is None:
            # Room IDs (v12) carry no server, so "remote" means: we hold no state for it.
            create = await self._api.get_room_state(room_id, [("m.room.create", "")])
            refusal = refuse_unknown_room(room_id, bool(create))
        return spam_result(refusal)

    @fail_closed(refuse_spam)
    async def user_may_create_room(self, user_id: str, request: JsonDict) -> SpamResult:
        refusal = refuse_outsider(self._boundary, user_id)
        if refusal is None and await self._allowed_rooms_for(user_id) is not None:
            refusal = CREATE_REFUSAL_RESTRICTED
        return spam_result(refusal)

    @fail_closed(refuse_spam)
    async def user_may_create_room_alias(self, user_id: str, alias: RoomAlias) -> SpamResult:
        is_exempt, is_admin = await self._is_exempt_or_admin(user_id)
        return spam_result(refuse_alias(self._config.alias_creators,
                                        is_admin=is_admin, is_exempt=is_exempt))

    @fail_closed(refuse_spam)
    async def user_may_publish_room(self, user_id: str, room_id: str) -> SpamResult:
        return spam_result(PUBLISH_REFUSAL)

    @fail_closed(refuse_spam)
    async def federated_user_may_invite(self, event: EventBase) -> SpamResult:
        refusal = refuse_outsider(self._boundary, event.sender)
        if refusal is None:
            refusal = await self._refuse_entering(event.state_key, event.room_id)
        return spam_result(refusal)

    @fail_closed(drop_event)
    async def should_drop_federated_event(self, event: EventBase) -> bool:
        drop = refuse_outsider(self._boundary, event.sender) is not None
        if drop:
            logger.warning("dropping event %s from %s: outside the company boundary",
                           event.event_id, event.sender)
        return drop

    # -- third-party rules ----------------------------------------------------------

    @fail_closed_raising
    async def on_create_room(self, requester: Requester, request: dict[str, Any],
                             is_requester_admin: bool) -> None:
        refusal = refuse_creation_request(request, self._boundary)
        if refusal is not None:
            raise refusal.as_error()
        close_guest_access(request)

    @fail_closed(lambda: False)
    async def check_threepid_can_be_invited(self, medium: str, address: str,
                                            state: StateMap[EventBase]) -> bool:
        # Runs before Synapse asks an identity server about the address (the spam-checker
        # hook runs after), so the e-mail address never leaves the server. Synapse ignores
        # exceptions here (fail open), hence a plain False and its generic message.
        return False

    @fail_closed(lambda: False)
    async def check_visibility_can_be_modified(self, room_id: str, state: StateMap[EventBase],
                                               visibility: str) -> bool:
        return visibility != "public"

    @fail_closed_raising
    async def check_event_allowed(self, event: EventBase, state: StateMap[EventBase]
                                  ) -> tuple[bool, JsonDict | None]:
        return event_allowed(await self._refuse_event(event), event, logger)

    def _refuse_policy_change(self, event: EventBase) -> Refusal | None:
        # Power levels in the policy room should already stop this; we don't rely on them.
        if (event.room_id == self._config.restricted.policy_room_id
                and event.type in POLICY_ROOM_GUARDED_TYPES
                and event.sender not in self._config.exempt_users):
            return Refusal("Only IT's service account may change the restricted-access policy.")
        return None

    async def _refuse_event(self, event: EventBase) -> Refusal | None:
        # Hot path (every message): string checks only, unless the event changes membership.
        refusal = refuse_outsider(self._boundary, event.sender)
        if refusal is None:
            refusal = self._refuse_policy_change(event)
        if refusal is not None or not event.is_state():
            return refusal
        if event.type == MEMBER and event.membership in ENTERING:
            return await self._refuse_entering(event.state_key, event.room_id)
        return refuse_room_state(event.type, event.content)

