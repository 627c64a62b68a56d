"""People (hr, it): search, one page per person; offboarding and rehire (hr).

Offboarding runs `offboard_with_settings`, the code `hauspost offboard` runs; a rehire lifts
the offboarding hold (`release_offboarding_hold`) and queues the same one-person reconcile
job a SCIM rehire queues, so the service's worker reactivates the account.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import select

from provisioner.accounts.offboard import (
    OffboardRefusedError,
    RehireRefusedError,
    offboard_with_settings,
    release_offboarding_hold,
)
from provisioner.console.queries import PeopleIndex, person_detail, search_people
from provisioner.console.web import PREFIX, Console, Ctx
from provisioner.errors import HauspostError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.store.jobs import KIND_RECONCILE, JobSpec, enqueue
from provisioner.store.rooms_models import ManagedRoomRow

logger = logging.getLogger(__name__)

MAX_QUERY = 200
MAX_REASON = 500


def add_routes(app: web.Application, console: Console, *,
               on_queued: Callable[[], None]) -> None:
    index = PeopleIndex()

    @console.guard("hr", "it")
    async def people(ctx: Ctx) -> web.StreamResponse:
        query = ctx.request.query.get("q", "")[:MAX_QUERY]
        result = search_people(console.store, query, index=index)
        return console.render(ctx, "people.html", query=query, result=result)

    async def joined_rooms(user_id: str) -> list[tuple[str, str | None]]:
        token = await ensure_service_token(console.settings)
        async with SynapseAdmin(console.settings.homeserver_url, token) as admin:
            rooms = await admin.joined_rooms(user_id)
        with console.store.session() as session:
            keys = dict(session.execute(select(ManagedRoomRow.room_id, ManagedRoomRow.policy_key)
                                        .where(ManagedRoomRow.room_id.in_(rooms))).all())
        return sorted(((r, keys.get(r)) for r in rooms), key=lambda x: (x[1] is None, x[1] or x[0]))

    @console.guard("hr", "it")
    async def person(ctx: Ctx) -> web.StreamResponse:
        employee_id = ctx.request.match_info["employee_id"]
        detail = person_detail(console.store, employee_id)
        if detail is None:
            return console.refuse(ctx, 404, "not_found")
        rooms: list[tuple[str, str | None]] | None = None
        if detail.account is not None and detail.account.active:
            try:
                rooms = await joined_rooms(detail.account.user_id)
            except (HauspostError, OSError) as exc:
                logger.error("console: rooms of %s not readable: %s", detail.account.user_id,
                             exc)
        return console.render(ctx, "person.html", d=detail, rooms=rooms,
                              confirm=ctx.request.query.get("confirm") == "offboard")

    @console.guard("hr")
    async def offboard(ctx: Ctx) -> web.StreamResponse:
        started = time.monotonic()
        employee_id = ctx.request.match_info["employee_id"]
        page = f"{PREFIX}/people/{employee_id}"
        reason = str(ctx.form.get("reason", "")).strip()[:MAX_REASON]
        if ctx.form.get("confirm") != "yes" or not reason:
            return console.redirect(ctx, page + "?confirm=offboard",
                                    flash=ctx.t("reason_required") if not reason else None)
        try:
            result = await offboard_with_settings(
                console.settings, employee_id, reason=reason, erase=False, actor=ctx.actor,
                wait_for_rooms=True, started=started)
        except OffboardRefusedError as exc:
            return console.redirect(ctx, page, flash=str(exc))
        ended = console.sessions.end_user(result.user_id)
        logger.info("console: %s offboarded %s in %.1f ms (%d console session(s) ended)",
                    ctx.actor, result.user_id, result.access_ended_seconds * 1000, ended)
        if result.already_deactivated:
            message = ctx.t("already_deactivated")
        else:
            message = ctx.t("access_ended", ms=f"{result.access_ended_seconds * 1000:.0f}")
        message += " " + (ctx.t("rooms_remaining", count=len(result.rooms_remaining))
                          if result.rooms_remaining else ctx.t("rooms_left"))
        return console.redirect(ctx, page, flash=message)

    @console.guard("hr")
    async def rehire(ctx: Ctx) -> web.StreamResponse:
        employee_id = ctx.request.match_info["employee_id"]
        page = f"{PREFIX}/people/{employee_id}"
        reason = str(ctx.form.get("reason", "")).strip()[:MAX_REASON] or "rehire"
        now = datetime.now(UTC)
        try:
            user_id = release_offboarding_hold(console.store, employee_id, reason=reason,
                                               actor=ctx.actor, now=now)
        except RehireRefusedError as exc:
            return console.redirect(ctx, page, flash=str(exc))
        detail = person_detail(console.store, employee_id)
        assert detail is not None  # noqa: S101 - the hold was just lifted on it
        emp = detail.employee
        with console.store.session() as session:
            job = enqueue(session, JobSpec(
                kind=KIND_RECONCILE, target=user_id, reason=reason,
                payload={"employee_id": emp.employee_id, "localpart": emp.localpart,
                         "display_name": emp.display_name, "email": emp.email,
                         "user_id": user_id, "reactivate": True}),
                actor=ctx.actor, source="console", now=now)
            job_id = job.id
        on_queued()
        return console.redirect(ctx, page, flash=ctx.t("rehired", job=job_id))

    app.router.add_get(PREFIX + "/people", people)
    app.router.add_get(PREFIX + "/people/{employee_id}", person)
    app.router.add_post(PREFIX + "/people/{employee_id}/offboard", offboard)
    app.router.add_post(PREFIX + "/people/{employee_id}/rehire", rehire)
