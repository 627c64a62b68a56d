"""Sign-in with the company account: the homeserver checks the password, we keep no token.

The console asks the homeserver's client login API (the same password as in Element: LDAP
through matrix-synapse-ldap3), then logs that Matrix session out at once, so no device
stays behind. Who may enter is decided from the store's copy of the directory: an active
employee with an active account whose directory groups map to a console role.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from provisioner.console.config import ConsoleSettings
from provisioner.store import Store
from provisioner.store import repository as repo

logger = logging.getLogger(__name__)

DEVICE_NAME = "Hauspost console sign-in"


class SignInRefusedError(Exception):
    """Wrong password, unknown account, or a deactivated one: the same answer for all."""


class HomeserverUnavailableError(Exception):
    pass


@dataclass(frozen=True)
class Person:
    user_id: str
    employee_id: str
    display_name: str
    roles: frozenset[str]


async def check_password(homeserver_url: str, username: str, password: str, *,
                         client_address: str | None = None, timeout: float = 15.0) -> str:
    """The Matrix ID the homeserver signs in with this password; its session is ended."""
    body = {"type": "m.login.password", "password": password,
            "identifier": {"type": "m.id.user", "user": username},
            "initial_device_display_name": DEVICE_NAME}
    headers = {"X-Forwarded-For": client_address} if client_address else {}
    try:
        async with httpx.AsyncClient(base_url=homeserver_url, timeout=timeout) as client:
            response = await client.post("/_matrix/client/v3/login", json=body, headers=headers)
            if response.status_code in (400, 401, 403, 404):
                raise SignInRefusedError(response.json().get("errcode", "M_FORBIDDEN"))
            if response.status_code == 429:
                raise HomeserverUnavailableError("the homeserver rate-limited the sign-in")
            if response.status_code != 200:
                raise HomeserverUnavailableError(f"login answered {response.status_code}")
            data = response.json()
            user_id, token = str(data["user_id"]), str(data["access_token"])
            logout = await client.post("/_matrix/client/v3/logout",
                                       headers={"Authorization": f"Bearer {token}"})
            if logout.status_code != 200:
                logger.warning("console sign-in: logging %s's check session out answered %d",
                               user_id, logout.status_code)
            return user_id
    except httpx.HTTPError as exc:
        raise HomeserverUnavailableError(f"{type(exc).__name__}: {exc}") from None


def console_person(store: Store, config: ConsoleSettings, user_id: str) -> Person | None:
    """The console user behind a Matrix ID, or None: not an active employee with an active
    account and a console role. Asked at sign-in and again on every request."""
    with store.session() as session:
        account = repo.get_account(session, user_id)
        if account is None or not account.active:
            return None
        employee = repo.get_employee(session, account.employee_id)
        if employee is None or employee.status != "active":
            return None
        roles = config.roles_for(employee.groups)
        if not roles:
            return None
        return Person(user_id=user_id, employee_id=employee.employee_id,
                      display_name=employee.display_name, roles=roles)
