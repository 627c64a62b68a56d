"""Offboarding: the one code path `hauspost offboard` and `sync` use to end an account's access.

1. `POST /_synapse/admin/v1/deactivate`: Synapse deletes every device and access token
   (so a token held a moment ago answers M_UNKNOWN_TOKEN), removes pushers and e-mail
   addresses, marks the account deactivated (every later login, LDAP ones included, gets
   M_USER_DEACTIVATED) and starts parting all rooms in the background.
2. Check that no device survived and delete any that did: a belt to the braces above,
   because a session that keeps working is the one failure offboarding must never have.
3. In the store: the account is marked inactive. A manual offboard also sets `hold`, so the
   next sync does not reactivate a person the directory still lists as active.
4. `--erase` (GDPR Art. 17) additionally asks Synapse to erase the account: profile
   removed, messages hidden from anyone who joins later. Default: keep messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from provisioner.accounts.policy import policy_for
from provisioner.errors import EXIT_CONFIG, HauspostError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.settings import Settings
from provisioner.store import Store, open_store
from provisioner.store import repository as repo

logger = logging.getLogger(__name__)


class OffboardRefusedError(HauspostError):
    """The target is protected, unknown or not ours to offboard."""

    exit_code = EXIT_CONFIG


async def end_access(admin: SynapseAdmin, user_id: str, *, erase: bool) -> int:
    """Deactivate through the admin API and make sure no device is left. Returns how many
    devices had to be deleted afterwards (0 when Synapse did it all, as it should)."""
    await admin.deactivate(user_id, erase=erase)
    leftovers = await admin.list_devices(user_id)
    if leftovers:
        logger.warning("%d device(s) of %s survived deactivation; deleting them",
                       len(leftovers), user_id)
        await admin.delete_devices(user_id, leftovers)
    return len(leftovers)


async def wait_until_parted(admin: SynapseAdmin, user_id: str, *,
                            timeout: float = 30.0) -> list[str]:
    """Wait for Synapse's background room parting; returns rooms still joined at timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        rooms = await admin.joined_rooms(user_id)
        if not rooms or time.monotonic() >= deadline:
            return rooms
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


@dataclass(frozen=True)
class OffboardResult:
    user_id: str
    employee_id: str | None
    already_deactivated: bool
    #: From the start of the command's work until Synapse confirmed deactivation.
    access_ended_seconds: float
    devices_deleted_after: int
    #: Rooms still joined when we stopped waiting (empty: out of every room).
    rooms_remaining: tuple[str, ...]
    total_seconds: float


async def offboard(admin: SynapseAdmin, store: Store, target: str, *, server_name: str,
                   protected: frozenset[str], reason: str, erase: bool, actor: str,
                   wait_for_rooms: bool = True, started: float | None = None,
                   record: Callable[[Session], None] | None = None) -> OffboardResult:
    """Offboard one person by employee id or Matrix ID, audited, at once. `record` runs in
    the transaction of the audit row (the service marks its job done there, so a crash
    can't leave a done offboarding queued to be audited a second time)."""
    t0 = started if started is not None else time.monotonic()
    with store.session() as session:
        if target.startswith("@"):
            user_id = target
            row = repo.get_account(session, user_id)
        else:
            row = repo.get_account_by_employee(session, target)
            if row is None:
                raise OffboardRefusedError(f"no account is linked to employee {target!r} "
                                      "(give the Matrix ID instead, e.g. @name:" +
                                      server_name + ")")
            user_id = row.user_id
        employee_id = row.employee_id if row is not None else None
    if not user_id.endswith(":" + server_name):
        raise OffboardRefusedError(f"{user_id} is not an account of {server_name}")
    if user_id in protected:
        raise OffboardRefusedError(f"{user_id} is a protected account (service account or admin) "
                              "and is never offboarded by hauspost")
    state = await admin.get_account(user_id)
    if state is None:
        raise OffboardRefusedError(f"{user_id} does not exist on {server_name}")
    if state.admin:
        raise OffboardRefusedError(f"{user_id} is a Synapse server admin and is never offboarded "
                              "by hauspost; remove the admin flag first")
    already = state.deactivated
    devices_after = 0
    if not already or erase:
        devices_after = await end_access(admin, user_id, erase=erase)
    access_ended = time.monotonic() - t0
    now = datetime.now(UTC)
    with store.session() as session:
        if row is not None:
            account = repo.get_account(session, user_id)
            if account is not None:
                repo.record_deactivated(account, now=now, reason=reason, hold=True)
        repo.append_audit(
            session, actor=actor, action="account.offboard", target=user_id, now=now,
            reason=reason,
            details={"employee_id": employee_id, "erase": erase,
                     "already_deactivated": already, "devices_deleted_after": devices_after,
                     "access_ended_ms": round(access_ended * 1000, 1)})
        if record is not None:
            record(session)
    rooms: list[str] = []
    if wait_for_rooms:
        rooms = await wait_until_parted(admin, user_id)
    return OffboardResult(user_id=user_id, employee_id=employee_id, already_deactivated=already,
                          access_ended_seconds=access_ended,
                          devices_deleted_after=devices_after, rooms_remaining=tuple(rooms),
                          total_seconds=time.monotonic() - t0)


async def offboard_with_settings(settings: Settings, target: str, *, reason: str, erase: bool,
                                 actor: str, wait_for_rooms: bool = True,
                                 started: float | None = None) -> OffboardResult:
    """`offboard` with everything it needs taken from hauspost.yaml: the one entry point of
    `hauspost offboard` and the console."""
    token = await ensure_service_token(settings)
    store = open_store(settings.store_url)
    try:
        async with SynapseAdmin(settings.homeserver_url, token) as admin:
            return await offboard(admin, store, target, server_name=settings.server_name,
                                  protected=policy_for(settings).protected, reason=reason,
                                  erase=erase, actor=actor, wait_for_rooms=wait_for_rooms,
                                  started=started)
    finally:
        store.close()


class RehireRefusedError(HauspostError):
    """The person has no account offboarded by hand, or the directory lets them go."""

    exit_code = EXIT_CONFIG


def release_offboarding_hold(store: Store, employee_id: str, *, reason: str, actor: str,
                             now: datetime) -> str:
    """Lift the hold a manual offboarding set, so the next sync reactivates the account if
    the directory lists the person as active (a rehire, or an offboarding by mistake).
    Returns the Matrix ID; audited as `account.rehire`."""
    with store.session() as session:
        account = repo.get_account_by_employee(session, employee_id)
        if account is None:
            raise RehireRefusedError(f"no account is linked to employee {employee_id!r}")
        if account.active or not account.hold:
            raise RehireRefusedError(f"{account.user_id} is not held by an offboarding "
                                     "(nothing to lift; the directory decides)")
        employee = repo.get_employee(session, employee_id)
        if employee is None or employee.status != "active":
            raise RehireRefusedError(f"the directory does not list employee {employee_id!r} "
                                     "as active: rehire them there first")
        account.hold = False
        repo.append_audit(session, actor=actor, action="account.rehire",
                          target=account.user_id, now=now, reason=reason,
                          details={"employee_id": employee_id})
        return account.user_id
