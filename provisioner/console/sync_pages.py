"""Sync (it): last runs, the pending plan as a readable diff, apply under the guard, the queue.

The plan is `run_sync(dry_run=True)`, what `hauspost plan` shows. Apply re-plans and refuses
when the plan differs from the one the admin reviewed (its fingerprint travels in the form),
then runs `run_sync` as `hauspost sync` does: the mass-deactivation guard holds unless the
admin typed the confirmation phrase the page names.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from provisioner.accounts.plan import MassDeactivationError
from provisioner.console.queries import recent_runs
from provisioner.console.web import PREFIX, Console, Ctx
from provisioner.directory.errors import DirectorySourceError
from provisioner.errors import HauspostError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.store.jobs import queue_status
from provisioner.store.run_lock import RunLockedError
from provisioner.sync.run import SyncOutcome, run_sync

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanView:
    """What the page shows of a dry run."""

    accounts: tuple[tuple[str, str], ...]  # (kind, description)
    rooms: tuple[tuple[str, str], ...]
    problems: tuple[tuple[str, str], ...]  # (location, message)
    notes: tuple[str, ...]
    deactivations: int
    guard_trips: bool

    @property
    def empty(self) -> bool:
        return not self.accounts and not self.rooms

    @property
    def fingerprint(self) -> str:
        text = "\n".join(f"{k}\t{d}" for k, d in (*self.accounts, ("--", "--"), *self.rooms))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def phrase(self) -> str:
        return f"deactivate {self.deactivations}"


def plan_view(outcome: SyncOutcome) -> PlanView:
    plan = outcome.plan
    rooms = outcome.rooms.plan.actions if outcome.rooms is not None else ()
    return PlanView(accounts=tuple((a.kind, a.describe()) for a in plan.actions),
                    rooms=tuple((a.kind, a.describe()) for a in rooms),
                    problems=tuple((p.location, p.message) for p in plan.problems),
                    notes=tuple(plan.notes), deactivations=len(plan.deactivations),
                    guard_trips=outcome.guard_would_trip)


def add_routes(app: web.Application, console: Console) -> None:
    def overview(ctx: Ctx, **values: Any) -> web.Response:
        with console.store.session() as session:
            queue = queue_status(session, recent=10)
            session.expunge_all()
        values.setdefault("view", None)
        values.setdefault("error", None)
        return console.render(ctx, "sync.html", runs=recent_runs(console.store), queue=queue,
                              **values)

    async def dry_run(ctx: Ctx) -> PlanView:
        token = await ensure_service_token(console.settings)
        outcome = await run_sync(console.settings, token, dry_run=True, actor=ctx.actor,
                                 progress=False, store=console.store)
        return plan_view(outcome)

    @console.guard("it")
    async def sync_page(ctx: Ctx) -> web.StreamResponse:
        return overview(ctx)

    @console.guard("it")
    async def plan_page(ctx: Ctx) -> web.StreamResponse:
        try:
            view = await dry_run(ctx)
        except (HauspostError, DirectorySourceError) as exc:
            return overview(ctx, error=str(exc))
        return overview(ctx, view=view)

    @console.guard("it")
    async def apply(ctx: Ctx) -> web.StreamResponse:
        page = PREFIX + "/sync"
        try:
            view = await dry_run(ctx)
        except (HauspostError, DirectorySourceError) as exc:
            return overview(ctx, error=str(exc))
        reviewed = str(ctx.form.get("fingerprint", ""))
        if not hmac.compare_digest(reviewed, view.fingerprint):
            return overview(ctx, view=view, error=ctx.t("plan_changed"))
        typed = str(ctx.form.get("confirmation", "")).strip()
        force = view.guard_trips and typed == view.phrase
        if view.guard_trips and not force:
            return overview(ctx, view=view, error=ctx.t("guard_refused"))
        try:
            token = await ensure_service_token(console.settings)
            outcome = await run_sync(console.settings, token, force=force, actor=ctx.actor,
                                     progress=False, store=console.store)
        except MassDeactivationError:
            return overview(ctx, view=view, error=ctx.t("guard_refused"))
        except RunLockedError as exc:
            return overview(ctx, view=view, error=str(exc))
        except (HauspostError, DirectorySourceError) as exc:
            return overview(ctx, error=str(exc))
        rooms = outcome.rooms
        applied = outcome.result.applied_total + (
            sum(rooms.result.applied.values()) if rooms is not None else 0)
        failed = len(outcome.result.failures) + (
            len(rooms.result.failures) if rooms is not None else 0)
        message = ctx.t("applied", applied=applied, total=len(view.accounts) + len(view.rooms),
                        failed=failed)
        logger.info("console: %s applied sync run %s (%s)", ctx.actor, outcome.run_id, message)
        return console.redirect(ctx, page, flash=message)

    app.router.add_get(PREFIX + "/sync", sync_page)
    app.router.add_get(PREFIX + "/sync/plan", plan_page)
    app.router.add_post(PREFIX + "/sync/apply", apply)
