"""A small asyncio scheduler: named actions run every N seconds until a stop event.

Each schedule runs in its own task; an action never overlaps itself (a slow run delays
the next one), and an exception is logged and the schedule goes on, so one broken job
can't stop the service's other schedules.

    scheduler = Scheduler()
    scheduler.every("directory-sync", 3600, sync_once)
    await scheduler.run(stop_event)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Action = Callable[[], Awaitable[None]]


@dataclass
class Schedule:
    name: str
    interval: float
    action: Action
    run_at_start: bool = True
    runs: int = 0
    failures: int = 0
    last_error: str | None = None


class Scheduler:
    def __init__(self) -> None:
        self.schedules: list[Schedule] = []

    def every(self, name: str, seconds: float, action: Action, *,
              run_at_start: bool = True) -> Schedule:
        if seconds <= 0:
            raise ValueError(f"schedule {name}: interval must be positive, got {seconds}")
        schedule = Schedule(name, seconds, action, run_at_start)
        self.schedules.append(schedule)
        return schedule

    async def run(self, stop: asyncio.Event) -> None:
        """Run every schedule until `stop` is set; returns when all have finished."""
        await asyncio.gather(*(self._loop(s, stop) for s in self.schedules))

    @staticmethod
    async def _once(schedule: Schedule) -> None:
        try:
            await schedule.action()
            schedule.last_error = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a schedule must survive its action's bugs
            schedule.failures += 1
            schedule.last_error = f"{type(exc).__name__}: {exc}"
            logger.exception("scheduled %s failed", schedule.name)
        finally:
            schedule.runs += 1

    async def _loop(self, schedule: Schedule, stop: asyncio.Event) -> None:
        if schedule.run_at_start and not stop.is_set():
            await self._once(schedule)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=schedule.interval)
            except TimeoutError:
                await self._once(schedule)
