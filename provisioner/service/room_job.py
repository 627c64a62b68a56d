"""The `rooms` job: the room part of a sync on its own, queued when SCIM memberships change.

It reads the whole directory (a `for_each: group` room needs every member, not only the
changed ones), plans the rooms against the accounts as stored and applies, audited as a
run of kind `rooms` with the job's actor (the SCIM client). Accounts are left to the
`reconcile` / `offboard` jobs and the directory sync: a group change never creates or
deactivates anyone. It holds the same run lock as `sync`, so the two never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from provisioner.directory.read import read_directory
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.rooms import run as room_sync
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.run_lock import run_lock

logger = logging.getLogger(__name__)


async def run_room_sync(settings: Settings, store: Store, token: str, *, actor: str,
                        now: datetime | None = None) -> room_sync.RoomOutcome | None:
    """Plan and apply the room policy; None when rooms are not managed."""
    if room_sync.load_room_policy(settings) is None:
        return None
    now = now or datetime.now(UTC)
    with run_lock(store, "sync", holder=actor):
        directory = await asyncio.to_thread(read_directory, settings)
        with store.session() as session:
            run_id = repo.start_run(session, kind="rooms", actor=actor, now=now,
                                    dry_run=False, forced=False).id
        outcome: room_sync.RoomOutcome | None = None
        writes = 0
        try:
            async with SynapseAdmin(settings.homeserver_url, token) as admin:
                outcome = await room_sync.sync_rooms_for_run(
                    settings, store, admin, directory, run_id=run_id, actor=actor,
                    progress=False, now=now)
                writes = admin.writes
        finally:
            with store.session() as session:
                failed = outcome is None or bool(outcome.result.failures)
                repo.finish_run(session, run_id, now=datetime.now(UTC),
                                status="failed" if failed else "ok",
                                summary={"rooms": outcome.plan.counts() if outcome else None,
                                         "applied": dict(outcome.result.applied)
                                         if outcome else {},
                                         "synapse_writes": writes})
    if outcome is not None:
        logger.info("room sync (run %d): %d changes, %d failed", run_id,
                    len(outcome.plan.actions), len(outcome.result.failures))
    return outcome
