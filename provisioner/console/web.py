"""The console's web plumbing: sessions in cookies, CSRF, roles, language, page rendering.

Every page goes through `Console.guard`: no session → the sign-in page (GET) or 403 (POST);
a session whose person is no longer an active employee with a console role ends on the spot
(checked against the store on every request, so an offboarded admin is out at once); a
role that does not fit → 403; every POST needs the session's CSRF token and, when the
browser sends one, an Origin of this host. Responses forbid framing, sniffing, caching and
loading anything from elsewhere (Content-Security-Policy `default-src 'self'`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import BodyPartReader, web
from markupsafe import Markup
from multidict import MultiDict

from provisioner.announcements.media_limits import MediaLimits, load_media_limits
from provisioner.console.config import ConsoleSettings
from provisioner.console.i18n import pick_language, translate
from provisioner.console.sessions import ConsoleSession, LoginLimiter, SessionStore
from provisioner.console.signin import Person, console_person
from provisioner.errors import ConfigError
from provisioner.settings import Settings
from provisioner.store import Store

logger = logging.getLogger(__name__)

PREFIX = "/console"
COOKIE = "hauspost_console"
LANG_COOKIE = "hauspost_lang"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "script-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on form
    # posts, and the Origin check below needs the real one. Nothing leaves for elsewhere.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Ctx:
    """One request as a page sees it."""

    request: web.Request
    lang: str
    session: ConsoleSession | None = None
    person: Person | None = None
    form: Mapping[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        assert self.person is not None  # noqa: S101 - only guarded handlers ask
        return f"console:{self.person.user_id}"

    def t(self, key: str, **values: object) -> str:
        return translate(self.lang, key, **values)


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]

MAX_FIELD_BYTES = 200_000
MAX_PARTS = 500


@dataclass(frozen=True)
class Upload:
    """A file from a multipart form (the announcement's attachment)."""

    filename: str
    data: bytes


async def read_form(request: web.Request, *, max_file_bytes: int) -> MultiDict[Any]:
    """The posted form. Multipart bodies are read part by part with our own limits (the
    application's 1 MiB body limit is for SCIM; an attachment may be as large as the media
    policy allows, checked again by the announcement code): 413 beyond them."""
    if request.content_type != "multipart/form-data":
        return MultiDict(await request.post())
    form: MultiDict[Any] = MultiDict()
    reader = await request.multipart()
    for _ in range(MAX_PARTS):
        part = await reader.next()
        if part is None:
            return form
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise web.HTTPBadRequest(text="unexpected multipart part")
        limit = max_file_bytes if part.filename is not None else MAX_FIELD_BYTES
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data.extend(chunk)
            if len(data) > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
        if part.filename is not None:
            if data:
                form.add(part.name, Upload(filename=Path(part.filename).name, data=bytes(data)))
        else:
            form.add(part.name, data.decode("utf-8", errors="replace"))
    raise web.HTTPBadRequest(text="too many form parts")


def safe_next(value: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") \
            and "\\" not in value and not urlsplit(value).netloc:
        return value
    return PREFIX + "/"


class Console:
    def __init__(self, settings: Settings, store: Store, config: ConsoleSettings, *,
                 time_zone: ZoneInfo) -> None:
        self.settings = settings
        self.store = store
        self.config = config
        self.time_zone = time_zone
        self.sessions = SessionStore(config.idle_seconds)
        self.account_limiter = LoginLimiter(config.login_attempts, config.login_window_seconds)
        self.address_limiter = LoginLimiter(config.login_attempts_per_address,
                                            config.login_window_seconds)
        public = settings.service.public_url or ""
        self.secure_cookies = (config.secure_cookies if config.secure_cookies is not None
                               else public.startswith("https://"))
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                      autoescape=True, undefined=jinja2.StrictUndefined,
                                      trim_blocks=True, lstrip_blocks=True)
        self.env.filters["local"] = self.local_time
        self.trusted = [ipaddress.ip_network(a, strict=False) for a in config.trusted_proxies]
        self._media_limits: MediaLimits | None = None

    @property
    def media_limits(self) -> MediaLimits | None:
        """The media policy's upload limits from homeserver.yaml; None: unreadable, and
        then the console takes no attachments (fail closed)."""
        if self._media_limits is None:
            try:
                self._media_limits = load_media_limits(self.settings.homeserver_config)
            except ConfigError as exc:
                logger.error("console: no attachments: %s", exc)
                return None
        return self._media_limits

    @property
    def max_upload_bytes(self) -> int:
        limits = self.media_limits
        return limits.max_upload_bytes if limits is not None else 0

    # --- helpers ------------------------------------------------------------------------

    def local_time(self, value: datetime | None) -> str:
        if value is None:
            return "–"
        return value.astimezone(self.time_zone).strftime("%Y-%m-%d %H:%M:%S %Z")

    def client_address(self, request: web.Request) -> str:
        peer = request.remote or "?"
        try:
            address = ipaddress.ip_address(peer)
            trusted = any(address in network for network in self.trusted)
        except ValueError:
            trusted = False
        forwarded = request.headers.get("X-Forwarded-For", "")
        if trusted and forwarded:
            return forwarded.split(",")[-1].strip() or peer
        return peer

    def set_session_cookie(self, response: web.StreamResponse, session: ConsoleSession) -> None:
        response.set_cookie(COOKIE, session.sid, path=PREFIX, httponly=True, samesite="Strict",
                            secure=self.secure_cookies)

    def render(self, ctx: Ctx, template: str, *, status: int = 200,
               **values: Any) -> web.Response:
        flash = ctx.session.flash.pop() if ctx.session and ctx.session.flash else None
        page = self.env.get_template(template).render(
            t=ctx.t, lang=ctx.lang, me=ctx.person, session=ctx.session, flash=flash,
            csrf=ctx.session.csrf if ctx.session else "", prefix=PREFIX,
            path=ctx.request.path_qs, Markup=Markup, **values)
        response = web.Response(text=page, status=status, content_type="text/html",
                                charset="utf-8")
        if ctx.session is not None:
            self.set_session_cookie(response, ctx.session)
        return response

    def refuse(self, ctx: Ctx, status: int, key: str) -> web.Response:
        return self.render(ctx, "error.html", status=status, message=ctx.t(key))

    def redirect(self, ctx: Ctx, location: str, *, flash: str | None = None) -> web.Response:
        if flash and ctx.session is not None:
            ctx.session.flash.append(flash)
        response = web.HTTPSeeOther(location)
        if ctx.session is not None:
            self.set_session_cookie(response, ctx.session)
        return response

    async def context(self, request: web.Request) -> Ctx:
        ctx = Ctx(request=request, lang=pick_language(request.headers.get("Accept-Language"),
                                                      request.cookies.get(LANG_COOKIE)))
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is not None and session.user_id is not None:
            person = console_person(self.store, self.config, session.user_id)
            if person is None:
                logger.info("console: %s is no longer allowed in; session ended",
                            session.user_id)
                self.sessions.end(session.sid)
                session = None
            else:
                session.roles = person.roles
                ctx.person = person
        ctx.session = session
        return ctx

    def csrf_ok(self, ctx: Ctx) -> bool:
        origin = ctx.request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != ctx.request.host:
            return False
        token = ctx.form.get("csrf")
        return (ctx.session is not None and isinstance(token, str)
                and hmac.compare_digest(token, ctx.session.csrf))

    def guard(self, *roles: str) -> Callable[[Handler], Callable[[web.Request],
                                                                   Awaitable[web.StreamResponse]]]:
        """No roles given: any signed-in console user."""
        wanted = frozenset(roles)

        def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            async def run(request: web.Request) -> web.StreamResponse:
                ctx = await self.context(request)
                if ctx.person is None:
                    if request.method in ("GET", "HEAD"):
                        raise web.HTTPSeeOther(f"{PREFIX}/login?next={quote(request.path_qs)}")
                    return self.refuse(ctx, 403, "session_ended")
                if wanted and not wanted & ctx.person.roles:
                    logger.warning("console: %s (roles %s) refused %s %s",
                                   ctx.person.user_id, ",".join(sorted(ctx.person.roles)),
                                   request.method, request.path)
                    return self.refuse(ctx, 403, "forbidden")
                if request.method == "POST":
                    ctx.form = await read_form(request, max_file_bytes=self.max_upload_bytes)
                    if not self.csrf_ok(ctx):
                        logger.warning("console: %s sent %s without a valid CSRF token",
                                       ctx.person.user_id, request.path)
                        return self.refuse(ctx, 403, "bad_csrf")
                return await handler(ctx)
            return run
        return wrap


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if request.path.startswith(PREFIX):
            exc.headers.update(SECURITY_HEADERS)
        raise
    if request.path.startswith(PREFIX):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)  # a page may set a stricter CSP
    return response
