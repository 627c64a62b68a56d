"""The room part of a `plan` / `sync` run: the adapters around the pure room planner.

Called by `provisioner.sync.run` after the accounts are applied (so new hires are in their rooms in
the same run) and by `plan` (where accounts about to be created count as members).
Rooms are managed only when hauspost.yaml names a `policies:` directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from provisioner.accounts.bot_account import (
    audit_bot_account_change,
    bot_password_file,
    bot_user_id,
    ensure_bot_account,
)
from provisioner.accounts.plan import (
    CreateAccount,
    Deactivate,
    LinkAccount,
    Plan,
    Reactivate,
    employee_active,
    user_id_for,
)
from provisioner.accounts.policy import policy_for
from provisioner.announcements.config import AnnouncementConfig, load_announcement_config
from provisioner.employee import DirectoryRead
from provisioner.errors import HauspostError
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.policy import PolicySet, load_policies
from provisioner.rooms.apply import RoomApplyResult, RoomFailure, apply_room_plan
from provisioner.rooms.late import record_late_changes
from provisioner.rooms.plan import (
    MARKER,
    RETENTION,
    AddMember,
    ManagedRoom,
    Member,
    Membership,
    RoomPlan,
    RoomPlanContext,
    RoomState,
    plan_rooms,
)
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store.models import AccountRow, AuditRow
from provisioner.store.rooms_models import ManagedRoomRow

logger = logging.getLogger(__name__)


@dataclass
class RoomOutcome:
    plan: RoomPlan
    result: RoomApplyResult = field(default_factory=RoomApplyResult)
    #: Changes an interrupted earlier run made in Synapse, audited by this run
    #: (provisioner.rooms.late).
    recorded_late: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"plan": self.plan.to_json(), "applied": dict(self.result.applied),
                "failures": [{"action": f.action.to_json(), "error": f.error}
                             for f in self.result.failures],
                "recorded_late": self.recorded_late}


def load_room_policy(settings: Settings) -> PolicySet | None:
    """The validated policy, or None when rooms are not managed. Raises PolicyError, or
    ConfigError for a broken announcements.yaml when the policy has read-only rooms (so a
    run stops before anything changes, not halfway)."""
    if settings.policies is None:
        return None
    policy = load_policies(settings.policies)
    announcement_bot(settings, policy)
    return policy


def announcement_bot(settings: Settings, policy: PolicySet | None
                     ) -> tuple[str, AnnouncementConfig] | None:
    """The announcement bot's user ID and config, when the policy has a read-only room for
    it to post in (docs/announcements.md); else None. Raises ConfigError."""
    if policy is None or not any(room.read_only for room in policy.rooms):
        return None
    config = load_announcement_config(settings.data_dir)
    return bot_user_id(config, settings.server_name), config


# --- current state -----------------------------------------------------------------------


def load_managed(store: Store) -> dict[str, ManagedRoom]:
    with store.session() as session:
        rows = session.execute(select(ManagedRoomRow.policy_key, ManagedRoomRow.room_id,
                                      ManagedRoomRow.kind, ManagedRoomRow.status,
                                      ManagedRoomRow.on_removed)).all()
    return {r[0]: ManagedRoom(key=r[0], room_id=r[1], kind=r[2], status=r[3], on_removed=r[4])
            for r in rows}


def state_from_events(events: Iterable[Mapping[str, Any]]) -> RoomState:
    """RoomState from a room's current state events (admin API `rooms/<id>/state`)."""
    fields: dict[str, Any] = {}
    members: dict[str, Membership] = {}
    children: set[str] = set()
    for ev in events:
        kind, key, content = ev.get("type"), ev.get("state_key"), ev.get("content") or {}
        if key is None or not isinstance(content, Mapping):
            continue
        if kind == "m.room.member":
            members[key] = Membership(str(content.get("membership")), str(ev.get("sender")),
                                      int(ev.get("origin_server_ts") or 0))
        elif kind == "m.space.child" and content.get("via"):
            children.add(key)
        elif key != "":
            continue
        elif kind == "m.room.name":
            fields["name"] = content.get("name")
        elif kind == "m.room.topic":
            fields["topic"] = content.get("topic")
        elif kind == "m.room.avatar":
            fields["avatar"] = content.get("url")
        elif kind == "m.room.history_visibility":
            fields["history_visibility"] = content.get("history_visibility")
        elif kind == "m.room.power_levels":
            fields["power_levels"] = dict(content)
        elif kind == MARKER:
            fields["marker"] = dict(content)
        elif kind == RETENTION:
            fields["retention"] = dict(content)
    return RoomState(members=members, children=frozenset(children), **fields)


async def read_room_states(admin: SynapseAdmin, managed: Mapping[str, ManagedRoom],
                           concurrency: int = 8) -> dict[str, RoomState]:
    """Current state of every managed room that is not released (one GET per room):
    through Synapse's compact room read (synapse_modules.members_batch) where it is
    there, else the admin API's `rooms/<id>/state`."""
    slots = asyncio.Semaphore(concurrency)

    async def one(row: ManagedRoom) -> tuple[str, RoomState | None]:
        async with slots:
            events = await admin.room_state(row.room_id)
        return row.key, None if events is None else state_from_events(events)

    rows = [r for r in managed.values() if r.status != "released"]
    results = await asyncio.gather(*(one(r) for r in rows))
    return {key: state for key, state in results if state is not None}


def members_from(directory: DirectoryRead, accounts: Mapping[str, tuple[str, bool]],
                 settings: Settings, now: datetime) -> list[Member]:
    """Active employees with an active linked account. `accounts`: employee id ->
    (user id, active)."""

    tz = policy_for(settings).time_zone
    out = []
    for emp in directory.employees:
        linked = accounts.get(emp.employee_id)
        if linked is None or not linked[1] or not employee_active(emp, now, tz):
            continue
        out.append(Member(user_id=linked[0], employee=emp))
    return out


def stored_accounts(store: Store) -> dict[str, tuple[str, bool]]:
    with store.session() as session:
        rows = session.execute(select(AccountRow.employee_id, AccountRow.user_id,
                                      AccountRow.active, AccountRow.hold)).all()
    return {r[0]: (r[1], bool(r[2]) and not r[3]) for r in rows}


def accounts_after(plan: Plan, accounts: Mapping[str, tuple[str, bool]]
                   ) -> dict[str, tuple[str, bool]]:
    """The accounts as they will be once the account plan is applied (for `plan`)."""
    out = dict(accounts)
    for action in plan.actions:
        if isinstance(action, CreateAccount | LinkAccount | Reactivate):
            out[action.employee_id] = (action.user_id, True)
        elif isinstance(action, Deactivate):
            out[action.employee_id] = (action.user_id, False)
    return out


def rehire_times(store: Store, planned: Plan | None = None, now: datetime | None = None
                 ) -> dict[str, int]:
    """user ID -> ms of the latest reactivation (audit log), planned ones at `now`."""
    with store.session() as session:
        rows = session.execute(select(AuditRow.target, func.max(AuditRow.at))
                               .where(AuditRow.action == "account.reactivate")
                               .group_by(AuditRow.target)).all()
    out = {r[0]: int(r[1].replace(tzinfo=r[1].tzinfo or UTC).timestamp() * 1000)
           for r in rows}
    if planned is not None and now is not None:
        for action in planned.actions:
            if isinstance(action, Reactivate):
                out[action.user_id] = int(now.timestamp() * 1000)
    return out


def context_for(settings: Settings, directory: DirectoryRead,
                accounts: Mapping[str, tuple[str, bool]],
                rehired_at: Mapping[str, int] | None = None,
                policy: PolicySet | None = None) -> RoomPlanContext:

    bot = announcement_bot(settings, policy)

    held = {accounts[e][0] for e in directory.skipped_employee_ids if e in accounts}
    # Deactivation parts every room in the background (Synapse): removing them as well
    # would race it (and fail with "not in the room").
    held |= {user_id for user_id, active in accounts.values() if not active}
    held |= {user_id_for(lp, settings.server_name) for lp in directory.skipped_localparts}
    anonymous = [p for p in directory.problems if not p.employee_id and not p.localpart]
    return RoomPlanContext(server_name=settings.server_name,
                           service_user_id=settings.service_user_id,
                           protected=policy_for(settings).protected, held=frozenset(held),
                           removals_allowed=directory.complete and not anonymous,
                           rehired_at=dict(rehired_at or {}),
                           announcer=bot[0] if bot is not None else None)


RoomsRead = tuple[dict[str, ManagedRoom], dict[str, RoomState]]


async def read_rooms(settings: Settings, store: Store, admin: SynapseAdmin) -> RoomsRead | None:
    """The managed rooms and their state in Synapse; None when rooms are not managed.
    `sync` reads them while it reads the directory, and uses them when the account plan
    changes nothing (the rooms cannot have changed because of it)."""
    if settings.policies is None:
        return None
    managed = load_managed(store)
    return managed, await read_room_states(admin, managed, settings.sync.concurrency)


async def plan_room_changes(settings: Settings, policy: PolicySet, store: Store,
                            admin: SynapseAdmin, directory: DirectoryRead,
                            accounts: Mapping[str, tuple[str, bool]], now: datetime,
                            planned: Plan | None = None, read: RoomsRead | None = None
                            ) -> tuple[RoomPlan, dict[str, ManagedRoom], dict[str, RoomState]]:
    if read is not None:
        managed, states = read
    else:
        managed = load_managed(store)
        states = await read_room_states(admin, managed, settings.sync.concurrency)
    members = members_from(directory, accounts, settings, now)
    plan = plan_rooms(policy, members, managed, states,
                      context_for(settings, directory, accounts,
                                  rehire_times(store, planned, now), policy))
    return plan, managed, states


# --- the hooks sync.run calls ------------------------------------------------------------


async def plan_rooms_for_run(settings: Settings, store: Store, admin: SynapseAdmin,
                             directory: DirectoryRead, account_plan: Plan,
                             now: datetime, read: RoomsRead | None = None
                             ) -> RoomOutcome | None:
    """Dry run: what the room part of `sync` would do after the account plan."""
    policy = load_room_policy(settings)
    if policy is None:
        return None
    accounts = accounts_after(account_plan, stored_accounts(store))
    plan, _, _ = await plan_room_changes(settings, policy, store, admin, directory, accounts,
                                         now, account_plan, read)
    return RoomOutcome(plan=plan)


async def sync_rooms_for_run(settings: Settings, store: Store, admin: SynapseAdmin,
                             directory: DirectoryRead, *, run_id: int, actor: str,
                             progress: bool, now: datetime,
                             read: RoomsRead | None = None) -> RoomOutcome | None:
    """Plan against the accounts as now stored (after the account changes) and apply.
    `read`: the rooms as read during this run, when no account change came since."""
    policy = load_room_policy(settings)
    if policy is None:
        return None
    plan, managed, states = await plan_room_changes(settings, policy, store, admin, directory,
                                                    stored_accounts(store), now, read=read)
    # Before this run's own intents: what an interrupted run left undecided.
    late = record_late_changes(store, managed, states, service_user_id=settings.service_user_id,
                               run_id=run_id)
    _record_on_removed(store, policy, managed)
    bot = announcement_bot(settings, policy)
    bot_adds = [a for a in plan.actions
                if bot is not None and isinstance(a, AddMember) and a.user_id == bot[0]]
    to_apply, not_applied = plan, []
    if bot is not None and bot_adds:
        try:
            await _ensure_bot_account(settings, store, admin, bot, run_id=run_id, actor=actor)
        except (HauspostError, OSError) as exc:
            # Everything else still applies; the bot's joins are reported as failed.
            logger.error("the announcement bot's account could not be made ready: %s", exc)
            to_apply = dataclasses.replace(plan, actions=tuple(
                a for a in plan.actions if a not in bot_adds))
            not_applied = [RoomFailure(a, f"the bot's account is not ready: {exc}")
                           for a in bot_adds]
    result = await apply_room_plan(
        to_apply, admin=admin, store=store, run_id=run_id, actor=actor,
        server_name=settings.server_name,
        room_ids={k: r.room_id for k, r in managed.items() if r.status != "released"},
        concurrency=settings.sync.concurrency, progress=progress)
    result.failures.extend(not_applied)
    return RoomOutcome(plan=plan, result=result, recorded_late=late)


async def _ensure_bot_account(settings: Settings, store: Store, admin: SynapseAdmin,
                              bot: tuple[str, AnnouncementConfig], *, run_id: int,
                              actor: str) -> None:
    """Create (or reactivate) the bot's account before the plan joins it to a room: the
    admin API can only join an existing account. Audited like `hauspost announce` does."""
    user_id, config = bot
    _password, change = await ensure_bot_account(admin, user_id, config.bot_display_name,
                                                 bot_password_file(settings))
    if change is not None:
        audit_bot_account_change(store, user_id, change, actor=actor, run_id=run_id,
                                 reason="the announcement bot posts in the read-only org rooms")


def _record_on_removed(store: Store, policy: PolicySet,
                       managed: Mapping[str, ManagedRoom]) -> None:
    """Remember each room's current `on_removed`, for the day it leaves the policy."""
    declared: dict[str, str] = {}
    for room in policy.rooms:
        for key in managed:
            if key == room.key or (room.for_each and key.startswith(room.key + "/")):
                declared[key] = room.on_removed
    changed = {k: v for k, v in declared.items() if managed[k].on_removed != v}
    if not changed:
        return
    with store.session() as session:
        for key, value in changed.items():
            session.execute(update(ManagedRoomRow).where(ManagedRoomRow.policy_key == key)
                            .values(on_removed=value, updated_at=datetime.now(UTC)))


def members_count(state: RoomState, service_user_id: str) -> int:
    """Joined members, the service account (every managed room's creator) not counted."""
    return sum(1 for user, m in state.members.items()
               if m.membership == "join" and user != service_user_id)


_SYMBOL = {"create_space": "+", "create_room": "+", "add_member": "+", "add_space_child": "+",
           "remove_member": "-", "remove_space_child": "-", "archive_room": "x",
           "release_room": "x"}


def render_room_plan(outcome: RoomOutcome) -> str:
    """The room part of `plan` / `sync` output, next to the account changes."""
    plan = outcome.plan
    lines = ["Rooms:"]
    if not plan.actions:
        lines.append("  No changes.")
    lines.extend(f"  {_SYMBOL.get(a.kind, '~')} {a.describe()}" for a in plan.actions)
    lines.extend(f"  ! {p}" for p in plan.problems)
    lines.extend(f"Note: {n}" for n in plan.notes)
    lines.extend(f"  failed: {f.action.describe()}: {f.error}" for f in outcome.result.failures)
    if outcome.recorded_late:
        lines.append(f"Recorded late: {outcome.recorded_late} room change(s) an interrupted "
                     "run made in Synapse without its audit row")
    counts = {k: v for k, v in plan.counts().items() if v}
    lines.append("Room counts: " + (", ".join(f"{k} {v}" for k, v in counts.items())
                                    or "no changes"))
    return "\n".join(lines)
