"""Many members into one room in one request, for the provisioner only
(docs/scale-out.md "Batched memberships").

The admin API joins one person per request (`POST /_synapse/admin/v1/join/<room>`: an
invite by the room's admin, then the join), and Synapse's membership handler works out
the room's whole state for each of the two events and writes each in its own run of
transactions. Into a room of thousands that is most of a first sync.
`POST /_synapse/client/hauspost/rooms/members/batch` with `{"room_id", "user_ids"}` makes
the same two events per person (same senders, same content: the person's profile name and
avatar, as Synapse's membership handler adds them) and writes up to `max_batch` people in
one chain of events, persisted together the way Synapse persists a new room's first
events (`handle_new_client_event` with a batch).

* **Only the provisioner.** The requester must be one of `provisioner_users` and a server
  admin; anybody else gets 403 before the body is read, no token 401.
* **Every policy still applies.** For every person the spam checkers are asked exactly as
  the membership handler asks them (`user_may_invite` for the invitation,
  `user_may_join_room` with `is_invited`), every event passes the third-party rules
  (`check_event_allowed`) as it is made, and Synapse's event auth checks the whole chain
  before anything is written. A person refused by any of them is reported with the reason
  and left out; the others are joined. An account that is not ours, does not exist, is
  deactivated or banned from the room is reported; one already in the room is reported
  as `unchanged` and gets no event.
* **Same order as the membership handler.** The batch holds the room's membership lock
  (and the purge lock) while it reads the state and makes its events, so it cannot
  interleave with another membership change in this process.
* **Short state chains.** The batch's first event is stored the ordinary way (Synapse
  starts a new full state snapshot when the delta chain would grow past its limit); only
  the rest are chained, so no room's state ends up behind thousands of deltas.

`GET /_synapse/client/hauspost/rooms/state?room_id=…` answers what the provisioner reads
of a room on every sync, compactly: the state events other than memberships, and each
membership as `[user_id, membership, sender, origin_server_ts]` straight from Synapse's
current-state table (the admin API's `rooms/<id>/state` loads and serialises every member
event: 10,000 of them in a company's all-hands room). `{"found": false}` for a room this
server does not hold.

A batch that Synapse refuses as a whole (an event-auth failure nobody foresaw) answers the
error and writes nothing; the provisioner then joins those people one by one through the
admin API, which reports the one that fails. `GET` on the same path answers
`{"max_batch": N}` to the same requesters.

The handler methods used are Synapse internals (there is no module API for making events
in a batch); they are looked up on the first request and a Synapse without them answers
501, so the provisioner uses the admin API (slower, same result).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synapse.http.server import DirectServeJsonResource
from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_modules._config import ConfigReader
from synapse_modules._provisioner_only import authorise_provisioner
from synapse_modules._provisioner_only import requester_allowed as provisioner_allowed

logger = logging.getLogger(__name__)

BATCH_PATH = "/_synapse/client/hauspost/rooms/members/batch"
STATE_PATH = "/_synapse/client/hauspost/rooms/state"
MEMBER = "m.room.member"
_USER_ID = re.compile(r"^@[^:\s]+:[^\s]+$")
_ROOM_ID = re.compile(r"^![^\s]+$")
#: Synapse's `NEW_EVENT_DURING_PURGE_LOCK_NAME`: held (read) by every event creation.
PURGE_LOCK = "new_event_during_purge_lock"


@dataclass(frozen=True)
class MembersBatchConfig:
    provisioner_users: frozenset[str]
    max_batch: int


def parse_members_batch_config(raw: object) -> MembersBatchConfig:
    reader = ConfigReader(raw)
    users = reader.provisioner_users()
    max_batch = reader.integer("max_batch", default=50, minimum=1, maximum=500)
    reader.finish()
    return MembersBatchConfig(provisioner_users=users, max_batch=max_batch)


# --------------------------------------------------------------------------------------
# Pure decisions.
# --------------------------------------------------------------------------------------


def requester_allowed(user_id: str, is_admin: bool, config: MembersBatchConfig) -> bool:
    return provisioner_allowed(user_id, is_admin, config.provisioner_users)


def parse_request(body: object, max_batch: int) -> tuple[str, list[tuple[str, str | None]]]:
    """The room and each user ID with its problem (None when it may be joined); a
    duplicate is a problem for every entry after the first."""
    if not isinstance(body, Mapping) or not isinstance(body.get("user_ids"), list) \
            or not isinstance(body.get("room_id"), str):
        raise SynapseError(400, 'expected {"room_id": "!...", "user_ids": [...]}',
                           Codes.BAD_JSON)
    room_id: str = body["room_id"]
    if not _ROOM_ID.match(room_id):
        raise SynapseError(400, "room_id must be a room ID (!...)", Codes.INVALID_PARAM)
    raw: list[object] = body["user_ids"]
    if len(raw) > max_batch:
        raise SynapseError(400, f"at most {max_batch} users per request", Codes.TOO_LARGE)
    seen: set[str] = set()
    out: list[tuple[str, str | None]] = []
    for user_id in raw:
        if not isinstance(user_id, str) or not _USER_ID.match(user_id):
            out.append((str(user_id), "not a user ID (@localpart:server)"))
        elif user_id in seen:
            out.append((user_id, "duplicate user ID in this batch"))
        else:
            seen.add(user_id)
            out.append((user_id, None))
    return room_id, out


def membership_problem(membership: str | None) -> str | None:
    """Why somebody with this membership in the room cannot be invited and joined."""
    if membership == "ban":
        return "banned from the room"
    return None


def refusal_text(result: object) -> str | None:
    """A spam checker's answer as a reason, or None when it allows."""
    if result == "NOT_SPAM":
        return None
    if isinstance(result, tuple) and result and isinstance(result[1], Mapping):
        error = result[1].get("error")
        if isinstance(error, str) and error:
            return error
    return "refused by the server's policy"


# --------------------------------------------------------------------------------------
# The module.
# --------------------------------------------------------------------------------------


class _Internals:
    """Synapse's handlers this module drives, looked up once (first request)."""

    def __init__(self, hs: Any) -> None:
        from synapse.events.snapshot import UnpersistedEventContext
        from synapse.types import create_requester

        self.creator = hs.get_event_creation_handler()
        self.members = hs.get_room_member_handler()
        self.locks = hs.get_worker_locks_handler()
        self.storage = hs.get_storage_controllers()
        self.state_store = hs.get_datastores().state
        self.main_store = hs.get_datastores().main
        self.spam = hs.get_module_api_callbacks().spam_checker
        self.profile = hs.get_profile_handler()
        self.persist_contexts = UnpersistedEventContext.batch_persist_unpersisted_contexts
        self.create_requester = create_requester
        self.profile_on_invite = bool(hs.config.server.include_profile_data_on_invite)
        for obj, name in ((self.creator, "create_event"),
                          (self.creator, "handle_new_client_event"),
                          (self.members, "member_linearizer"),
                          (self.locks, "acquire_read_write_lock"),
                          (self.spam, "user_may_invite"), (self.spam, "user_may_join_room")):
            if getattr(obj, name, None) is None:
                raise AttributeError(f"{type(obj).__name__}.{name}")


_MEMBERS_SQL = (
    "SELECT c.state_key, c.membership, e.sender, e.origin_server_ts"
    " FROM current_state_events AS c JOIN events AS e ON e.event_id = c.event_id"
    " WHERE c.room_id = ? AND c.type = ?")


def _members_txn(txn: Any, room_id: str) -> list[list[Any]]:
    txn.execute(_MEMBERS_SQL, (room_id, MEMBER))
    return [[str(k), str(m), str(s), int(t or 0)] for k, m, s, t in txn]


class _ProvisionerResource(DirectServeJsonResource):
    """A resource only the provisioner's service account (a server admin) may use."""

    def __init__(self, config: MembersBatchConfig, api: ModuleApi) -> None:
        super().__init__()
        self._config = config
        self._api = api
        self._internals: _Internals | None = None
        self._unsupported = False

    def _synapse(self) -> _Internals:
        if self._internals is None and not self._unsupported:
            try:
                self._internals = _Internals(self._api._hs)
            except (AttributeError, ImportError) as exc:
                self._unsupported = True
                logger.error("batched memberships are off: this Synapse lacks %s "
                             "(tested: 1.163.x); the provisioner uses the admin API", exc)
        if self._internals is None:
            raise SynapseError(501, "batched memberships are not supported by this Synapse",
                               Codes.UNRECOGNIZED)
        return self._internals

    async def _authorise(self, request: SynapseRequest) -> str:
        return await authorise_provisioner(
            self._api, request, self._config.provisioner_users,
            "only the provisioner's service account may use this")


class RoomStateResource(_ProvisionerResource):
    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict[str, Any]]:  # noqa: N802
        from synapse.types.state import StateFilter

        await self._authorise(request)
        syn = self._synapse()
        args: dict[bytes, list[bytes]] = request.args or {}
        raw = args.get(b"room_id", [b""])[0].decode("utf-8", "replace")
        if not _ROOM_ID.match(raw):
            raise SynapseError(400, "room_id must be a room ID (!...)", Codes.INVALID_PARAM)
        others = await syn.storage.state.get_current_state(
            raw, StateFilter.freeze({MEMBER: frozenset()}, include_others=True))
        if ("m.room.create", "") not in others:
            return 200, {"found": False}
        members = await self._api.run_db_interaction("hauspost_room_members",
                                                     _members_txn, raw)
        state = [{"type": e.type, "state_key": e.state_key, "content": dict(e.content),
                  "sender": e.sender, "origin_server_ts": e.origin_server_ts}
                 for e in others.values()]
        return 200, {"found": True, "state": state, "members": members}


class MembersBatchResource(_ProvisionerResource):
    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict[str, Any]]:  # noqa: N802
        await self._authorise(request)
        self._synapse()
        return 200, {"max_batch": self._config.max_batch}

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, dict[str, Any]]:  # noqa: N802
        inviter = await self._authorise(request)
        syn = self._synapse()
        try:
            body = json.loads(request.content.read())  # type: ignore[union-attr]
        except ValueError:
            raise SynapseError(400, "the body is not JSON", Codes.NOT_JSON) from None
        room_id, entries = parse_request(body, self._config.max_batch)
        async with syn.members.member_linearizer.queue((room_id,)):
            async with syn.locks.acquire_read_write_lock(PURGE_LOCK, room_id, write=False):
                results = await _Batch(syn, self._api, inviter, room_id).run(entries)
        joined = sum(1 for r in results if r.get("membership") == "join"
                     and not r.get("unchanged"))
        logger.info("%s added %d of %d members to %s in one batch", inviter, joined,
                    len(results), room_id)
        return 200, {"results": results}


class _Batch:
    """One request's chain of events in one room; run under the room's membership lock."""

    def __init__(self, syn: _Internals, api: ModuleApi, inviter: str, room_id: str) -> None:
        self.syn = syn
        self.api = api
        self.inviter = inviter
        self.room_id = room_id
        self.inviter_requester = syn.create_requester(inviter, authenticated_entity=inviter)
        # The chain so far: the first event (stored the ordinary way) and the rest.
        self.first: tuple[Any, Any] | None = None
        self.rest: list[tuple[Any, Any]] = []
        self.state_map: dict[tuple[str, str], str] = {}
        self.state_group: int | None = None

    async def run(self, entries: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
        current = await self.syn.storage.state.get_current_state_ids(self.room_id)
        if ("m.room.create", "") not in current:
            raise SynapseError(404, "no such room on this server", Codes.NOT_FOUND)
        memberships = await self._memberships(current, [u for u, p in entries if p is None])
        results: list[dict[str, Any]] = []
        targets: list[str] = []
        for user_id, problem in entries:
            if problem is None:
                problem, unchanged = await self._check(user_id, memberships.get(user_id))
                if unchanged:
                    results.append({"user_id": user_id, "membership": "join",
                                    "unchanged": True})
                    continue
            if problem is None:
                problem = await self._add(user_id, invited=memberships.get(user_id) == "invite")
            if problem is None:
                results.append({"user_id": user_id, "membership": "join"})
                targets.append(user_id)
            else:
                results.append({"user_id": user_id, "error": problem,
                                "errcode": Codes.FORBIDDEN})
        if self.first is not None:
            await self._persist(targets)
        return results

    async def _memberships(self, current: Mapping[tuple[str, str], str],
                           user_ids: list[str]) -> dict[str, str]:
        ids = {u: current[(MEMBER, u)] for u in user_ids if (MEMBER, u) in current}
        events = await self.syn.main_store.get_events(list(ids.values()))
        return {u: str(events[e].membership) for u, e in ids.items() if e in events}

    async def _check(self, user_id: str, membership: str | None) -> tuple[str | None, bool]:
        if not self.api.is_mine(user_id):
            return "not an account of this server", False
        info = await self.api.get_userinfo_by_id(user_id)
        if info is None:
            return "no such account", False
        if info.is_deactivated:
            return "the account is deactivated", False
        if membership == "join":
            return None, True
        return membership_problem(membership), False

    async def _profile(self, user_id: str) -> dict[str, str]:
        from synapse.types import UserID

        user = UserID.from_string(user_id)
        out: dict[str, str] = {}
        name = await self.syn.profile.get_displayname(user)
        avatar = await self.syn.profile.get_avatar_url(user)
        if name is not None:
            out["displayname"] = name
        if avatar is not None:
            out["avatar_url"] = avatar
        return out

    async def _add(self, user_id: str, *, invited: bool) -> str | None:
        """Make the person's invitation (unless invited) and join at the chain's end;
        the reason when a policy refuses either (then neither is kept)."""
        if not invited:
            refusal = refusal_text(await self.syn.spam.user_may_invite(
                self.inviter, user_id, self.room_id))
            if refusal is not None:
                return refusal
        refusal = refusal_text(await self.syn.spam.user_may_join_room(
            user_id, self.room_id, True))
        if refusal is not None:
            return refusal
        profile = await self._profile(user_id)
        # What a refusal must undo: this person's events and their one state entry.
        began, kept, key = self.first is None, len(self.rest), (MEMBER, user_id)
        before = self.state_map.get(key)
        try:
            if not invited:
                content = {"membership": "invite",
                           **(profile if self.syn.profile_on_invite else {})}
                await self._append(self.inviter_requester, self.inviter, user_id, content)
            joiner = self.syn.create_requester(user_id, authenticated_entity=self.inviter)
            await self._append(joiner, user_id, user_id, {"membership": "join", **profile})
        except SynapseError as exc:
            if began:  # the chain began with this person: the next one begins it again
                self.first, self.state_map, self.state_group = None, {}, None
            del self.rest[kept:]
            if before is None:
                self.state_map.pop(key, None)
            else:
                self.state_map[key] = before
            logger.info("not adding %s to %s: %s", user_id, self.room_id, exc.msg)
            return str(exc.msg)
        return None

    async def _append(self, requester: Any, sender: str, target: str,
                      content: dict[str, Any]) -> None:
        event_dict = {"type": MEMBER, "room_id": self.room_id, "sender": sender,
                      "state_key": target, "content": content,
                      "membership": content["membership"]}
        if self.first is None:
            # The ordinary way: prev events are the room's forward extremities and the
            # state group is stored now (a full snapshot when the delta chain is long).
            event, unpersisted = await self.syn.creator.create_event(requester, event_dict)
            context = await unpersisted.persist(event)
            self.first = (event, context)
            self.state_group = context.state_group
            self.state_map = dict(await context.get_current_state_ids())
            return
        last = self.rest[-1][0] if self.rest else self.first[0]
        event, unpersisted = await self.syn.creator.create_event(
            requester, event_dict, prev_event_ids=[last.event_id], depth=last.depth + 1,
            state_map=dict(self.state_map), for_batch=True,
            current_state_group=self.state_group)
        self.rest.append((event, unpersisted))
        self.state_map[(MEMBER, target)] = event.event_id

    async def _persist(self, targets: list[str]) -> None:
        from synapse.types import UserID

        assert self.first is not None and self.state_group is not None  # noqa: S101
        rest = await self.syn.persist_contexts(self.rest, self.room_id, self.state_group,
                                               self.syn.state_store) if self.rest else []
        chain = [self.first, *rest]
        last = await self.syn.creator.handle_new_client_event(
            self.inviter_requester, events_and_context=chain, ratelimit=False,
            extra_users=[UserID.from_string(u) for u in targets], ignore_shadow_ban=True)
        if last.event_id != chain[-1][0].event_id:
            # Synapse dropped the batch as a duplicate of the room's state: nothing new.
            logger.error("Synapse did not store the batch for %s (it answered %s)",
                         self.room_id, last.event_id)
            raise SynapseError(409, "Synapse did not store the batch; try again",
                               Codes.UNKNOWN)


class MembersBatch:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: MembersBatchConfig, api: ModuleApi) -> None:
        api.register_web_resource(BATCH_PATH, MembersBatchResource(config, api))
        api.register_web_resource(STATE_PATH, RoomStateResource(config, api))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> MembersBatchConfig:
        return parse_members_batch_config(config)
