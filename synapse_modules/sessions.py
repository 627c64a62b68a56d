"""A leaver has no session left, whoever opened it (docs/policy-modules.md "Leaver sessions").

Synapse's deactivation deletes the account's own devices and tokens. Two doors stay open:

* a token an administrator obtained *on the person's behalf* through the admin API
  (`POST /_synapse/admin/v1/users/<user>/login`) belongs to the admin's session, so it
  survives the deactivation and keeps acting as — and reading the rooms of — the leaver;
* the same admin API issues such a token for an account that is already deactivated, and
  Synapse never checks a token's account for deactivation afterwards.

This module closes both for every deactivation, whoever makes it (`hauspost offboard`, a
SCIM `active: false`, the admin API directly, an admin tool):

* `on_user_deactivation_status_changed` deletes every access token that acts as the
  person (with Synapse's own `AuthHandler.delete_access_token`, which invalidates every
  worker's token cache; the module API's `invalidate_access_token` crashes on 1.163 —
  it treats the Requester it gets back as a dict);
* Synapse's one place that issues access tokens,
  `AuthHandler.create_access_token_for_user_id`, refuses to issue a token that would act as
  a deactivated account (login, login-as, any future login method). The auth handler is the
  one internal this module uses; its two methods are checked when the module loads, and
  Synapse refuses to start if they changed. Fails closed: if the account can't be checked,
  no token is issued.

For the access review it also lists, to server admins only, the tokens that act as
somebody else (`GET /_synapse/client/hauspost/admin_tokens`): who issued each for whom,
until when, last used — never the token itself.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from synapse.http.server import DirectServeJsonResource
from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, ConfigError, SynapseError

from synapse_modules._config import ConfigReader

logger = logging.getLogger(__name__)

TOKEN_PARAMS = ("user_id", "device_id", "valid_until_ms", "puppets_user_id")
_GUARDED_MARK = "_hauspost_leaver_sessions"

DEACTIVATED = "This account has been deactivated: no new session can be opened for it."


@dataclass(frozen=True)
class SessionsConfig:
    pass


def parse_sessions_config(raw: object) -> SessionsConfig:
    ConfigReader(raw).finish()
    return SessionsConfig()


def token_subject(user_id: str, puppets_user_id: str | None) -> str:
    """The account a token acts as: the puppeted one for a login-as token."""
    return puppets_user_id or user_id


def guard_token_issuing(handler: Any, is_deactivated: Callable[[str], Awaitable[bool]]) -> None:
    """Wrap `handler.create_access_token_for_user_id` (idempotent per handler)."""
    original = getattr(handler, "create_access_token_for_user_id", None)
    if original is None or not inspect.iscoroutinefunction(original):
        raise ConfigError("synapse_modules.sessions: AuthHandler.create_access_token_for_user_id "
                          "is missing; this Synapse is not supported (tested: 1.163.x)")
    params = tuple(inspect.signature(original).parameters)[:len(TOKEN_PARAMS)]
    if params != TOKEN_PARAMS:
        raise ConfigError("synapse_modules.sessions: AuthHandler.create_access_token_for_user_id"
                          f" takes {params}, expected {TOKEN_PARAMS} (tested: Synapse 1.163.x)")
    if getattr(original, _GUARDED_MARK, False):
        return

    async def guarded(user_id: str, device_id: str | None, valid_until_ms: int | None,
                      puppets_user_id: str | None = None, *args: Any, **kwargs: Any) -> str:
        subject = token_subject(user_id, puppets_user_id)
        try:
            deactivated = await is_deactivated(subject)
        except Exception:
            logger.exception("cannot check whether %s is deactivated; refusing a token", subject)
            raise SynapseError(403, "The account check failed; no session was opened.",
                               Codes.FORBIDDEN) from None
        if deactivated:
            logger.warning("refusing a new access token acting as deactivated %s (token of %s)",
                           subject, user_id)
            raise SynapseError(403, DEACTIVATED, Codes.USER_DEACTIVATED)
        token: str = await original(user_id, device_id, valid_until_ms, puppets_user_id,
                                    *args, **kwargs)
        return token

    setattr(guarded, _GUARDED_MARK, True)
    handler.create_access_token_for_user_id = guarded


def _puppet_tokens(txn: Any, user_id: str) -> list[str]:
    txn.execute("SELECT token FROM access_tokens WHERE puppets_user_id = ?", (user_id,))
    return [str(row[0]) for row in txn.fetchall()]


ADMIN_TOKENS_PATH = "/_synapse/client/hauspost/admin_tokens"


def _admin_issued_tokens(txn: Any) -> list[dict[str, Any]]:
    txn.execute("SELECT id, user_id, puppets_user_id, valid_until_ms, last_validated"
                " FROM access_tokens WHERE puppets_user_id IS NOT NULL ORDER BY id")
    return [{"id": row[0], "issued_by": row[1], "acts_as": row[2],
             "valid_until_ms": row[3], "last_used_ms": row[4]} for row in txn.fetchall()]


class AdminTokensResource(DirectServeJsonResource):
    """Tokens that act as another account (admin "login as"), for server admins only."""

    def __init__(self, api: ModuleApi) -> None:
        super().__init__()
        self._api = api

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict[str, Any]]:  # noqa: N802
        requester = await self._api.get_user_by_req(request)
        if not await self._api.is_user_admin(requester.user.to_string()):
            raise SynapseError(403, "server admins only", Codes.FORBIDDEN)
        tokens = await self._api.run_db_interaction("hauspost_admin_tokens",
                                                    _admin_issued_tokens)
        return 200, {"tokens": tokens}


class LeaverSessions:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: SessionsConfig, api: ModuleApi) -> None:
        self._api = api
        hs = getattr(api, "_hs", None)
        get_handler = getattr(hs, "get_auth_handler", None)
        if not callable(get_handler):
            raise ConfigError("synapse_modules.sessions: the homeserver has no auth handler "
                              "(tested: Synapse 1.163.x)")
        handler = get_handler()
        if not inspect.iscoroutinefunction(getattr(handler, "delete_access_token", None)):
            raise ConfigError("synapse_modules.sessions: AuthHandler.delete_access_token is "
                              "missing; this Synapse is not supported (tested: 1.163.x)")
        self._delete_access_token: Callable[[str], Awaitable[None]] = \
            handler.delete_access_token
        guard_token_issuing(handler, self._is_deactivated)
        api.register_third_party_rules_callbacks(
            on_user_deactivation_status_changed=self.on_user_deactivation_status_changed)
        api.register_web_resource(ADMIN_TOKENS_PATH, AdminTokensResource(api))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> SessionsConfig:
        return parse_sessions_config(config)

    async def _is_deactivated(self, user_id: str) -> bool:
        info = await self._api.get_userinfo_by_id(user_id)
        return info is not None and info.is_deactivated

    async def on_user_deactivation_status_changed(self, user_id: str, deactivated: bool,
                                                  by_admin: bool) -> None:
        if not deactivated:
            return
        tokens = await self._api.run_db_interaction("hauspost_puppet_tokens", _puppet_tokens,
                                                    user_id)
        for token in tokens:
            await self._delete_access_token(token)
        if tokens:
            logger.info("deleted %d token(s) acting as deactivated %s", len(tokens), user_id)
