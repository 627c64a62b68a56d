"""Accounts, names and faces only from HR (docs/policy-modules.md "Identity").

* **No account without a plan.** The provisioner creates every account ahead of its first
  login through Synapse's admin API. Every other way to create one is refused with 403
  before anything is written: the LDAP module's account at a first successful bind, SSO or
  JWT just-in-time accounts, a module calling `register_user`, `/register` if it is ever
  switched on. So a login filter that is too wide, a disabled new hire or a person the sync
  skipped cannot make an account that no plan shows. Decided in
  `check_registration_for_spam`, which Synapse calls at the start of every registration,
  from the HTTP request being served (only admin-API paths, which Synapse serves to server
  admins and the registration shared secret alone, and the provisioner's batched path of
  `synapse_modules.accounts_batch`, which serves the service account alone, may create
  accounts).
* **Names and faces from HR in every room.** A membership event that shows a display name
  or avatar other than the person's global profile (which only the provisioner sets) is
  refused for everyone but the provisioner: no "Geschäftsführung" per-room nickname, even
  if `allow_per_room_profiles` is switched back on. The provisioner's renames reach every
  room, because Synapse updates the global profile before it re-sends the member events.

Both fail closed: if a check cannot decide, the action is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from synapse.module_api import EventBase, JsonDict, ModuleApi, StateMap
from synapse.spam_checker_api import RegistrationBehaviour

from synapse_modules._config import ConfigReader
from synapse_modules._fail_closed import Refusal, event_allowed, fail_closed_raising
from synapse_modules.accounts_batch import BATCH_PATH
from synapse_modules.event_rules_state import register_check_event_allowed
from synapse_modules.request_context import current_request_path

logger = logging.getLogger(__name__)

MEMBER = "m.room.member"
ADMIN_API_PREFIX = "/_synapse/admin/"
PROFILE_FIELDS = (("displayname", "display name"), ("avatar_url", "avatar"))

REGISTRATION_REFUSED = (
    "Accounts on this server are created by HR, not at login. If you started recently, "
    "your account will be there after the next directory sync; otherwise ask IT."
)


@dataclass(frozen=True)
class IdentityConfig:
    #: The provisioner's service account(s): exempt from the profile check.
    provisioner_users: frozenset[str]


def parse_identity_config(raw: object) -> IdentityConfig:
    reader = ConfigReader(raw)
    users = reader.provisioner_users()
    reader.finish()
    return IdentityConfig(provisioner_users=users)


# --------------------------------------------------------------------------------------
# Pure decisions.
# --------------------------------------------------------------------------------------


def refuse_registration(request_path: str | None) -> Refusal | None:
    """Only the admin API and the provisioner's batched path create accounts; a
    registration outside a request is refused."""
    if request_path is not None and (request_path.startswith(ADMIN_API_PREFIX)
                                     or request_path == BATCH_PATH):
        return None
    return Refusal(REGISTRATION_REFUSED)


def refuse_own_profile(content: Mapping[str, Any], display_name: str | None,
                       avatar_url: str | None) -> Refusal | None:
    """A member event may carry the global profile's values, or none; never others."""
    expected = {"displayname": display_name, "avatar_url": avatar_url}
    for key, words in PROFILE_FIELDS:
        shown = content.get(key)
        if shown is not None and shown != expected[key]:
            return Refusal(f"Your {words} comes from HR and is the same in every room; "
                           "a different one for this room is not allowed.")
    return None


# --------------------------------------------------------------------------------------
# The module.
# --------------------------------------------------------------------------------------


class IdentityPolicy:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: IdentityConfig, api: ModuleApi) -> None:
        self._config = config
        self._api = api
        current_request_path()  # the internal it reads exists (else Synapse refuses to start)
        api.register_spam_checker_callbacks(
            check_registration_for_spam=self.check_registration_for_spam)
        register_check_event_allowed(api, self.check_event_allowed, reads=())

    @staticmethod
    def parse_config(config: dict[str, Any]) -> IdentityConfig:
        return parse_identity_config(config)

    @fail_closed_raising
    async def check_registration_for_spam(self, email_threepid: JsonDict | None,
                                          username: str | None,
                                          request_info: Collection[tuple[str, str]],
                                          auth_provider_id: str | None = None
                                          ) -> RegistrationBehaviour:
        path = current_request_path()
        refusal = refuse_registration(path)
        if refusal is not None:
            logger.warning("refusing to create account %r (request %s, provider %s): "
                           "accounts come from the provisioner", username, path,
                           auth_provider_id)
            # Raised, not returned: Synapse would answer DENY with a misleading 429. A
            # password provider's registration fails its login with 403 M_FORBIDDEN.
            raise refusal.as_error()
        return RegistrationBehaviour.ALLOW

    @fail_closed_raising
    async def check_event_allowed(self, event: EventBase, state: StateMap[EventBase]
                                  ) -> tuple[bool, JsonDict | None]:
        return event_allowed(await self._refuse(event), event, logger)

    async def _refuse(self, event: EventBase) -> Refusal | None:
        if event.type != MEMBER or event.sender in self._config.provisioner_users:
            return None
        target = event.state_key
        content = event.content
        if target is None or not self._api.is_mine(target) or not any(
                content.get(key) is not None for key, _ in PROFILE_FIELDS):
            return None
        profile = await self._api.get_profile_for_user(target[1:].partition(":")[0])
        return refuse_own_profile(content, profile.display_name, profile.avatar_url)
