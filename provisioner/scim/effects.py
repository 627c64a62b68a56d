"""What a SCIM change means for the Matrix account (pure): old person + new person -> jobs.

- created active, or active again         -> reconcile (create / link / reactivate)
- active -> inactive, or deleted          -> offboard at once (provisioner/accounts/offboard.py)
- name or e-mail changed while active     -> reconcile (display name, e-mail)
- created inactive, changed while inactive -> nothing for Synapse (recorded only)

With `scim` among the directory sources and rooms managed, membership changes also queue
one room sync (`room_sync_job`): a group created, changed or deleted, a user created active
or set active again. Pending room syncs coalesce into one: it reads every group when it runs.
"""

from __future__ import annotations

from dataclasses import asdict

from provisioner.directory.scim_person import ScimPerson
from provisioner.store.jobs import KIND_OFFBOARD, KIND_RECONCILE, KIND_ROOMS, JobSpec

ROOM_SYNC_KEY = "rooms"


def reconcile_job(person: ScimPerson, user_id: str, *, reactivate: bool, reason: str) -> JobSpec:
    payload = {**asdict(person), "user_id": user_id, "reactivate": reactivate}
    return JobSpec(kind=KIND_RECONCILE, target=user_id, reason=reason, payload=payload)


def offboard_job(user_id: str, *, reason: str) -> JobSpec:
    return JobSpec(kind=KIND_OFFBOARD, target=user_id, reason=reason,
                   payload={"user_id": user_id}, dedupe_key=f"offboard:{user_id}")


def user_effects(old: ScimPerson | None, new: ScimPerson | None, user_id: str) -> list[JobSpec]:
    if new is None:
        if old is not None and old.active:
            return [offboard_job(user_id, reason="deleted by the SCIM client")]
        return []
    if old is None:
        if new.active:
            return [reconcile_job(new, user_id, reactivate=True,
                                  reason="created by the SCIM client")]
        return []
    if old.active and not new.active:
        return [offboard_job(user_id, reason="set inactive by the SCIM client")]
    if not old.active and new.active:
        return [reconcile_job(new, user_id, reactivate=True,
                              reason="set active again by the SCIM client")]
    if new.active and (old.display_name != new.display_name or old.email != new.email):
        return [reconcile_job(new, user_id, reactivate=False,
                              reason="profile changed by the SCIM client")]
    return []


def room_sync_job(reason: str) -> JobSpec:
    return JobSpec(kind=KIND_ROOMS, target="rooms", reason=reason, dedupe_key=ROOM_SYNC_KEY)


def changes_rooms(user_jobs: list[JobSpec]) -> bool:
    """A user's changes that can put them into rooms: created active or active again (both
    queue a reconcile with `reactivate`)."""
    return any(j.kind == KIND_RECONCILE and (j.payload or {}).get("reactivate")
               for j in user_jobs)
