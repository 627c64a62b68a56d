"""The service's hook for announcement reminders: `provisioner.announcements.tick.run_tick`
(settings, now), when that module is installed. Sync functions run in a thread so they
can't stall the event loop; coroutine functions are awaited."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from provisioner.settings import Settings

logger = logging.getLogger(__name__)

MODULE = "provisioner.announcements.tick"


def find_tick() -> Callable[..., Any] | None:
    try:
        if importlib.util.find_spec(MODULE) is None:
            return None
    except ModuleNotFoundError:
        return None
    module = importlib.import_module(MODULE)
    tick = getattr(module, "run_tick", None)
    if not callable(tick):
        logger.warning("%s has no run_tick(settings, now); announcement reminders are off",
                       MODULE)
        return None
    return tick  # type: ignore[no-any-return]


def tick_action(settings: Settings,
                tick: Callable[..., Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        now = datetime.now(UTC)
        if inspect.iscoroutinefunction(tick):
            await tick(settings, now)
            return
        result = await asyncio.to_thread(tick, settings, now)
        if inspect.isawaitable(result):
            await result

    return run
