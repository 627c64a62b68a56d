"""When Synapse stops answering mid-run, the run stops instead of waiting out every
remaining action's retries; what is left is planned again by the next run. Accounts and
rooms alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.accounts.apply import ApplyOptions, apply_plan
from provisioner.accounts.plan import CreateAccount, Plan
from provisioner.homeserver.synapse_admin import SynapseUnreachableError
from provisioner.rooms.apply import apply_room_plan
from provisioner.rooms.plan import AddMember, RoomPlan
from provisioner.store import open_store
from provisioner.store import repository as repo
from provisioner.store.rooms_models import RoomIntentRow

pytestmark = pytest.mark.unit


class GoneSynapse:
    """Every call fails as SynapseAdmin does once its retries are used up."""

    def __init__(self) -> None:
        self.calls = 0

    async def create_account(self, user_id: str, **_: object) -> None:
        self.calls += 1
        await asyncio.sleep(0.01)
        raise SynapseUnreachableError("cannot reach Synapse at http://127.0.0.1:1: refused")


def test_the_run_stops_at_the_first_unreachable_synapse(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    with store.session() as s:
        run_id = repo.start_run(s, kind="sync", actor="t@t", now=now, dry_run=False,
                                forced=False).id
    actions = tuple(CreateAccount(f"E{i}", f"@m{i}:x.test", f"Mitarbeiter {i}")
                    for i in range(50))
    admin = GoneSynapse()

    result = asyncio.run(apply_plan(Plan(actions=actions), admin=admin,  # type: ignore[arg-type]
                                    store=store, run_id=run_id, actor="t@t",
                                    options=ApplyOptions(concurrency=4, progress=False,
                                                         batched_accounts=False)))

    assert admin.calls == 4  # the calls already in flight; nothing after them
    assert result.applied_total == 0
    assert len(result.failures) == 50
    not_attempted = [f for f in result.failures if f.error.startswith("not attempted: ")]
    assert len(not_attempted) == 46
    assert {f.error for f in result.failures} == {
        "cannot reach Synapse at http://127.0.0.1:1: refused",
        "not attempted: cannot reach Synapse at http://127.0.0.1:1: refused"}
    store.close()


class GoneSynapseForRooms:
    """The admin API's generic request, failing as SynapseAdmin does after its retries."""

    def __init__(self) -> None:
        self.calls = 0
        self.writes = 0

    async def request(self, method: str, path: str, **_: object) -> None:
        self.calls += 1
        await asyncio.sleep(0.01)
        raise SynapseUnreachableError("cannot reach Synapse at http://127.0.0.1:1: refused")


def test_the_room_sync_stops_at_the_first_unreachable_synapse_and_keeps_its_intents(
        tmp_path: Path) -> None:
    """Found by the fault suite: Synapse killed mid-joins made the room sync wait out every
    remaining join's retries (minutes for one room). Now the joins after the first
    unreachable answer fail at once; their intents stay for the next run to decide."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    with store.session() as s:
        run_id = repo.start_run(s, kind="sync", actor="t@t", now=now, dry_run=False,
                                forced=False).id
    plan = RoomPlan(actions=tuple(AddMember("all", f"@m{i}:x.test", "matches all employees")
                                  for i in range(30)))
    admin = GoneSynapseForRooms()

    result = asyncio.run(apply_room_plan(plan, admin=admin, batched_members=False,  # type: ignore[arg-type]
                                         store=store, run_id=run_id, actor="t@t",
                                         server_name="x.test", room_ids={"all": "!all"}))

    assert admin.calls == 1  # one room is one stream: nothing after the first answer
    assert [f.error.startswith("not attempted: ") for f in result.failures] == [
        False] + [True] * 29
    with store.session() as s:
        assert s.query(RoomIntentRow).count() == 30
    store.close()
