"""The provisioner's own Synapse account: a server admin, created once with the shared secret.

Its access token is kept in `keys/service_account_token` (0600) and reused; it is never
logged. The account is protected: no sync, guard or offboarding ever touches it.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from urllib.parse import quote

import httpx

from provisioner.errors import HauspostError
from provisioner.homeserver.synapse_admin import AdminApiError, SynapseAdmin
from provisioner.private_files import write_private
from provisioner.settings import Settings

logger = logging.getLogger(__name__)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


async def _token_works(base_url: str, token: str) -> bool:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        resp = await http.get("/_matrix/client/v3/account/whoami",
                              headers={"Authorization": f"Bearer {token}"})
        return resp.status_code == 200


async def _password_login(base_url: str, user_id: str, password: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        resp = await http.post("/_matrix/client/v3/login", json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
            "initial_device_display_name": "hauspost provisioner",
        })
    if resp.status_code != 200:
        raise HauspostError(f"service account {user_id} cannot log in ({resp.status_code})")
    token: str = resp.json()["access_token"]
    return token


async def ensure_service_token(settings: Settings) -> str:
    """Return a working admin token for the service account, creating the account if needed."""
    keys = settings.service_token_file.parent
    token = _read(settings.service_token_file)
    if token and await _token_works(settings.homeserver_url, token):
        return token  # exempted when this token was issued: no extra request per command
    password_file = keys / "service_account_password"
    password = _read(password_file)
    if password is None:
        password = secrets.token_urlsafe(32)
        write_private(password_file, password + "\n")
    shared_secret = _read(keys / "registration_shared_secret")
    if shared_secret is None:
        raise HauspostError(f"{keys / 'registration_shared_secret'} is missing: run `hauspost init`")
    async with SynapseAdmin(settings.homeserver_url, None) as admin:
        try:
            data = await admin.register_with_shared_secret(
                settings.service_localpart, password, shared_secret, admin=True)
            token = str(data["access_token"])
            logger.info("created service account %s", settings.service_user_id)
        except AdminApiError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise
            token = await _password_login(settings.homeserver_url, settings.service_user_id,
                                          password)
    write_private(settings.service_token_file, token + "\n")
    await exempt_from_rate_limits(settings.homeserver_url, token, settings.service_user_id)
    return token


async def exempt_from_rate_limits(base_url: str, token: str, user_id: str) -> None:
    """The provisioner creates rooms and force-joins hundreds of people in one run; Synapse's
    per-user limits (rc_room_creation, rc_message, rc_joins) are meant for humans."""
    async with SynapseAdmin(base_url, token) as admin:
        await exempt_user(admin, user_id)


def _override_path(user_id: str) -> str:
    return f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit"


async def is_exempt(admin: SynapseAdmin, user_id: str) -> bool:
    """Whether `user_id` has Synapse's per-user override "0 = unlimited"."""
    current = (await admin.request("GET", _override_path(user_id))).json()
    return bool(current.get("messages_per_second") == 0 and current.get("burst_count") == 0)


async def exempt_user(admin: SynapseAdmin, user_id: str) -> bool:
    """Lift Synapse's per-user rate limits for one of our own accounts (messages, room
    creation, invites, to-device messages: every limiter that knows the requester);
    returns whether it had to be set. Logins are limited per address and account, never
    per requester: the accounts avoid them by keeping their tokens."""
    if await is_exempt(admin, user_id):
        return False
    await admin.request("POST", _override_path(user_id),
                        json={"messages_per_second": 0, "burst_count": 0})
    logger.info("%s exempted from per-user rate limits", user_id)
    return True
