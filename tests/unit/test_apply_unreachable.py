"""When Synapse stops answering mid-run, the run stops instead of waiting out every
remaining action's retries; what is left is planned again by the next run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.accounts.apply import ApplyOptions, apply_plan
from provisioner.accounts.plan import CreateAccount, Plan
from provisioner.homeserver.synapse_admin import SynapseUnreachableError
from provisioner.store import open_store
from provisioner.store import repository as repo

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
