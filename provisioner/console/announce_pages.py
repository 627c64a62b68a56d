"""Announcements (comms; reach also for auditors): compose with preview, send, reach.

Sending runs `announce_with_settings`, what `hauspost announce` runs: targets, deadline and
body are checked before the bot logs in, so bad input sends nothing. The reach page renders
the report model `hauspost announcements report` renders; it reloads itself every 30 s
(no JavaScript needed) while acknowledgements come in through the service's tick. An
announcement whose sending was interrupted or failed says so in the list and on its reach
page, where comms can finish it (`resume_with_settings`, what `hauspost announce --resume`
runs); sending it again is refused.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from markupsafe import Markup
from sqlalchemy import func, select

from provisioner.announcements.compose import (
    AnnouncementInputError,
    Attachment,
    check_attachment,
)
from provisioner.announcements.compose import render_html as markdown_html
from provisioner.announcements.report import (
    Report,
    UnknownAnnouncementError,
    ack_chart_svg,
    build_report,
    record_report,
    render_csv,
    render_html,
)
from provisioner.announcements.resume import resume_with_settings
from provisioner.announcements.send import announce_with_settings
from provisioner.announcements.sending_state import (
    UNFINISHED,
    UnfinishedAnnouncementError,
    statuses,
)
from provisioner.announcements.targets import TargetError
from provisioner.console.web import PREFIX, Console, Ctx, Upload
from provisioner.errors import HauspostError
from provisioner.store.announcement_models import AnnouncementRow, NoticeRow, RecipientRow
from provisioner.store.models import AccountRow, EmployeeRow
from provisioner.store.run_lock import RunLockedError

logger = logging.getLogger(__name__)

MAX_BODY = 20_000
#: Names listed on the reach page; all of them are in the CSV and the printable report.
SHOWN_MISSING = 300


def target_options(console: Console) -> list[tuple[str, str]]:
    """(value, label) for every target the org offers: all, departments, locations, groups."""
    with console.store.session() as session:
        rows = session.execute(
            select(EmployeeRow.department, EmployeeRow.location, EmployeeRow.groups)
            .join(AccountRow, AccountRow.employee_id == EmployeeRow.employee_id)
            .where(EmployeeRow.status == "active", AccountRow.active.is_(True))).all()
    departments = sorted({r[0] for r in rows if r[0]})
    locations = sorted({r[1] for r in rows if r[1]})
    groups = sorted({g for r in rows for g in (r[2] or ())})
    return ([("all", "all")] + [(f"department:{d}", d) for d in departments]
            + [(f"location:{loc}", loc) for loc in locations]
            + [(f"group:{g}", g) for g in groups])


class ReportCache:
    """The last report per announcement, reused while its recipients and notices are
    unchanged (one aggregate query): the reach page reloads every 30 s on many screens,
    and 10,000 recipients take a fifth of a second to load."""

    def __init__(self) -> None:
        self._reports: dict[int, tuple[tuple[Any, ...], Report]] = {}

    @staticmethod
    def fingerprint(console: Console, announcement_id: int) -> tuple[Any, ...]:
        with console.store.session() as session:
            recipients = session.execute(
                select(func.count(), func.count(RecipientRow.seen_at),
                       func.count(RecipientRow.acked_at), func.max(RecipientRow.acked_at),
                       func.max(RecipientRow.seen_at), func.sum(RecipientRow.devices))
                .where(RecipientRow.announcement_id == announcement_id)).one()
            notices = session.execute(
                select(func.count(), func.count(NoticeRow.sent_at), func.max(NoticeRow.id))
                .where(NoticeRow.announcement_id == announcement_id)).one()
            announcement = session.execute(
                select(AnnouncementRow.status, AnnouncementRow.purged_at,
                       AnnouncementRow.delivered_total)
                .where(AnnouncementRow.id == announcement_id)).one_or_none()
        return (*recipients, *notices, announcement)

    def get(self, console: Console, announcement_id: int) -> Report:
        key = self.fingerprint(console, announcement_id)
        cached = self._reports.get(announcement_id)
        now = datetime.now(UTC)
        # One still "sending" is built again: its process may have died since (interrupted),
        # which changes nothing in the store.
        if cached is not None and cached[0] == key and cached[1].status != "sending":
            return replace(cached[1], as_of=now)
        report = build_report(console.store, announcement_id, time_zone=console.time_zone,
                              as_of=now)
        self._reports[announcement_id] = (key, report)
        return report


def add_routes(app: web.Application, console: Console) -> None:
    cache = ReportCache()

    def compose_page(ctx: Ctx, *, status: int = 200, error: str | None = None,
                     preview: Markup | None = None) -> web.Response:
        with console.store.session() as session:
            rows = session.execute(
                select(AnnouncementRow.id, AnnouncementRow.title, AnnouncementRow.created_at,
                       AnnouncementRow.recipients_total, AnnouncementRow.requires_ack,
                       AnnouncementRow.deadline, AnnouncementRow.actor,
                       AnnouncementRow.status)
                .order_by(AnnouncementRow.id.desc()).limit(30)).all()
            shown = statuses(session, [(r.id, r.status) for r in rows])
        chosen = ctx.form.getall("targets") if hasattr(ctx.form, "getall") else []
        return console.render(ctx, "announcements.html", status=status, rows=rows,
                              statuses=shown,
                              options=target_options(console), chosen=list(chosen),
                              body=str(ctx.form.get("body", "")),
                              ack_by=str(ctx.form.get("ack_by", "")), error=error,
                              preview=preview, can_send="comms" in ctx.person.roles
                              if ctx.person else False,
                              max_upload_mb=console.max_upload_bytes // (1024 * 1024))

    def parse_ack_by(value: str) -> datetime | None:
        """`datetime-local` input: the company's time, unless an offset is given."""
        value = value.strip()
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise AnnouncementInputError(f"ack by: expected a date and time like "
                                         f"2026-12-07T12:00, got {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=console.time_zone)

    @console.guard("comms", "auditor")
    async def index(ctx: Ctx) -> web.StreamResponse:
        return compose_page(ctx)

    @console.guard("comms")
    async def send(ctx: Ctx) -> web.StreamResponse:
        body = str(ctx.form.get("body", ""))[:MAX_BODY]
        targets = [str(t) for t in ctx.form.getall("targets")] \
            if hasattr(ctx.form, "getall") else []
        if ctx.form.get("do") == "preview":
            return compose_page(ctx, preview=Markup(markdown_html(body)))  # noqa: S704 - escaped
        try:
            if not targets:
                raise TargetError("choose at least one target")
            upload = ctx.form.get("attachment")
            attachment: Attachment | None = None
            if isinstance(upload, Upload):
                limits = console.media_limits
                if limits is None:
                    raise AnnouncementInputError("attachments are off: the server's upload "
                                                 "limits cannot be read (see the log)")
                attachment = check_attachment(upload.filename, upload.data, limits)
            now = datetime.now(UTC)
            result = await announce_with_settings(
                console.settings, targets=targets, body=body,
                ack_by=parse_ack_by(str(ctx.form.get("ack_by", ""))), attachment=attachment,
                room=None, actor=ctx.actor, now=now)
        except (AnnouncementInputError, TargetError) as exc:
            return compose_page(ctx, status=400, error=str(exc))
        except (UnfinishedAnnouncementError, RunLockedError) as exc:
            return compose_page(ctx, status=409, error=str(exc))
        except HauspostError as exc:
            logger.error("console: announcement by %s failed: %s", ctx.actor, exc)
            return compose_page(ctx, status=502, error=str(exc))
        return console.redirect(ctx, f"{PREFIX}/announcements/{result.announcement_id}",
                                flash=ctx.t("sent", count=result.recipients))

    def report_of(ctx: Ctx) -> Report | None:
        try:
            return cache.get(console, int(ctx.request.match_info["id"]))
        except (ValueError, UnknownAnnouncementError):
            return None

    def reach_page(ctx: Ctx, report: Report, *, status: int = 200,
                   error: str | None = None) -> web.Response:
        can_resume = (report.status in UNFINISHED and ctx.person is not None
                      and "comms" in ctx.person.roles)
        return console.render(ctx, "reach.html", status=status, r=report,
                              shown_missing=SHOWN_MISSING, can_resume=can_resume, error=error,
                              chart=Markup(ack_chart_svg(report, ctx.lang)))  # noqa: S704

    @console.guard("comms", "auditor")
    async def reach(ctx: Ctx) -> web.StreamResponse:
        report = report_of(ctx)
        if report is None:
            return console.refuse(ctx, 404, "not_found")
        return reach_page(ctx, report)

    @console.guard("comms")
    async def resume(ctx: Ctx) -> web.StreamResponse:
        report = report_of(ctx)
        if report is None:
            return console.refuse(ctx, 404, "not_found")
        try:
            body = str(ctx.form.get("body", ""))[:MAX_BODY]
            await resume_with_settings(console.settings, report.announcement_id,
                                       actor=ctx.actor, now=datetime.now(UTC),
                                       body=body or None)
        except HauspostError as exc:
            logger.error("console: finishing announcement %d for %s failed: %s",
                         report.announcement_id, ctx.actor, exc)
            return reach_page(ctx, report, status=409, error=str(exc))
        return console.redirect(ctx, f"{PREFIX}/announcements/{report.announcement_id}",
                                flash=ctx.t("sending_finished"))

    @console.guard("comms", "auditor")
    async def reach_csv(ctx: Ctx) -> web.StreamResponse:
        report = report_of(ctx)
        if report is None:
            return console.refuse(ctx, 404, "not_found")
        # A copy handed out is checkable later: its SHA-256 goes into the audit log.
        record_report(console.store, report, actor=ctx.actor, formats=["csv"], language=ctx.lang)
        return web.Response(
            text=render_csv(report), content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition":
                     f'attachment; filename="announcement-{ctx.request.match_info["id"]}.csv"'})

    @console.guard("comms", "auditor")
    async def printable(ctx: Ctx) -> web.StreamResponse:
        report = report_of(ctx)
        if report is None:
            return console.refuse(ctx, 404, "not_found")
        record_report(console.store, report, actor=ctx.actor, formats=["html"],
                      language=ctx.lang)
        response = web.Response(text=render_html(report, ctx.lang), content_type="text/html",
                                charset="utf-8")
        # The proof document carries its own (print) styles inline and loads nothing.
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
        return response

    app.router.add_get(PREFIX + "/announcements", index)
    app.router.add_get(PREFIX + "/announcements/{id:\\d+}/report", printable)
    app.router.add_post(PREFIX + "/announcements", send)
    app.router.add_post(PREFIX + "/announcements/{id:\\d+}/resume", resume)
    app.router.add_get(PREFIX + "/announcements/{id:\\d+}", reach)
    app.router.add_get(PREFIX + "/announcements/{id:\\d+}.csv", reach_csv)
