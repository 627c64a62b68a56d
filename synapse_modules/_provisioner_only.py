"""Resources only the provisioner's service account may use (batched accounts, batched
memberships, the compact room read): the requester must be one of the module's
`provisioner_users` and a server admin. Fails closed: a check that cannot decide refuses."""

from __future__ import annotations

import logging
from collections.abc import Collection

from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

logger = logging.getLogger(__name__)


def requester_allowed(user_id: str, is_admin: bool, provisioner_users: Collection[str]) -> bool:
    return user_id in provisioner_users and is_admin


async def authorise_provisioner(api: ModuleApi, request: SynapseRequest,
                                provisioner_users: Collection[str], refusal: str) -> str:
    """The requester's user ID; 401 without a valid token, 403 (`refusal`) for anybody
    but the provisioner."""
    requester = await api.get_user_by_req(request)
    user_id = requester.user.to_string()
    try:
        is_admin = await api.is_user_admin(user_id)
    except Exception:
        logger.exception("cannot check whether %s is a server admin; refusing", user_id)
        is_admin = False
    if not requester_allowed(user_id, is_admin, provisioner_users):
        logger.warning("refusing %s to %s", request.path.decode("ascii", "replace"), user_id)
        raise SynapseError(403, refusal, Codes.FORBIDDEN)
    return user_id
