"""One `plan` or `sync` run: read the directory, read Synapse and the store, plan, guard,
apply, record. The adapters around the pure planner."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provisioner.accounts.apply import ApplyOptions, ApplyResult, apply_plan
from provisioner.accounts.plan import (
    Account,
    MassDeactivationError,
    Plan,
    PlanPolicy,
    build_plan,
    check_guard,
    guard_trips,
)
from provisioner.accounts.policy import policy_for
from provisioner.directory.read import read_directory
from provisioner.employee import DirectoryRead
from provisioner.errors import ConfigError, HauspostError
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.rooms import run as room_sync
from provisioner.settings import Settings
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.run_lock import run_lock

logger = logging.getLogger(__name__)

DirectoryReader = Callable[[Settings], DirectoryRead]


def initial_password(settings: Settings) -> str | None:
    path = settings.sync.initial_password_file
    if path is None:
        return None
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}",
                          file=str(settings.file), key="sync.initial_password_file") from None
    if not value:
        raise ConfigError(f"{path} is empty", file=str(settings.file),
                          key="sync.initial_password_file")
    return value


@dataclass
class SyncOutcome:
    plan: Plan
    dry_run: bool
    run_id: int | None = None
    result: ApplyResult = field(default_factory=ApplyResult)
    #: Admin-API writes this run made (0 for a dry run and for a no-op sync).
    writes: int = 0
    seconds: float = 0.0
    guard_would_trip: bool = False
    #: Seconds per phase (directory_read, synapse_list, plan, store_employees, apply).
    phases: dict[str, float] = field(default_factory=dict)
    #: The room part of the run (docs/org-rooms.md); None when rooms are not managed.
    rooms: room_sync.RoomOutcome | None = None

    @property
    def status(self) -> str:
        if self.result.failures or (self.rooms and self.rooms.result.failures):
            return "failed"
        if self.plan.problems:
            return "partial"
        return "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "status": self.status,
            "plan": self.plan.to_json(),
            "applied": dict(self.result.applied),
            "failures": [{"action": f.action.to_json(), "error": f.error}
                         for f in self.result.failures],
            "synapse_writes": self.writes,
            "seconds": round(self.seconds, 3),
            "guard_would_trip": self.guard_would_trip,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "rooms": self.rooms.to_json() if self.rooms else None,
        }


async def _current_accounts(admin: SynapseAdmin) -> list[Account]:
    states = await admin.list_accounts(page_size=1000)
    return [Account(user_id=s.user_id, display_name=s.display_name, deactivated=s.deactivated,
                    admin=s.admin) for s in states]


async def read_and_plan(settings: Settings, store: Store, admin: SynapseAdmin,
                        reader: DirectoryReader, policy: PlanPolicy, now: datetime,
                        phases: dict[str, float]) -> tuple[DirectoryRead, Plan]:
    """Read the directory (in a thread) while listing Synapse's accounts, then plan."""
    t0 = time.monotonic()

    async def timed_read() -> DirectoryRead:
        directory = await asyncio.to_thread(reader, settings)
        phases["directory_read"] = time.monotonic() - t0
        return directory

    async def timed_list() -> list[Account]:
        accounts = await _current_accounts(admin)
        phases["synapse_list"] = time.monotonic() - t0
        return accounts

    directory, accounts = await asyncio.gather(timed_read(), timed_list())
    t1 = time.monotonic()
    with store.session() as session:
        links = repo.load_links(session)
    plan = build_plan(directory, links, accounts, policy, now)
    phases["plan"] = time.monotonic() - t1
    logger.info("read %d employees (%d problems) and %d accounts, planned %d actions: %s",
                len(directory.employees), len(directory.problems), len(accounts),
                len(plan.actions), ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
    return directory, plan


async def _unless_failed(read: asyncio.Task[room_sync.RoomsRead | None]
                         ) -> room_sync.RoomsRead | None:
    """The early room read, or None when it failed (the room part reads again then, after
    the account changes, as without the early read)."""
    try:
        return await read
    except HauspostError as exc:
        logger.info("reading the rooms early failed (%s); reading them again later", exc)
        return None


async def run_sync(settings: Settings, token: str, *, dry_run: bool = False,
                   force: bool = False, now: datetime | None = None, actor: str,
                   progress: bool = True, reader: DirectoryReader = read_directory,
                   store: Store | None = None, if_changed: bool = False,
                   batched_accounts: bool = True) -> SyncOutcome:
    """Plan, and unless `dry_run`, apply. Raises MassDeactivationError (nothing changed)
    when the guard trips and `force` is not given. With `if_changed`, a plan without
    account or room changes starts no run (the outcome has no `run_id`). Without
    `batched_accounts`, new accounts go through the admin API even where Synapse has the
    batched path (benchmarks and tests compare the two)."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    # A broken room policy stops the run before anything changes (file:line errors).
    room_sync.load_room_policy(settings)
    own_store = store is None
    store = store or open_store(settings.store_url)
    try:
        if dry_run:
            return await _plan_only(settings, token, store, now, reader, started)
        with run_lock(store, "sync", holder=actor):
            return await _sync_locked(settings, token, store, now, reader, started,
                                      force=force, actor=actor, progress=progress,
                                      if_changed=if_changed,
                                      batched_accounts=batched_accounts)
    finally:
        if own_store:
            store.close()


async def _plan_only(settings: Settings, token: str, store: Store, now: datetime,
                     reader: DirectoryReader, started: float) -> SyncOutcome:
    policy = policy_for(settings)
    phases: dict[str, float] = {}
    async with SynapseAdmin(settings.homeserver_url, token) as admin:
        directory, plan = await read_and_plan(settings, store, admin, reader, policy, now,
                                              phases)
        rooms = await room_sync.plan_rooms_for_run(settings, store, admin, directory, plan, now)
        writes = admin.writes
    return SyncOutcome(plan=plan, dry_run=True, writes=writes, phases=phases, rooms=rooms,
                       seconds=time.monotonic() - started,
                       guard_would_trip=guard_trips(plan, policy.guard))


async def _sync_locked(settings: Settings, token: str, store: Store, now: datetime,
                       reader: DirectoryReader, started: float, *, force: bool, actor: str,
                       progress: bool, if_changed: bool,
                       batched_accounts: bool = True) -> SyncOutcome:
    policy = policy_for(settings)
    phases: dict[str, float] = {}
    async with SynapseAdmin(settings.homeserver_url, token) as admin:
        # The rooms are read while the directory is: a run without account changes (the
        # usual one) plans its rooms from this read.
        rooms_read = asyncio.create_task(room_sync.read_rooms(settings, store, admin))
        try:
            directory, plan = await read_and_plan(settings, store, admin, reader, policy,
                                                  now, phases)
        except BaseException:
            rooms_read.cancel()
            await asyncio.gather(rooms_read, return_exceptions=True)
            raise
        read = await _unless_failed(rooms_read) if not plan.has_changes else None
        if read is None and not rooms_read.done():
            rooms_read.cancel()
            await asyncio.gather(rooms_read, return_exceptions=True)
        if if_changed and not plan.has_changes:
            # Account changes always need a run; without them, only room changes do.
            rooms = await room_sync.plan_rooms_for_run(settings, store, admin, directory,
                                                       plan, now, read)
            if rooms is None or not rooms.plan.has_changes:
                return SyncOutcome(plan=plan, dry_run=False, rooms=rooms, phases=phases,
                                   writes=admin.writes, seconds=time.monotonic() - started)
        tripped = guard_trips(plan, policy.guard)
        try:
            check_guard(plan, policy.guard, force=force)
        except MassDeactivationError as exc:
            with store.session() as session:
                run = repo.start_run(session, kind="sync", actor=actor, now=now,
                                     dry_run=False, forced=False)
                repo.append_audit(session, actor=actor, action="sync.guard_refused",
                                  target=directory.source or "directory", now=now,
                                  run_id=run.id, reason=str(exc),
                                  details={"deactivations": exc.count,
                                           "managed_active": exc.managed})
                repo.finish_run(session, run.id, now=datetime.now(UTC), status="refused",
                                summary={"counts": plan.counts()})
            raise
        t_save = time.monotonic()
        with store.session() as session:
            run = repo.start_run(session, kind="sync", actor=actor, now=now, dry_run=False,
                                 forced=force)
            run_id = run.id
            repo.save_employees(session, directory.employees, source=directory.source,
                                now=now)
            if force and tripped:
                repo.append_audit(session, actor=actor, action="sync.guard_overridden",
                                  target=directory.source or "directory", now=now,
                                  run_id=run_id, reason="--force",
                                  details={"deactivations": len(plan.deactivations),
                                           "managed_active": plan.managed_active})
        options = ApplyOptions(concurrency=settings.sync.concurrency,
                               initial_password=initial_password(settings),
                               progress=progress, batched_accounts=batched_accounts)
        phases["store_employees"] = time.monotonic() - t_save
        outcome = SyncOutcome(plan=plan, dry_run=False, run_id=run_id,
                              guard_would_trip=tripped, phases=phases)
        completed = False
        t_apply = time.monotonic()
        try:
            outcome.result = await apply_plan(plan, admin=admin, store=store, run_id=run_id,
                                              actor=actor, options=options)
            phases["apply"] = time.monotonic() - t_apply
            t_rooms = time.monotonic()
            outcome.rooms = await room_sync.sync_rooms_for_run(
                settings, store, admin, directory, run_id=run_id, actor=actor,
                progress=progress, now=now, read=read)
            phases["rooms"] = time.monotonic() - t_rooms
            completed = True
        finally:
            outcome.writes = admin.writes
            outcome.seconds = time.monotonic() - started
            with store.session() as session:
                repo.finish_run(session, run_id, now=datetime.now(UTC),
                                status=outcome.status if completed else "aborted",
                                summary={"counts": plan.counts(),
                                         "applied": dict(outcome.result.applied),
                                         "failures": len(outcome.result.failures),
                                         "problems": len(plan.problems),
                                         "synapse_writes": outcome.writes,
                                         "rooms": (outcome.rooms.plan.counts()
                                                   if outcome.rooms else None)})
    return outcome
