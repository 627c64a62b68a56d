"""Sign-in, sign-out, language, and the overview page."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

from aiohttp import web

from provisioner.console.signin import (
    HomeserverUnavailableError,
    SignInRefusedError,
    check_password,
    console_person,
)
from provisioner.console.web import COOKIE, LANG_COOKIE, PREFIX, Console, Ctx, safe_next
from provisioner.store import repository as repo

logger = logging.getLogger(__name__)

MAX_FIELD = 256


def add_routes(app: web.Application, console: Console) -> None:
    async def login_form(request: web.Request) -> web.StreamResponse:
        ctx = await console.context(request)
        if ctx.person is not None:
            raise web.HTTPSeeOther(safe_next(request.query.get("next")))
        if ctx.session is None:
            ctx.session = console.sessions.anonymous()
        return console.render(ctx, "login.html", next=safe_next(request.query.get("next")),
                              error=None, username="")

    async def login(request: web.Request) -> web.StreamResponse:
        ctx = await console.context(request)
        ctx.form = await request.post()
        if ctx.session is None or not console.csrf_ok(ctx):
            ctx.session = console.sessions.anonymous()
            return console.render(ctx, "login.html", status=403, next=PREFIX + "/",
                                  error=ctx.t("bad_csrf"), username="")
        username = str(ctx.form.get("username", "")).strip()[:MAX_FIELD]
        password = str(ctx.form.get("password", ""))[:1024]
        target = safe_next(str(ctx.form.get("next", "")))
        address = console.client_address(request)
        account_key = username.casefold().lstrip("@").split(":")[0]

        def failed() -> None:
            console.account_limiter.failed(account_key)
            console.address_limiter.failed(address)

        def again(key: str, status: int, **values: object) -> web.Response:
            return console.render(ctx, "login.html", status=status, next=target,
                                  error=ctx.t(key, **values), username=username)

        wait = max(console.account_limiter.retry_after(account_key),
                   console.address_limiter.retry_after(address))
        if wait > 0:
            logger.warning("console sign-in for %r from %s refused: too many attempts",
                           username, address)
            return again("too_many", 429, minutes=max(1, math.ceil(wait / 60)))
        if not username or not password:
            return again("bad_login", 401)
        try:
            user_id = await check_password(console.settings.homeserver_url, username, password,
                                           client_address=address)
        except SignInRefusedError as exc:
            failed()
            logger.warning("console sign-in for %r from %s refused by the homeserver (%s)",
                           username, address, exc)
            return again("bad_login", 401)
        except HomeserverUnavailableError as exc:
            logger.error("console sign-in: the homeserver is unavailable: %s", exc)
            return again("homeserver_down", 503)
        person = console_person(console.store, console.config, user_id)
        if person is None:
            failed()
            logger.warning("console sign-in: %s has no console role; refused", user_id)
            return again("no_role", 403)
        console.account_limiter.succeeded(account_key)
        ctx.session = console.sessions.sign_in(ctx.session, user_id=person.user_id,
                                               employee_id=person.employee_id,
                                               display_name=person.display_name,
                                               roles=person.roles)
        ctx.person = person
        with console.store.session() as session:
            repo.append_audit(session, actor=ctx.actor, action="console.sign_in",
                              target=person.user_id, now=datetime.now(UTC),
                              details={"roles": sorted(person.roles), "address": address})
        return console.redirect(ctx, target)

    @console.guard()
    async def logout(ctx: Ctx) -> web.StreamResponse:
        assert ctx.session is not None and ctx.person is not None  # noqa: S101
        console.sessions.end(ctx.session.sid)
        with console.store.session() as session:
            repo.append_audit(session, actor=ctx.actor, action="console.sign_out",
                              target=ctx.person.user_id, now=datetime.now(UTC))
        response = web.HTTPSeeOther(PREFIX + "/login")
        response.del_cookie(COOKIE, path=PREFIX)
        return response

    async def language(request: web.Request) -> web.StreamResponse:
        lang = request.query.get("to", "")
        response = web.HTTPSeeOther(safe_next(request.query.get("next")))
        if lang in ("de", "en"):
            response.set_cookie(LANG_COOKIE, lang, path=PREFIX, samesite="Strict",
                                httponly=True, max_age=365 * 86400,
                                secure=console.secure_cookies)
        return response

    @console.guard()
    async def home(ctx: Ctx) -> web.StreamResponse:
        return console.render(ctx, "home.html")

    async def bare(request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(PREFIX + "/")

    app.router.add_get(PREFIX, bare)
    app.router.add_get(PREFIX + "/", home)
    app.router.add_get(PREFIX + "/login", login_form)
    app.router.add_post(PREFIX + "/login", login)
    app.router.add_post(PREFIX + "/logout", logout)
    app.router.add_get(PREFIX + "/language", language)
