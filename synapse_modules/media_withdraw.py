"""`POST /_synapse/client/hauspost/media/withdraw`: the uploader takes a file back.

Request (with the employee's own access token)::

    POST /_synapse/client/hauspost/media/withdraw
    Authorization: Bearer <token>
    {"content_uri": "mxc://example.com/AbCdEf"}

Answers 200 `{"content_uri": ..., "withdrawn": true, "deleted": true|false}`.
`deleted` says whether this process also removed the bytes already; if not, the
sweep does it. The file is unreachable either way from the moment of the answer.
A file that is not the requester's answers 404, like an unknown one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import (
    DirectServeJsonResource,
    ModuleApi,
    SynapseRequest,
    parse_json_object_from_request,
)
from synapse.module_api.errors import Codes, SynapseError

from synapse_modules.media_store import MediaStore

logger = logging.getLogger(__name__)

WITHDRAW_PATH = "/_synapse/client/hauspost/media/withdraw"

_MXC = re.compile(r"^mxc://(?P<server>[^/]+)/(?P<media_id>[A-Za-z0-9_-]+)$")

DeleteNow = Callable[[str], Awaitable[bool]]


def parse_content_uri(body: dict[str, Any], server_name: str) -> str:
    """The local media ID named by `content_uri`, or a 400 saying what is wrong."""
    unknown = sorted(set(body) - {"content_uri"})
    if unknown:
        raise SynapseError(400, f"Unknown field {unknown[0]!r}; expected only 'content_uri'",
                           Codes.BAD_JSON)
    uri = body.get("content_uri")
    if not isinstance(uri, str):
        raise SynapseError(400, "'content_uri' must be an mxc:// URI string",
                           Codes.MISSING_PARAM if uri is None else Codes.INVALID_PARAM)
    match = _MXC.match(uri)
    if match is None:
        raise SynapseError(400, f"'content_uri' is not an mxc:// URI: {uri!r}",
                           Codes.INVALID_PARAM)
    if match.group("server") != server_name:
        raise SynapseError(400, f"'content_uri' names another server; only files uploaded "
                           f"to {server_name} can be withdrawn here", Codes.INVALID_PARAM)
    return match.group("media_id")


class WithdrawResource(DirectServeJsonResource):
    def __init__(self, api: ModuleApi, store: MediaStore, delete_now: DeleteNow) -> None:
        super().__init__()
        self._api = api
        self._store = store
        self._delete_now = delete_now

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, dict[str, Any]]:  # noqa: N802
        requester = await self._api.get_user_by_req(request)
        user_id = requester.user.to_string()
        body = parse_json_object_from_request(request)
        media_id = parse_content_uri(body, self._api.server_name)
        result = await self._store.withdraw(media_id, user_id,
                                            self._api.get_current_time_msec())
        if not result.found:
            raise SynapseError(404, "Not found", Codes.NOT_FOUND)
        deleted = await self._delete_now(media_id)
        if not result.already_withdrawn:
            logger.info("%s withdrew media %s (bytes deleted now: %s)", user_id, media_id,
                        deleted)
        return 200, {"content_uri": body["content_uri"], "withdrawn": True, "deleted": deleted}
