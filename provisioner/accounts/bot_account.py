"""The announcement bot's account (admin API only, no matrix-nio).

Kept apart from `bot.py` so the room sync can make sure the account exists before it
joins the bot to the read-only org rooms, without importing the E2EE client.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path

from provisioner.announcements.config import AnnouncementConfig, load_announcement_config
from provisioner.errors import ConfigError
from provisioner.homeserver.service_account import ensure_service_token, exempt_user
from provisioner.homeserver.synapse_admin import SynapseAdmin, q
from provisioner.private_files import write_private
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store import repository as repo

logger = logging.getLogger(__name__)

PASSWORD_FILE = "bot_password"  # noqa: S105 - a file name, not a password


def bot_user_id(config: AnnouncementConfig, server_name: str) -> str:
    return f"@{config.bot_localpart}:{server_name}"


def bot_password_file(settings: Settings) -> Path:
    """Next to the service account's token (`keys/`), as `bot.BotFiles.password`."""
    return settings.service_token_file.parent / PASSWORD_FILE


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _secret(path: Path) -> str:
    value = _read_secret(path)
    if value is None:
        value = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, value + "\n")
    return value


async def ensure_bot_account(admin: SynapseAdmin, user_id: str, display_name: str,
                             password_file: Path) -> tuple[str, str | None]:
    """Create the bot account (not a server admin) if needed, exempt from Synapse's per-user
    rate limits (a reminder tick opens hundreds of direct chats; `rc_room_creation` and
    `rc_message` are meant for people).

    Returns its password and what was changed ("created", "password set", "reactivated",
    "rate limits lifted") or None, for the audit log.
    """
    existing = await admin.get_account(user_id)
    had_password = password_file.exists()
    password = _secret(password_file)
    change = ("created" if existing is None else "reactivated" if existing.deactivated
              else None if had_password else "password set")
    if change is not None:
        # A lost password file means a new password; logout_devices false keeps the device.
        await admin.request("PUT", f"/_synapse/admin/v2/users/{q(user_id)}", json={
            "password": password, "displayname": display_name, "admin": False,
            "deactivated": False, "logout_devices": False}, ok=(200, 201))
        logger.info("bot account %s: %s", user_id, change)
    if await exempt_user(admin, user_id) and change is None:
        change = "rate limits lifted"
    return password, change


async def bootstrap_own_accounts(settings: Settings) -> str:
    """What `hauspost run` does once Synapse answers: the service account's token, and the
    rate-limit exemption of our own accounts checked (and set where missing)."""
    token = await ensure_service_token(settings)
    async with SynapseAdmin(settings.homeserver_url, token) as admin:
        lifted = await exempt_own_accounts(settings, admin)
    if lifted:
        logger.warning("per-user rate limits were in force for %s; lifted", ", ".join(lifted))
    return token


async def exempt_own_accounts(settings: Settings, admin: SynapseAdmin) -> list[str]:
    """`hauspost run` at start: the service account and (if its account exists) the
    announcement bot are exempt from per-user rate limits; returns the ones that were not."""
    try:
        bot: str | None = bot_user_id(load_announcement_config(settings.data_dir),
                                      settings.server_name)
    except ConfigError as exc:
        # Serving the homeserver must not hinge on the announcements' file; `announce`
        # reports the error, and the bot's own start checks its exemption again.
        logger.error("the announcement bot's rate limits are not checked: %s", exc)
        bot = None
    lifted: list[str] = []
    for user_id in (settings.service_user_id, bot):
        if user_id is None or (user_id == bot and await admin.get_account(user_id) is None):
            continue  # the bot: created (and exempted) by its first `announce` or room sync
        if await exempt_user(admin, user_id):
            lifted.append(user_id)
    return lifted


def audit_bot_account_change(store: Store, user_id: str, change: str, *, actor: str,
                             reason: str, run_id: int | None = None) -> None:
    """One audit row for what `ensure_bot_account` changed ("password set" ->
    `bot.password_set`, "rate limits lifted" -> `bot.rate_limits_lifted`), whoever made the
    bot ready."""
    with store.session() as session:
        repo.append_audit(session, actor=actor, action=f"bot.{change.replace(' ', '_')}",
                          target=user_id, now=datetime.now(UTC), run_id=run_id, reason=reason)
