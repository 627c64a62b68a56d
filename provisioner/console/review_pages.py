"""Access review (auditor, it): the last stored review, a new one on demand, CSV export."""

from __future__ import annotations

import csv
import io
import logging

from aiohttp import web

from provisioner.console.web import PREFIX, Console, Ctx
from provisioner.errors import HauspostError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.review.collect import collect_review, latest_review, review_csv_rows, store_review

logger = logging.getLogger(__name__)

SHOWN_UNMANAGED = 50


def add_routes(app: web.Application, console: Console) -> None:
    @console.guard("auditor", "it")
    async def page(ctx: Ctx) -> web.StreamResponse:
        review = latest_review(console.store)
        return console.render(ctx, "review.html", review=review, error=None,
                              shown_unmanaged=SHOWN_UNMANAGED)

    @console.guard("auditor", "it")
    async def run(ctx: Ctx) -> web.StreamResponse:
        try:
            token = await ensure_service_token(console.settings)
            async with SynapseAdmin(console.settings.homeserver_url, token) as admin:
                review = await collect_review(console.settings, console.store, admin,
                                              actor=ctx.actor)
        except HauspostError as exc:
            logger.error("console: access review by %s failed: %s", ctx.actor, exc)
            return console.render(ctx, "review.html", status=502, error=str(exc),
                                  review=latest_review(console.store),
                                  shown_unmanaged=SHOWN_UNMANAGED)
        store_review(console.store, review)
        return console.redirect(ctx, PREFIX + "/review")

    @console.guard("auditor", "it")
    async def export(ctx: Ctx) -> web.StreamResponse:
        review = latest_review(console.store)
        if review is None:
            return console.refuse(ctx, 404, "not_found")
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(review_csv_rows(review))
        return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition":
                                     f'attachment; filename="access-review-{review.id}.csv"'})

    app.router.add_get(PREFIX + "/review", page)
    app.router.add_post(PREFIX + "/review", run)
    app.router.add_get(PREFIX + "/review.csv", export)
