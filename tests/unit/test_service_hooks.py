"""The announcement-reminder hook: found when the module exists, sync or async, off otherwise."""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import types
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.service import announcements_hook
from provisioner.service.announcements_hook import find_tick, tick_action
from provisioner.settings import parse_settings

SETTINGS = parse_settings({"server_name": "corp.test",
                           "homeserver": {"url": "http://127.0.0.1:8008"}},
                          Path("/srv/hauspost/hauspost.yaml"))


async def test_sync_tick_runs_off_the_event_loop_with_an_aware_now() -> None:
    seen: list[Any] = []

    def tick(settings: Any, now: datetime) -> None:
        seen.append((settings, now.tzinfo is not None, threading.current_thread().name))

    await tick_action(SETTINGS, tick)()
    (settings, aware, thread) = seen[0]
    assert settings is SETTINGS and aware and thread != threading.main_thread().name


async def test_async_tick_is_awaited() -> None:
    seen: list[datetime] = []

    async def tick(settings: Any, now: datetime) -> None:
        seen.append(now)

    await tick_action(SETTINGS, tick)()
    assert len(seen) == 1


def test_missing_module_or_function_means_no_reminders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(announcements_hook, "MODULE", "provisioner.no_such_package.tick")
    assert find_tick() is None
    empty = types.ModuleType("hauspost_test_empty_tick")
    monkeypatch.setitem(sys.modules, "hauspost_test_empty_tick", empty)
    empty.__spec__ = importlib.machinery.ModuleSpec(
        "hauspost_test_empty_tick", None)
    monkeypatch.setattr(announcements_hook, "MODULE", "hauspost_test_empty_tick")
    assert find_tick() is None


def test_present_function_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("hauspost_test_tick")

    def run_tick(settings: Any, now: datetime) -> None:
        return None

    module.run_tick = run_tick  # type: ignore[attr-defined]
    module.__spec__ = importlib.machinery.ModuleSpec(
        "hauspost_test_tick", None)
    monkeypatch.setitem(sys.modules, "hauspost_test_tick", module)
    monkeypatch.setattr(announcements_hook, "MODULE", "hauspost_test_tick")
    assert find_tick() is run_tick
