"""The company directory without Synapse's table of who shares a private room with whom.

Our homeserver's user directory lists every colleague (`user_directory.search_all_users:
true`, written by `hauspost init`). Synapse still keeps, for every private room, a row
for every ordered pair of its members in `users_who_share_private_rooms` (Synapse issue
#3849, "explodes in size O(N^2)"): each join into the all-hands room of 10,000 writes
20,000 rows, and the company's five rooms that everybody is in (all-hands and four spaces)
would hold 500 million rows. Synapse reads that table in exactly two places: the search,
when `search_all_users` is false, and the clean-up of *remote* users. With
`search_all_users: true` and federation off (`federation_domain_whitelist: []`), neither
can happen, so the table is never read on this server.

This module stops writing it, on the process that updates the user directory, and only
when both conditions hold: `UserDirectoryHandler._track_user_joined_room` skips private
rooms (public rooms keep Synapse's path; our policy refuses public rooms anyway) and the
store's `add_users_who_share_private_room` (also used by the directory's full rebuild)
writes nothing. Search results are unchanged: every local account, as before.

If either condition does not hold, or Synapse's internals changed shape, Synapse keeps its
own behaviour and the log says why (correct, just the O(N^2) cost). Switching
`search_all_users` off later needs the directory rebuilt (Synapse's admin API,
`POST /_synapse/admin/v1/background_updates/start_job` with `regenerate_directory`), which
then fills the table again because the module stands aside.

Tested with Synapse 1.163.x.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from synapse.module_api import ModuleApi

from synapse_modules._config import ConfigReader
from synapse_modules._synapse_shape import method_problem

logger = logging.getLogger(__name__)

TRACK_PARAMS = ("room_id", "joining_user_id")
ADD_PAIRS_PARAMS = ("room_id", "user_id_tuples")
_WRAPPED_MARK = "_hauspost_company_directory"


@dataclass(frozen=True)
class CompanyDirectoryConfig:
    pass


def parse_company_directory_config(raw: object) -> CompanyDirectoryConfig:
    ConfigReader(raw).finish()
    return CompanyDirectoryConfig()


def pairs_unread_reason(*, search_all_users: object, federation_whitelist: object,
                        updates_directory: object) -> str | None:
    """Why this process must keep writing the sharing pairs, or None if nobody reads them."""
    if updates_directory is not True:
        return "this process does not update the user directory"
    if search_all_users is not True:
        return ("user_directory.search_all_users is off: the search reads who shares a "
                "private room with whom")
    if not isinstance(federation_whitelist, dict) or federation_whitelist:
        return ("federation is not off (federation_domain_whitelist is not []): remote users "
                "are cleaned up from the sharing pairs")
    return None


def skip_private_pairs(handler: Any, store: Any) -> str | None:
    """Wrap the two internals (idempotent); the reason if they are not as expected."""
    problem = (method_problem(handler, "_track_user_joined_room", TRACK_PARAMS, exact=True)
               or method_problem(store, "add_users_who_share_private_room", ADD_PAIRS_PARAMS,
                                 exact=True)
               or method_problem(store, "is_room_world_readable_or_publicly_joinable",
                                 ("room_id",), exact=True))
    if problem is not None:
        return problem
    if getattr(handler, _WRAPPED_MARK, False):
        return None
    track: Callable[[str, str], Awaitable[None]] = handler._track_user_joined_room
    is_public: Callable[[str], Awaitable[bool]] = (
        store.is_room_world_readable_or_publicly_joinable)

    async def track_user_joined_room(room_id: str, joining_user_id: str) -> None:
        if await is_public(room_id):
            await track(room_id, joining_user_id)  # users_in_public_rooms: one row

    async def add_users_who_share_private_room(room_id: str,
                                               user_id_tuples: Any) -> None:
        return None  # never read on this server (module docstring)

    handler._track_user_joined_room = track_user_joined_room
    store.add_users_who_share_private_room = add_users_who_share_private_room
    setattr(handler, _WRAPPED_MARK, True)
    return None


class CompanyDirectory:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: CompanyDirectoryConfig, api: ModuleApi) -> None:
        hs = getattr(api, "_hs", None)
        config_root = getattr(hs, "config", None)
        reason = pairs_unread_reason(
            search_all_users=getattr(getattr(config_root, "userdirectory", None),
                                     "user_directory_search_all_users", None),
            federation_whitelist=getattr(getattr(config_root, "federation", None),
                                         "federation_domain_whitelist", None),
            updates_directory=getattr(getattr(config_root, "worker", None),
                                      "should_update_user_directory", None))
        if reason is None:
            get_handler = getattr(hs, "get_user_directory_handler", None)
            get_stores = getattr(hs, "get_datastores", None)
            if not callable(get_handler) or not callable(get_stores):
                reason = "the homeserver has no user directory handler or data stores"
            else:
                reason = skip_private_pairs(get_handler(), get_stores().main)
        if reason is None:
            logger.info("Hauspost company directory: not writing users_who_share_private_rooms "
                        "(search_all_users on, federation off: nobody reads it)")
        else:
            logger.info("Hauspost company directory: Synapse keeps writing "
                        "users_who_share_private_rooms (%s)", reason)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> CompanyDirectoryConfig:
        return parse_company_directory_config(config)
