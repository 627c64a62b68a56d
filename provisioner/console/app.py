"""Mount the web console into `hauspost serve`'s aiohttp application under /console/."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from aiohttp import web

from provisioner.console import (
    announce_pages,
    people_pages,
    review_pages,
    signin_pages,
    sync_pages,
)
from provisioner.console.config import ConsoleSettings
from provisioner.console.web import PREFIX, STATIC, Console, security_headers
from provisioner.settings import Settings
from provisioner.store import Store


def add_console(app: web.Application, settings: Settings, store: Store,
                config: ConsoleSettings, *, time_zone: ZoneInfo,
                on_queued: Callable[[], None]) -> Console:
    """Add the console's routes and its security headers; returns the console (sessions)."""
    console = Console(settings, store, config, time_zone=time_zone)
    app.middlewares.append(security_headers)
    signin_pages.add_routes(app, console)
    people_pages.add_routes(app, console, on_queued=on_queued)
    sync_pages.add_routes(app, console)
    announce_pages.add_routes(app, console)
    review_pages.add_routes(app, console)
    app.router.add_static(PREFIX + "/static", STATIC, show_index=False, follow_symlinks=False)
    return console
