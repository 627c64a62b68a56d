"""Debian's chromium driven by Playwright for Python (async API): no browser download.

    async with chromium_page() as (page, outside):
        await page.goto(url)
        ...
        assert outside == []   # nothing was fetched from outside loopback

Every request the page makes is checked: loopback goes through, anything else is aborted
and recorded in `outside`, so a test can prove a page loads nothing from outside the
company. The flags are the ones this machine's closed network needs (no background
networking, no component updates).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_path() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not found:
        pytest.fail("Debian's chromium is missing: `./dev test` installs it "
                    "(apt-get install chromium)", pytrace=False)
    return found


@asynccontextmanager
async def chromium_page(*, locale: str = "en-GB", viewport: tuple[int, int] = (1280, 900),
                        ) -> AsyncIterator[tuple[Page, list[str]]]:
    from playwright.async_api import Request, Route, async_playwright

    outside: list[str] = []

    async def guard(route: Route, request: Request) -> None:
        scheme, host = urlsplit(request.url).scheme, urlsplit(request.url).hostname or ""
        if scheme in ("data", "blob", "about", "file") or host in LOOPBACK:
            await route.continue_()
        else:
            outside.append(request.url)
            await route.abort()

    with tempfile.TemporaryDirectory(prefix="hauspost-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), args=FLAGS, headless=True,
                locale=locale, viewport={"width": viewport[0], "height": viewport[1]},
                extra_http_headers={"Accept-Language": locale})
            try:
                await context.route("**/*", guard)
                page = context.pages[0] if context.pages else await context.new_page()
                yield page, outside
            finally:
                await context.close()
