"""The worker of the durable queue: applies accepted HR changes, retrying until done.

Jobs run one at a time, oldest first, through the same code paths as the CLI:
- `offboard`  -> provisioner/accounts/offboard.py `offboard()` (what `hauspost offboard` runs);
- `reconcile` -> the planner for this one person, applied by provisioner/accounts/apply.py
                 (create / link / rename / e-mail / reactivate, audited like a sync), under
                 the sync's run lock (a `hauspost sync` at the same time is refused, or the
                 job waits for it);
- `sync`      -> provisioner/sync/run.py `run_sync()` (the directory sync);
- `rooms`     -> provisioner/service/room_job.py `run_room_sync()` (the room part alone,
                 after SCIM membership changes).

Synapse unreachable, 5xx or an unexpected error: the job stays pending and is tried again
after 1, 2, 4 … seconds up to `service.retry_max_seconds`. A refusal that no retry can
change (protected or unknown account, the mass-deactivation guard, a config error) fails
the job for good, audited as `service.job_failed` and shown by `hauspost status`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import httpx
from sqlalchemy.exc import SQLAlchemyError

from provisioner.accounts.apply import ApplyOptions, apply_plan
from provisioner.accounts.offboard import OffboardRefusedError, offboard
from provisioner.accounts.plan import Account, MassDeactivationError, Plan, build_plan
from provisioner.accounts.policy import policy_for
from provisioner.employee import DirectoryRead, Employee
from provisioner.errors import ConfigError, HauspostError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import AdminApiError, SynapseAdmin
from provisioner.service.room_job import run_room_sync
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.jobs import (
    KIND_OFFBOARD,
    KIND_RECONCILE,
    KIND_ROOMS,
    KIND_SYNC,
    backoff,
    due_jobs,
    mark_done,
    mark_failed,
    mark_retry,
    next_due_at,
)
from provisioner.store.run_lock import run_lock
from provisioner.store.service_models import ServiceJobRow
from provisioner.sync.run import initial_password, run_sync

logger = logging.getLogger(__name__)

#: Longest sleep between two looks at the queue when nothing wakes the worker.
IDLE_POLL_SECONDS = 30.0


class PermanentJobError(HauspostError):
    """No retry can make this job succeed."""


def is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, OffboardRefusedError | ConfigError | MassDeactivationError |
                  PermanentJobError):
        return True
    # 4xx from the admin API means the request itself is wrong; 401/403/429 may heal.
    return isinstance(exc, AdminApiError) and 400 <= exc.status < 500 and exc.status not in (
        401, 403, 408, 429)


class JobWorker:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._wakeup = asyncio.Event()
        self._admin: SynapseAdmin | None = None
        self._token: str | None = None
        self.applied = 0

    def wake(self) -> None:
        self._wakeup.set()

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.aclose()
            self._admin = None

    async def _get_admin(self) -> tuple[SynapseAdmin, str]:
        if self._admin is None or self._token is None:
            token = await ensure_service_token(self.settings)
            # One quick retry inside; the queue's own backoff handles longer outages.
            self._admin = SynapseAdmin(self.settings.homeserver_url, token, timeout=15.0,
                                       max_retries=1, backoff=0.2)
            self._token = token
        return self._admin, self._token

    async def _reset_admin(self) -> None:
        await self.close()
        self._token = None

    # --- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        outage = 0
        while not stop.is_set():
            self._wakeup.clear()
            try:
                ran = await self.run_due(stop)
                if ran:
                    outage = 0
                    continue
                with self.store.session() as session:
                    due = next_due_at(session)
                outage = 0
            except SQLAlchemyError as exc:
                # The store is gone (a database restart): the jobs stay pending in it, so
                # wait and look again; the worker must outlive the outage, not end with it.
                outage += 1
                timeout = backoff(outage, self.settings.service.retry_base_seconds,
                                  self.settings.service.retry_max_seconds)
                logger.error("the store is not available (%s: %s); looking again in %.0f s",
                             type(exc).__name__, str(exc).splitlines()[0], timeout)
                due = None
            else:
                timeout = IDLE_POLL_SECONDS
            if due is not None:
                timeout = max(0.0, min(timeout, (due - self.clock()).total_seconds()))
            stop_wait = asyncio.ensure_future(stop.wait())
            wake_wait = asyncio.ensure_future(self._wakeup.wait())
            try:
                await asyncio.wait({stop_wait, wake_wait}, timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
                wake_wait.cancel()
        await self.close()

    async def run_due(self, stop: asyncio.Event | None = None) -> int:
        """Run the jobs due now; returns how many were tried."""
        with self.store.session() as session:
            jobs = due_jobs(session, self.clock())
            for job in jobs:
                session.expunge(job)
        for job in jobs:
            if stop is not None and stop.is_set():
                break
            await self.run_one(job)
        return len(jobs)

    async def run_one(self, job: ServiceJobRow) -> None:
        try:
            await self._dispatch(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, HauspostError) \
                else str(exc)
            now = self.clock()
            if is_permanent(exc):
                logger.error("job %d (%s %s) failed for good: %s", job.id, job.kind,
                             job.target, error)
                with self.store.session() as session:
                    mark_failed(session, job.id, now, error)
                return
            if isinstance(exc, AdminApiError) and exc.status == 401:
                await self._reset_admin()
            if not isinstance(exc, HauspostError | httpx.TransportError):
                logger.exception("job %d (%s %s) raised", job.id, job.kind, job.target)
            service = self.settings.service
            with self.store.session() as session:
                when = mark_retry(session, job.id, now, error, base=service.retry_base_seconds,
                                  maximum=service.retry_max_seconds)
            logger.warning("job %d (%s %s) will be retried at %s: %s", job.id, job.kind,
                           job.target, when.isoformat(timespec="seconds"), error)
            return
        with self.store.session() as session:
            mark_done(session, job.id, self.clock())
        self.applied += 1
        logger.info("job %d (%s %s) done", job.id, job.kind, job.target)

    async def _dispatch(self, job: ServiceJobRow) -> None:
        if job.kind == KIND_OFFBOARD:
            await self._offboard(job)
        elif job.kind == KIND_RECONCILE:
            await self._reconcile(job)
        elif job.kind == KIND_SYNC:
            await self._sync(job)
        elif job.kind == KIND_ROOMS:
            await self._rooms(job)
        else:
            raise PermanentJobError(f"unknown job kind {job.kind!r}")

    # --- handlers ---------------------------------------------------------------------

    async def _offboard(self, job: ServiceJobRow) -> None:
        admin, _ = await self._get_admin()
        payload = job.payload or {}
        target = str(payload.get("user_id") or payload.get("employee_id") or job.target)
        result = await offboard(admin, self.store, target, server_name=self.settings.server_name,
                                protected=policy_for(self.settings).protected,
                                reason=job.reason or "offboarded by HR", erase=False,
                                actor=job.actor, wait_for_rooms=False,
                                record=lambda session: mark_done(session, job.id, self.clock()))
        logger.info("offboarded %s (job %d): access ended after %.0f ms", result.user_id, job.id,
                    result.access_ended_seconds * 1000)

    async def _reconcile(self, job: ServiceJobRow) -> None:
        # Under the sync's lock: a directory sync running now may plan the same account
        # (SCIM is one of its sources). Held, the job is retried after the usual backoff.
        with run_lock(self.store, "sync", holder=job.actor):
            await self._reconcile_locked(job)

    async def _reconcile_locked(self, job: ServiceJobRow) -> None:
        admin, _ = await self._get_admin()
        p = job.payload or {}
        person = Employee(employee_id=str(p["employee_id"]), localpart=str(p["localpart"]),
                          display_name=str(p["display_name"]), email=p.get("email"))
        user_id = str(p["user_id"])
        state = await admin.get_account(user_id)
        accounts = [] if state is None else [Account(user_id=state.user_id,
                                                     display_name=state.display_name,
                                                     deactivated=state.deactivated,
                                                     admin=state.admin)]
        with self.store.session() as session:
            links = repo.load_links(session)
        if p.get("reactivate"):
            # The SCIM client that offboarded the person now says they are back.
            links = [replace(lk, hold=False) if lk.employee_id == person.employee_id else lk
                     for lk in links]
        now = self.clock()
        plan = build_plan(DirectoryRead(employees=(person,), source="scim"), links, accounts,
                          policy_for(self.settings), now)
        mine = tuple(a for a in plan.actions if a.employee_id == person.employee_id)
        if plan.problems:
            raise PermanentJobError("; ".join(str(pr) for pr in plan.problems))
        if not mine:
            return
        with self.store.session() as session:
            run_id = repo.start_run(session, kind="scim", actor=job.actor, now=now,
                                    dry_run=False, forced=False).id
        result = await apply_plan(
            Plan(actions=mine), admin=admin, store=self.store, run_id=run_id, actor=job.actor,
            options=ApplyOptions(concurrency=1, initial_password=initial_password(self.settings),
                                 progress=False))
        with self.store.session() as session:
            repo.finish_run(session, run_id, now=self.clock(),
                            status="failed" if result.failures else "ok",
                            summary={"applied": dict(result.applied),
                                     "failures": len(result.failures), "job_id": job.id})
        if result.failures:
            raise HauspostError(result.failures[0].error)

    async def _sync(self, job: ServiceJobRow) -> None:
        _, token = await self._get_admin()
        outcome = await run_sync(self.settings, token, actor=job.actor, progress=False,
                                 store=self.store)
        if outcome.result.failures:
            raise HauspostError(f"sync run {outcome.run_id}: {len(outcome.result.failures)} "
                                "change(s) failed")

    async def _rooms(self, job: ServiceJobRow) -> None:
        _, token = await self._get_admin()
        outcome = await run_room_sync(self.settings, self.store, token, actor=job.actor)
        if outcome is not None and outcome.result.failures:
            raise HauspostError(f"{len(outcome.result.failures)} room change(s) failed: "
                                f"{outcome.result.failures[0].error}")
