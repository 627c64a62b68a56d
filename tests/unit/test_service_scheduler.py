"""The scheduler: runs each action on its interval, survives failures, stops on the event."""

from __future__ import annotations

import asyncio

import pytest

from provisioner.service.scheduler import Scheduler


async def test_actions_run_repeatedly_and_a_failure_does_not_stop_others() -> None:
    scheduler = Scheduler()
    calls: list[str] = []
    # Stop once each action has run three times: the outcome, not how many runs fit in
    # a wall-clock window, is what is checked.
    good_ran_thrice, bad_ran_thrice = asyncio.Event(), asyncio.Event()

    async def good() -> None:
        calls.append("good")
        if calls.count("good") >= 3:
            good_ran_thrice.set()

    async def bad() -> None:
        calls.append("bad")
        if calls.count("bad") >= 3:
            bad_ran_thrice.set()
        raise RuntimeError("broken job")

    good_schedule = scheduler.every("good", 0.01, good)
    bad_schedule = scheduler.every("bad", 0.01, bad)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.wait_for(asyncio.gather(good_ran_thrice.wait(), bad_ran_thrice.wait()), 30)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert good_schedule.runs >= 3 and bad_schedule.runs >= 3
    assert bad_schedule.failures == bad_schedule.runs == calls.count("bad")
    assert bad_schedule.last_error == "RuntimeError: broken job"
    assert good_schedule.failures == 0 and calls.count("good") == good_schedule.runs
    assert good_schedule.last_error is None


async def test_no_run_at_start_waits_one_interval_and_stop_ends_at_once() -> None:
    scheduler = Scheduler()
    ran: list[int] = []

    async def action() -> None:
        ran.append(1)

    scheduler.every("later", 30.0, action, run_at_start=False)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert ran == []


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        Scheduler().every("x", 0, lambda: asyncio.sleep(0))
