"""Apply a plan through the Synapse admin API: bounded concurrency, progress, one audit row
per applied change (with the run id), the store kept in step.

Actions for the same account run in plan order inside one task (a link must exist before
its e-mail is recorded); different accounts run concurrently, at most `concurrency` at a
time. Retries with backoff on 429 / 5xx live in `SynapseAdmin.request`. A failed action is
reported and the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from provisioner.accounts.offboard import end_access
from provisioner.accounts.plan import (
    Action,
    CreateAccount,
    Deactivate,
    DeactivateUnexplained,
    LinkAccount,
    Plan,
    Reactivate,
    ReleaseHold,
    UpdateDisplayName,
    UpdateEmail,
)
from provisioner.errors import HauspostError
from provisioner.homeserver.synapse_admin import SynapseAdmin, until_unreachable
from provisioner.store import Store
from provisioner.store.change_writer import Change, ChangeWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyOptions:
    concurrency: int = 8
    #: Create new accounts through Synapse's batched path (synapse_modules.accounts_batch)
    #: when it answers; the admin API otherwise.
    batched_accounts: bool = True
    #: Batches in flight at once on the batched path.
    batches_in_flight: int = 2
    #: Demo / no-LDAP mode only: the password new and reactivated accounts get. None: no
    #: local password (LDAP login).
    initial_password: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class Failure:
    action: Action
    error: str


@dataclass
class ApplyResult:
    applied: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    @property
    def applied_total(self) -> int:
        return sum(self.applied.values())


def _now() -> datetime:
    return datetime.now(UTC)


class _Applier:
    def __init__(self, admin: SynapseAdmin, writer: ChangeWriter, run_id: int, actor: str,
                 options: ApplyOptions, clock: Callable[[], datetime]) -> None:
        self.admin = admin
        self.writer = writer
        self.run_id = run_id
        self.actor = actor
        self.options = options
        self.clock = clock
        self.result = ApplyResult()
        # Bounds admin-API requests only: waiting for the store commit takes no slot.
        self.slots = asyncio.Semaphore(options.concurrency)

    def _audit(self, action: Action, now: datetime, name: str, reason: str,
               **details: Any) -> dict[str, Any]:
        return {"at": now, "actor": self.actor, "action": name, "target": action.user_id,
                "reason": reason, "run_id": self.run_id,
                "details": {"employee_id": action.employee_id, **details}}

    def _link(self, action: Action, now: datetime, display_name: str | None,
              email: str | None) -> dict[str, Any]:
        return {"user_id": action.user_id, "employee_id": action.employee_id,
                "created_at": now, "created_run_id": self.run_id,
                "display_name": display_name, "email": email, "active": True, "hold": False}

    def created(self, action: CreateAccount) -> Change:
        """Link and audit row of an account Synapse has just created (either path)."""
        now = self.clock()
        return Change(
            link=self._link(action, now, action.display_name, action.email),
            audit=self._audit(action, now, "account.create", "new employee in the directory",
                              display_name=action.display_name, email=action.email,
                              local_password=self.options.initial_password is not None))

    def batch_entry(self, action: CreateAccount) -> dict[str, Any]:
        """The batched path's entry for `action`: what the admin API's PUT would send."""
        entry: dict[str, Any] = {"localpart": action.user_id[1:].partition(":")[0],
                                 "display_name": action.display_name, "email": action.email}
        if self.options.initial_password is not None:
            entry["password"] = self.options.initial_password
        return entry

    async def one(self, action: Action) -> None:
        """Make the change in Synapse, then commit link, state and audit row together."""
        uid = action.user_id
        change: Change
        if isinstance(action, CreateAccount):
            async with self.slots:
                await self.admin.create_account(uid, display_name=action.display_name,
                                                email=action.email,
                                                password=self.options.initial_password)
            change = self.created(action)
        elif isinstance(action, LinkAccount):
            now = self.clock()
            change = Change(
                link=self._link(action, now, None, None),
                audit=self._audit(action, now, "account.link",
                                  "existing account matches the employee's login"))
        elif isinstance(action, UpdateDisplayName):
            async with self.slots:
                await self.admin.set_display_name(uid, action.new)
            now = self.clock()
            change = Change(
                account_update=(uid, {"display_name": action.new}),
                audit=self._audit(action, now, "account.set_display_name",
                                  "display name changed in the directory",
                                  old=action.old, new=action.new))
        elif isinstance(action, UpdateEmail):
            async with self.slots:
                await self.admin.set_email(uid, action.new)
            now = self.clock()
            change = Change(
                account_update=(uid, {"email": action.new}),
                audit=self._audit(action, now, "account.set_email",
                                  "e-mail changed in the directory",
                                  old=action.old, new=action.new))
        elif isinstance(action, DeactivateUnexplained):
            # No stored account row: hauspost never made it. The audit row is the record.
            async with self.slots:
                devices_after = await end_access(self.admin, uid, erase=False)
            change = Change(audit=self._audit(action, self.clock(), "account.deactivate",
                                              action.reason.text, unexplained=True,
                                              devices_deleted_after=devices_after))
        elif isinstance(action, Deactivate):
            async with self.slots:
                devices_after = await end_access(self.admin, uid, erase=False)
            now = self.clock()
            change = Change(
                account_update=(uid, {"active": False, "deactivated_at": now,
                                      "deactivation_reason": action.reason.text}),
                audit=self._audit(action, now, "account.deactivate", action.reason.text,
                                  devices_deleted_after=devices_after))
        elif isinstance(action, Reactivate):
            async with self.slots:
                await self.admin.reactivate(uid, display_name=action.display_name,
                                            email=action.email,
                                            password=self.options.initial_password)
            now = self.clock()
            change = Change(
                account_update=(uid, {"active": True, "hold": False, "deactivated_at": None,
                                      "deactivation_reason": None,
                                      "display_name": action.display_name,
                                      "email": action.email}),
                audit=self._audit(action, now, "account.reactivate",
                                  "employee active in the directory again (rehire)",
                                  display_name=action.display_name, email=action.email))
        elif isinstance(action, ReleaseHold):
            now = self.clock()
            change = Change(
                account_update=(uid, {"hold": False}),
                audit=self._audit(action, now, "account.release_hold",
                                  "the directory no longer lists the employee as active"))
        else:  # pragma: no cover - the planner makes no other actions
            raise TypeError(f"unknown action {action!r}")
        await self.writer.commit(change)
        self.result.applied[action.kind] += 1


async def apply_plan(plan: Plan, *, admin: SynapseAdmin, store: Store, run_id: int,
                     actor: str, options: ApplyOptions,
                     clock: Callable[[], datetime] = _now) -> ApplyResult:
    """Apply every action of `plan`; the guard must have been checked by the caller."""
    by_user: dict[str, list[Action]] = defaultdict(list)
    for action in plan.actions:
        by_user[action.user_id].append(action)
    total = len(plan.actions)
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]applying"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False,
                        disable=not options.progress or total == 0)

    async with ChangeWriter(store) as writer:
        # Once Synapse has proved unreachable, every further call would only wait out its
        # own retries: stop calling. The next run plans what is left; nothing is lost.
        applier = _Applier(until_unreachable(admin), writer, run_id, actor, options, clock)
        with progress:
            task = progress.add_task("apply", total=total)

            async def run_user(actions: list[Action]) -> None:
                for index, action in enumerate(actions):
                    try:
                        await applier.one(action)
                    except HauspostError as exc:
                        logger.error("%s failed: %s", action.describe(), exc)
                        applier.result.failures.append(Failure(action, str(exc)))
                        # Later actions for this account depend on this one; skip them.
                        for skipped in actions[index + 1:]:
                            applier.result.failures.append(
                                Failure(skipped, f"skipped: an earlier change failed ({exc})"))
                        progress.advance(task, len(actions) - index)
                        return
                    progress.advance(task)

            batch_size = None
            # One new account gains nothing from a batch (a SCIM hire): the admin API.
            if options.batched_accounts and sum(
                    isinstance(actions[0], CreateAccount) for actions in by_user.values()) > 1:
                try:  # asked once per run; 404: the admin API, one account per request
                    batch_size = await applier.admin.accounts_batch_size()
                except HauspostError as exc:
                    logger.warning("cannot ask Synapse for its batched account path (%s); "
                                   "using the admin API", exc)
            if batch_size is None:
                await asyncio.gather(*(run_user(actions) for actions in by_user.values()))
            else:
                creating = [actions for actions in by_user.values()
                            if isinstance(actions[0], CreateAccount)]
                others = [actions for actions in by_user.values()
                          if not isinstance(actions[0], CreateAccount)]
                batches = [creating[i:i + batch_size]
                           for i in range(0, len(creating), batch_size)]
                in_flight = asyncio.Semaphore(max(1, options.batches_in_flight))

                async def run_batch(batch: list[list[Action]]) -> None:
                    async with in_flight:
                        await _create_batch(applier, batch, run_user, progress, task)

                await asyncio.gather(*(run_batch(b) for b in batches),
                                     *(run_user(actions) for actions in others))
    return applier.result


async def _create_batch(applier: _Applier, batch: list[list[Action]],
                        run_user: Callable[[list[Action]], Any], progress: Progress,
                        task: Any) -> None:
    """Create the first action's account of each user in one request, then commit each
    created one exactly as the admin-API path does and go on with that user's actions."""
    creates = [cast(CreateAccount, actions[0]) for actions in batch]
    try:
        results = await applier.admin.create_accounts_batch(
            [applier.batch_entry(a) for a in creates])
    except HauspostError as exc:
        logger.error("a batch of %d account creations failed: %s", len(creates), exc)
        results = [{"error": str(exc)} for _ in creates]
    created: list[list[Action]] = []
    for actions, action, result in zip(batch, creates, results, strict=True):
        error = result.get("error")
        if error is None and result.get("user_id") != action.user_id:
            error = f"Synapse created {result.get('user_id')!r} instead"
        if error is not None:
            text = f"Synapse's batched account path: {error}" + (
                f" ({result['errcode']})" if result.get("errcode") else "")
            logger.error("%s failed: %s", action.describe(), text)
            applier.result.failures.append(Failure(action, text))
            applier.result.failures.extend(
                Failure(skipped, f"skipped: an earlier change failed ({text})")
                for skipped in actions[1:])
            progress.advance(task, len(actions))
            continue
        created.append(actions)

    async def record(actions: list[Action]) -> None:
        # All at once: the writer gathers them into one transaction.
        await applier.writer.commit(applier.created(cast(CreateAccount, actions[0])))
        applier.result.applied[actions[0].kind] += 1
        progress.advance(task)
        if actions[1:]:
            await run_user(actions[1:])

    await asyncio.gather(*(record(actions) for actions in created))
