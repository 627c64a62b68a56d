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
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Connection

from provisioner.errors import HauspostError
from provisioner.offboard import end_access
from provisioner.planner import (
    Action,
    CreateAccount,
    Deactivate,
    LinkAccount,
    Plan,
    Reactivate,
    ReleaseHold,
    UpdateDisplayName,
    UpdateEmail,
)
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.synapse_admin import SynapseAdmin

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyOptions:
    concurrency: int = 8
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
    def __init__(self, admin: SynapseAdmin, store: Store, run_id: int, actor: str,
                 options: ApplyOptions, clock: Callable[[], datetime]) -> None:
        self.admin = admin
        self.store = store
        self.run_id = run_id
        self.actor = actor
        self.options = options
        self.clock = clock
        self.result = ApplyResult()

    async def one(self, action: Action) -> None:
        """Make the change in Synapse, then store link, state and audit row in one commit."""
        now = self.clock()
        uid = action.user_id

        def audit(conn: Connection, action_name: str, reason: str,
                  details: dict[str, Any]) -> None:
            repo.add_audit(conn, actor=self.actor, action=action_name, target=uid, now=now,
                           reason=reason, run_id=self.run_id, details=details)

        if isinstance(action, CreateAccount):
            await self.admin.create_account(uid, display_name=action.display_name,
                                            email=action.email,
                                            password=self.options.initial_password)
            with self.store.transaction() as conn:
                repo.add_link(conn, employee_id=action.employee_id, user_id=uid, now=now,
                              run_id=self.run_id, display_name=action.display_name,
                              email=action.email)
                audit(conn, "account.create", "new employee in the directory",
                      {"employee_id": action.employee_id,
                       "display_name": action.display_name, "email": action.email,
                       "local_password": self.options.initial_password is not None})
        elif isinstance(action, LinkAccount):
            with self.store.transaction() as conn:
                repo.add_link(conn, employee_id=action.employee_id, user_id=uid, now=now,
                              run_id=self.run_id, display_name=None, email=None)
                audit(conn, "account.link", "existing account matches the employee's login",
                      {"employee_id": action.employee_id})
        elif isinstance(action, UpdateDisplayName):
            await self.admin.set_display_name(uid, action.new)
            with self.store.transaction() as conn:
                repo.update_account(conn, uid, display_name=action.new)
                audit(conn, "account.set_display_name",
                      "display name changed in the directory",
                      {"employee_id": action.employee_id,
                       "old": action.old, "new": action.new})
        elif isinstance(action, UpdateEmail):
            await self.admin.set_email(uid, action.new)
            with self.store.transaction() as conn:
                repo.update_account(conn, uid, email=action.new)
                audit(conn, "account.set_email", "e-mail changed in the directory",
                      {"employee_id": action.employee_id,
                       "old": action.old, "new": action.new})
        elif isinstance(action, Deactivate):
            devices_after = await end_access(self.admin, uid, erase=False)
            with self.store.transaction() as conn:
                repo.update_account(conn, uid, active=False, deactivated_at=now,
                                    deactivation_reason=action.reason.text)
                audit(conn, "account.deactivate", action.reason.text,
                      {"employee_id": action.employee_id,
                       "devices_deleted_after": devices_after})
        elif isinstance(action, Reactivate):
            await self.admin.reactivate(uid, display_name=action.display_name,
                                        email=action.email,
                                        password=self.options.initial_password)
            with self.store.transaction() as conn:
                repo.update_account(conn, uid, active=True, hold=False, deactivated_at=None,
                                    deactivation_reason=None,
                                    display_name=action.display_name, email=action.email)
                audit(conn, "account.reactivate",
                      "employee active in the directory again (rehire)",
                      {"employee_id": action.employee_id,
                       "display_name": action.display_name,
                       "email": action.email})
        elif isinstance(action, ReleaseHold):
            with self.store.transaction() as conn:
                repo.update_account(conn, uid, hold=False)
                audit(conn, "account.release_hold",
                      "the directory no longer lists the employee as active",
                      {"employee_id": action.employee_id})
        else:  # pragma: no cover - the planner makes no other actions
            raise TypeError(f"unknown action {action!r}")
        self.result.applied[action.kind] += 1


async def apply_plan(plan: Plan, *, admin: SynapseAdmin, store: Store, run_id: int,
                     actor: str, options: ApplyOptions,
                     clock: Callable[[], datetime] = _now) -> ApplyResult:
    """Apply every action of `plan`; the guard must have been checked by the caller."""
    applier = _Applier(admin, store, run_id, actor, options, clock)
    by_user: dict[str, list[Action]] = defaultdict(list)
    for action in plan.actions:
        by_user[action.user_id].append(action)
    semaphore = asyncio.Semaphore(options.concurrency)
    total = len(plan.actions)
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]applying"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False,
                        disable=not options.progress or total == 0)

    with progress:
        task = progress.add_task("apply", total=total)

        async def run_user(actions: list[Action]) -> None:
            async with semaphore:
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

        await asyncio.gather(*(run_user(actions) for actions in by_user.values()))
    return applier.result
