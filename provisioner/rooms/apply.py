"""Apply a room plan through Synapse: creates first (parents before children), then each
room's settings, then memberships with bounded concurrency. One audit row per change.

Before the first request every action is written down as an intent (`room_intents`); its
audit row deletes it in the same transaction. An intent left by a run that died between a
change reaching Synapse and its audit row is recorded late by the next room sync
(provisioner.rooms.late).

Writes go through `SynapseAdmin.request` with the service account's token, so they are
counted with the account writes and a no-op run proves zero writes. Rooms are created by
the service account (room version 12: it is the room's creator), invite-only, encrypted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import insert, update

from provisioner.errors import HauspostError
from provisioner.homeserver.synapse_admin import AdminApiError, SynapseAdmin, until_unreachable
from provisioner.rooms.plan import (
    MARKER,
    RETENTION,
    AddMember,
    AddSpaceChild,
    ArchiveRoom,
    CreateRoom,
    ReleaseRoom,
    RemoveMember,
    RemoveSpaceChild,
    RoomAction,
    RoomPlan,
    SetAvatar,
    SetName,
    SetRoomState,
    SetTopic,
    power_levels,
)
from provisioner.store import Store
from provisioner.store.change_writer import Change, ChangeWriter
from provisioner.store.rooms_models import ManagedRoomRow, RoomIntentRow

logger = logging.getLogger(__name__)

ROOM_VERSION = "12"


@dataclass(frozen=True)
class RoomFailure:
    action: RoomAction
    error: str


@dataclass
class RoomApplyResult:
    applied: Counter[str] = field(default_factory=Counter)
    failures: list[RoomFailure] = field(default_factory=list)


def _q(value: str) -> str:
    return quote(value, safe="")


def state_content(action: SetRoomState) -> dict[str, Any]:
    """The state event content that sets the policy's value (empty content clears it)."""
    new = action.new
    if isinstance(action, SetName):
        return {"name": new} if new else {}
    if isinstance(action, SetTopic):
        return {"topic": new} if new else {}
    if isinstance(action, SetAvatar):
        return {"url": new} if new else {}
    if action.event_type == "m.room.history_visibility":
        return {"history_visibility": new}
    return dict(new)


def create_body(action: CreateRoom, *, parent_room_id: str | None,
                server_name: str) -> dict[str, Any]:
    initial_state: list[dict[str, Any]] = [
        {"type": "m.room.encryption", "state_key": "",
         "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
        {"type": "m.room.guest_access", "state_key": "",
         "content": {"guest_access": "forbidden"}},
        {"type": "m.room.history_visibility", "state_key": "",
         "content": {"history_visibility": action.history_visibility}},
        {"type": MARKER, "state_key": "", "content": dict(action.marker)},
    ]
    if action.avatar:
        initial_state.append({"type": "m.room.avatar", "state_key": "",
                              "content": {"url": action.avatar}})
    if action.retention:  # no message is ever older than the policy allows
        initial_state.append({"type": RETENTION, "state_key": "",
                              "content": dict(action.retention)})
    if parent_room_id is not None:
        initial_state.append({"type": "m.space.parent", "state_key": parent_room_id,
                              "content": {"via": [server_name], "canonical": True}})
    body: dict[str, Any] = {
        "room_version": ROOM_VERSION, "preset": "private_chat", "visibility": "private",
        "name": action.name, "initial_state": initial_state,
        "power_level_content_override": dict(action.power_levels),
    }
    if action.topic:
        body["topic"] = action.topic
    if action.is_space:
        body["creation_content"] = {"type": "m.space"}
    return body


@dataclass(frozen=True)
class AuditEntry:
    """The audit row of one applied room action, but for who, when and which run."""

    action: str
    target: str
    reason: str
    details: dict[str, Any]


_REVERTED = "reverted to the room policy (changed outside it, or the policy changed)"


def audit_entry(action: RoomAction, room_ids: Mapping[str, str]) -> AuditEntry:
    """What the audit row of `action` says, its room (and a child's) looked up in
    `room_ids`: the same row whether it is written at once or late. Raises KeyError for a
    room not in `room_ids`."""
    room_id = room_ids[action.key]
    details: dict[str, Any] = {"policy_key": action.key}
    if isinstance(action, CreateRoom):
        return AuditEntry(f"room.{action.kind}", room_id, "declared in the room policy",
                          {**details, "name": action.name, "parent": action.parent})
    if isinstance(action, SetRoomState):
        return AuditEntry(f"room.{action.kind}", room_id, _REVERTED,
                          {**details, "old": action.old, "new": action.new})
    if isinstance(action, AddSpaceChild | RemoveSpaceChild):
        return AuditEntry(f"room.{action.kind}", room_id, "room policy hierarchy",
                          {**details, "child": action.child,
                           "child_room_id": room_ids[action.child]})
    if isinstance(action, AddMember | RemoveMember):
        return AuditEntry(f"room.{action.kind}", action.user_id, action.reason,
                          {**details, "room_id": room_id})
    if isinstance(action, ArchiveRoom):
        return AuditEntry("room.archive", room_id, action.reason, details)
    if isinstance(action, ReleaseRoom):
        return AuditEntry("room.release", room_id, action.reason, details)
    raise TypeError(f"unknown room action {action!r}")  # pragma: no cover


def write_intents(store: Store, plan: RoomPlan, run_id: int, now: datetime) -> dict[int, int]:
    """Write every action of `plan` down as an intent of run `run_id` (one statement);
    returns id(action) -> its seq."""
    if not plan.actions:
        return {}
    with store.transaction() as conn:
        conn.execute(insert(RoomIntentRow), [
            {"run_id": run_id, "seq": seq, "action": action.to_json(), "created_at": now}
            for seq, action in enumerate(plan.actions)])
    return {id(action): seq for seq, action in enumerate(plan.actions)}


class _RoomApplier:
    def __init__(self, admin: SynapseAdmin, store: Store, writer: ChangeWriter, *, run_id: int,
                 actor: str, server_name: str, room_ids: dict[str, str], concurrency: int,
                 clock: Callable[[], datetime], intents: Mapping[int, int]) -> None:
        self.admin = admin
        self.store = store
        self.writer = writer
        self.run_id = run_id
        self.actor = actor
        self.server_name = server_name
        self.room_ids = room_ids
        self.clock = clock
        #: id(action) -> seq of its intent.
        self.intents = intents
        self.slots = asyncio.Semaphore(concurrency)
        self.result = RoomApplyResult()
        self.pending: list[asyncio.Task[None]] = []

    def room_id(self, key: str) -> str:
        try:
            return self.room_ids[key]
        except KeyError:
            raise HauspostError(f"room {key} was not created in this run") from None

    async def audit(self, action: RoomAction) -> None:
        """Record a change Synapse has made, resolving its intent. Not waited for: a room's
        next membership request need not wait for the store (`recorded` waits for all)."""
        entry = audit_entry(action, self.room_ids)
        seq = self.intents.get(id(action))
        change = Change(audit={
            "at": self.clock(), "actor": self.actor, "action": entry.action,
            "target": entry.target, "reason": entry.reason, "run_id": self.run_id,
            "details": entry.details},
            intent=None if seq is None else (self.run_id, seq))

        async def write() -> None:
            try:
                await self.writer.commit(change)
            except HauspostError as exc:
                logger.error("%s: recording it failed: %s", action.describe(), exc)
                self.result.failures.append(RoomFailure(action, f"not recorded: {exc}"))
                return
            self.result.applied[action.kind] += 1

        self.pending.append(asyncio.create_task(write()))

    async def recorded(self) -> None:
        await asyncio.gather(*self.pending)
        self.pending.clear()

    def _set_status(self, key: str, status: str) -> None:
        with self.store.session() as session:
            session.execute(update(ManagedRoomRow).where(ManagedRoomRow.policy_key == key)
                            .values(status=status, updated_at=self.clock()))

    async def put_state(self, key: str, event_type: str, state_key: str,
                        content: Mapping[str, Any]) -> None:
        path = (f"/_matrix/client/v3/rooms/{_q(self.room_id(key))}/state/"
                f"{_q(event_type)}/{_q(state_key)}")
        async with self.slots:
            await self.admin.request("PUT", path, json=dict(content))

    async def create(self, action: CreateRoom) -> None:
        parent_id = self.room_ids.get(action.parent) if action.parent else None
        body = create_body(action, parent_room_id=parent_id, server_name=self.server_name)
        async with self.slots:
            resp = await self.admin.request("POST", "/_matrix/client/v3/createRoom", json=body)
        room_id = str(resp.json()["room_id"])
        now = self.clock()
        # Stored at once: a crash after this point must never create the room a second time.
        with self.store.session() as session:
            existing = session.get(ManagedRoomRow, action.key)
            if existing is None:
                session.add(ManagedRoomRow(
                    policy_key=action.key, room_id=room_id,
                    kind="space" if action.is_space else "room", status="active",
                    on_removed=action.on_removed, created_at=now, created_run_id=self.run_id,
                    updated_at=now))
            else:  # a released room's key is back in the policy: a new room
                existing.room_id, existing.status, existing.updated_at = room_id, "active", now
                existing.on_removed = action.on_removed
        self.room_ids[action.key] = room_id
        await self.audit(action)

    async def add_members(self, key: str, actions: Sequence[AddMember]) -> None:
        """Several people into one room in one request (synapse_modules.members_batch);
        each one Synapse refused is a failure, the others are recorded."""
        room_id = self.room_id(key)
        user_ids = [a.user_id for a in actions]
        async with self.slots:
            results = await self.admin.add_members_batch(room_id, user_ids)
        for action, result in zip(actions, results, strict=True):
            error = result.get("error")
            if error is None and result.get("user_id") != action.user_id:
                error = f"Synapse answered for {result.get('user_id')!r}"
            if error is None:
                await self.audit(action)
            else:
                logger.error("%s failed: Synapse refused: %s", action.describe(), error)
                self.result.failures.append(RoomFailure(action, f"Synapse refused: {error}"))

    async def one(self, action: RoomAction) -> None:
        if isinstance(action, SetRoomState):
            await self.put_state(action.key, action.event_type, "", state_content(action))
            if action.event_type == MARKER and not action.new.get("archived"):
                self._set_status(action.key, "active")
            await self.audit(action)
        elif isinstance(action, AddSpaceChild | RemoveSpaceChild):
            child_id = self.room_id(action.child)
            add = isinstance(action, AddSpaceChild)
            await self.put_state(action.key, "m.space.child", child_id,
                                 {"via": [self.server_name]} if add else {})
            await self.audit(action)
        elif isinstance(action, AddMember):
            room_id = self.room_id(action.key)
            async with self.slots:
                # Invite and join in one call: nobody has to accept an invite.
                await self.admin.request("POST", f"/_synapse/admin/v1/join/{_q(room_id)}",
                                         json={"user_id": action.user_id})
            await self.audit(action)
        elif isinstance(action, RemoveMember):
            room_id = self.room_id(action.key)
            async with self.slots:
                await self.admin.request("POST", f"/_matrix/client/v3/rooms/{_q(room_id)}/kick",
                                         json={"user_id": action.user_id,
                                               "reason": action.reason})
            await self.audit(action)
        elif isinstance(action, ArchiveRoom):
            await self.put_state(action.key, MARKER, "", {"policy_key": action.key,
                                                          "mandatory": False, "archived": True})
            await self.put_state(action.key, "m.room.power_levels", "",
                                 power_levels(archived=True))
            self._set_status(action.key, "archived")
            await self.audit(action)
        elif isinstance(action, ReleaseRoom):
            await self.put_state(action.key, MARKER, "", {})
            self._set_status(action.key, "released")
            await self.audit(action)
        else:  # pragma: no cover - the planner makes no other actions
            raise TypeError(f"unknown room action {action!r}")


async def _members_batch_size(admin: SynapseAdmin, members: Sequence[RoomAction]
                              ) -> int | None:
    """The batched membership path's size, asked once per run when some room gains more
    than one person; None: the admin API."""
    adds = Counter(a.key for a in members if isinstance(a, AddMember))
    if not adds or max(adds.values()) < 2:
        return None
    try:
        return await admin.members_batch_size()
    except HauspostError as exc:
        logger.warning("cannot ask Synapse for its batched membership path (%s); using the "
                       "admin API", exc)
        return None


def creation_levels(creates: Sequence[CreateRoom]) -> list[list[CreateRoom]]:
    """Creates grouped by depth below the rooms created in the same plan (plan order
    kept): every parent is in an earlier level than its children."""
    by_key = {c.key: c for c in creates}
    depth: dict[str, int] = {}

    def level(create: CreateRoom) -> int:
        if create.key not in depth:
            parent = by_key.get(create.parent) if create.parent else None
            depth[create.key] = 0 if parent is None else level(parent) + 1
        return depth[create.key]

    levels: list[list[CreateRoom]] = []
    for create in creates:
        index = level(create)
        levels.extend([] for _ in range(index + 1 - len(levels)))
        levels[index].append(create)
    return levels


def member_chunks(room: Sequence[RoomAction], size: int) -> list[list[RoomAction]]:
    """A room's membership changes in plan order, runs of additions cut into chunks of at
    most `size` (one batched request each); every removal is a chunk of its own."""
    chunks: list[list[RoomAction]] = []
    for action in room:
        last = chunks[-1] if chunks else None
        if isinstance(action, AddMember) and last is not None and len(last) < size \
                and isinstance(last[0], AddMember):
            last.append(action)
        else:
            chunks.append([action])
    return chunks


def member_streams(actions: Sequence[RoomAction], streams: int
                   ) -> tuple[list[list[RoomAction]], list[list[RoomAction]]]:
    """Membership changes as one queue per room (plan order kept): the big rooms, one per
    stream from the start (largest first), and a shared queue of the rest.

    Synapse makes a room's membership events one after another (a lock per room), so a
    second request into the same room only waits and holds a slot: each room is worked by
    one stream at a time, and a room's length in requests is the least time it can take.
    A room is big when it holds at least half a stream's fair share of the run
    (len >= total / (2 * streams)): in the example company the all-hands room and the four
    spaces everybody is in, 10,000 of 16,001 memberships at 2,000 employees. Every big room
    starts at once; one stream (at least) is kept for the small rooms, which go smallest
    first, so most people are in their team rooms early. Big rooms that find no stream of
    their own head the shared queue, largest first: started last, the biggest room would
    be the run's tail.
    """
    queues: dict[str, list[RoomAction]] = defaultdict(list)
    for action in actions:
        queues[action.key].append(action)
    largest_first = sorted(queues.values(), key=len, reverse=True)  # stable: plan order
    total = sum(len(queue) for queue in largest_first)
    threshold = total / (2 * max(1, streams))
    big = [queue for queue in largest_first if len(queue) >= threshold]
    small = sorted((queue for queue in largest_first if len(queue) < threshold), key=len)
    dedicated = min(len(big), streams - 1 if small else streams)
    return big[:dedicated], big[dedicated:] + small


async def apply_room_plan(plan: RoomPlan, *, admin: SynapseAdmin, store: Store, run_id: int,
                          actor: str, server_name: str, room_ids: Mapping[str, str],
                          concurrency: int = 8, progress: bool = False,
                          batched_members: bool = True,
                          clock: Callable[[], datetime] = lambda: datetime.now(UTC)
                          ) -> RoomApplyResult:
    """Apply every action of `plan`. A failed action is reported; the others go on (a
    room that could not be created fails the actions that need it). With
    `batched_members` and Synapse's batched membership path present, several additions to
    one room go in one request; without, each is an admin-API join."""
    creates = [a for a in plan.actions if isinstance(a, CreateRoom)]
    members = [a for a in plan.actions if isinstance(a, AddMember | RemoveMember)]
    settings: dict[str, list[RoomAction]] = defaultdict(list)
    for action in plan.actions:
        if not isinstance(action, CreateRoom | AddMember | RemoveMember):
            settings[action.key].append(action)
    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]rooms"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console,
                   disable=not progress or not plan.actions)

    intents = write_intents(store, plan, run_id, clock())
    async with ChangeWriter(store) as writer:
        # Once Synapse has proved unreachable, the remaining actions fail at once instead of
        # each waiting out its retries (their intents stay; the next run decides them).
        applier = _RoomApplier(until_unreachable(admin), store, writer, run_id=run_id,
                               actor=actor, server_name=server_name, room_ids=dict(room_ids),
                               concurrency=concurrency, clock=clock, intents=intents)
        with bar:
            task = bar.add_task("rooms", total=len(plan.actions))

            async def attempt(action: RoomAction) -> None:
                try:
                    if isinstance(action, CreateRoom):
                        await applier.create(action)
                    else:
                        await applier.one(action)
                except HauspostError as exc:
                    logger.error("%s failed: %s", action.describe(), exc)
                    applier.result.failures.append(RoomFailure(action, str(exc)))
                finally:
                    bar.advance(task)

            # Parents first (a child names its parent's room ID); siblings at once.
            for level in creation_levels(creates):
                await asyncio.gather(*(attempt(create) for create in level))

            async def room_settings(actions: list[RoomAction]) -> None:
                for action in actions:
                    await attempt(action)

            await asyncio.gather(*(room_settings(a) for a in settings.values()))
            batch_size = await _members_batch_size(applier.admin, members) \
                if batched_members else None
            dedicated, shared = member_streams(members, concurrency)
            waiting = deque(shared)

            async def chunk(actions: list[RoomAction]) -> None:
                adds = [a for a in actions if isinstance(a, AddMember)]
                if len(adds) < 2 or len(adds) != len(actions):
                    for action in actions:
                        await attempt(action)
                    return
                try:
                    await applier.add_members(adds[0].key, adds)
                except AdminApiError as exc:
                    # Refused as a whole: one by one, so the one at fault is named.
                    logger.warning("batched additions to %s refused (%s); adding %d people "
                                   "one by one", adds[0].key, exc, len(adds))
                    for action in actions:
                        await attempt(action)
                    return
                except HauspostError as exc:
                    for action in adds:
                        logger.error("%s failed: %s", action.describe(), exc)
                        applier.result.failures.append(RoomFailure(action, str(exc)))
                bar.advance(task, len(actions))

            async def stream(first: list[RoomAction] | None) -> None:
                room = first
                while room is not None:
                    for actions in member_chunks(room, batch_size or 1):
                        await chunk(actions)
                    room = waiting.popleft() if waiting else None

            await asyncio.gather(*(stream(room) for room in dedicated),
                                 *(stream(waiting.popleft() if waiting else None)
                                   for _ in range(max(1, concurrency - len(dedicated)))))
            await applier.recorded()
    return applier.result
