"""The one place where Hauspost reaches into Synapse internals: the media repository.

Synapse has no module hook for downloads (MSC3911 is still open). Every path that
serves a local file or its thumbnail - `/_matrix/client/v1/media/{download,thumbnail}`,
the legacy `/_matrix/media/{r0,v1,v3}/{download,thumbnail}` and
`/_matrix/federation/v1/media/{download,thumbnail}` - first asks
`MediaRepository.get_local_media_info(request, media_id, max_timeout_ms, ...)` for the
file's metadata, after authentication has set `request.requester`. We wrap that one
method on the process's single MediaRepository instance. Withdrawn and leavers' files
are removed with the same object's `delete_local_media_ids`, and the gate reads
Synapse's cached `get_rooms_for_user` (see `rooms_for_user_of`).

Tested with Synapse 1.163.x. The checks here run at start-up and refuse to let Synapse
start when any of these is gone or has changed shape, because a gate that silently
stops being called would serve every file to everyone.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from synapse.module_api import ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_modules._synapse_shape import method_problem

logger = logging.getLogger(__name__)

TESTED_SYNAPSE = "1.163.x"

# Parameter names (after self) the wrapper relies on, in order.
GET_LOCAL_MEDIA_INFO_PARAMS = ("request", "media_id", "max_timeout_ms", "bypass_quarantine")
DELETE_LOCAL_MEDIA_IDS_PARAMS = ("media_ids",)
CREATE_OR_UPDATE_CONTENT_PARAMS = ("media_type", "upload_name", "content", "content_length",
                                   "auth_user", "media_id")
ROOMS_FOR_USER_PARAMS = ("user_id",)

_GATED_MARK = "_hauspost_media_gate"

# (request, media_id, uploader or None) -> may this request have the file?
Gate = Callable[[SynapseRequest, str, str | None], Awaitable[bool]]
RoomsForUser = Callable[[str], Awaitable[frozenset[str]]]


class IncompatibleSynapseError(RuntimeError):
    """Raised at start-up: the internals the media gate wraps are not as expected."""


class MediaRepositoryLike(Protocol):
    """The part of synapse.media.media_repository.MediaRepository we use."""

    async def get_local_media_info(self, request: SynapseRequest, media_id: str,
                                   max_timeout_ms: int,
                                   bypass_quarantine: bool = False) -> Any: ...

    async def delete_local_media_ids(self, media_ids: list[str]) -> tuple[list[str], int]: ...

    async def create_or_update_content(self, media_type: str, upload_name: str | None,
                                       content: Any, content_length: int, auth_user: Any,
                                       media_id: str | None = None) -> Any: ...


def _refuse(what: str) -> IncompatibleSynapseError:
    try:
        from synapse import __version__ as running
    except ImportError:  # pragma: no cover - Synapse always has it
        running = "unknown"
    return IncompatibleSynapseError(
        f"Hauspost media gate: {what}. The gate was tested with Synapse {TESTED_SYNAPSE}; "
        f"this is Synapse {running}. Without the gate every employee could download every "
        "file, so Synapse must not start. Install a tested Synapse version "
        "(pip install 'matrix-synapse>=1.163.2,<1.164') or adapt "
        "synapse_modules/media_internals.py and its tests to the new Synapse."
    )


def _check_method(owner: object, name: str, params: tuple[str, ...]) -> None:
    problem = method_problem(owner, name, params, label="MediaRepository")
    if problem is not None:
        raise _refuse(problem)


def check_media_repository(repo: object) -> MediaRepositoryLike:
    """Refuse (IncompatibleSynapseError) unless `repo` has both methods with the expected shape."""
    _check_method(repo, "get_local_media_info", GET_LOCAL_MEDIA_INFO_PARAMS)
    _check_method(repo, "delete_local_media_ids", DELETE_LOCAL_MEDIA_IDS_PARAMS)
    _check_method(repo, "create_or_update_content", CREATE_OR_UPDATE_CONTENT_PARAMS)
    return cast(MediaRepositoryLike, repo)


def _homeserver_of(api: ModuleApi) -> Any:
    hs = getattr(api, "_hs", None)
    if hs is None or not callable(getattr(hs, "get_media_repository", None)):
        raise _refuse("the module API no longer exposes the homeserver's media repository")
    return hs


def rooms_for_user_of(api: ModuleApi) -> RoomsForUser:
    """Synapse's own cached `get_rooms_for_user(user_id) -> frozenset[room_id]`.

    Read, not wrapped. Synapse invalidates this cache when it persists a membership
    change, and on the other workers as soon as replication delivers it, so the gate
    sees a leave as fast as Synapse itself does; a cache of our own would lag behind.
    It spares the gate a database round trip per download.
    """
    hs = _homeserver_of(api)
    store = getattr(hs.get_datastores(), "main", None)
    method = getattr(store, "get_rooms_for_user", None)
    if method is None or not callable(method):
        raise _refuse("the main data store has no get_rooms_for_user")
    try:
        params = tuple(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        raise _refuse("get_rooms_for_user has no inspectable signature") from None
    # Synapse's @cached wrapper reports the undecorated function's signature, self included.
    found = params[1:2] if params[:1] == ("self",) else params[:1]
    if found != ROOMS_FOR_USER_PARAMS:
        raise _refuse(f"get_rooms_for_user takes ({', '.join(found)}) instead of (user_id)")
    return cast(RoomsForUser, method)


def media_repository_of(api: ModuleApi) -> MediaRepositoryLike | None:
    """This process's MediaRepository (checked), or None if this process serves no media.

    A worker without the media repository never answers a download, so there is
    nothing to gate there; it must not create a MediaRepository of its own either.
    """
    hs = _homeserver_of(api)
    media_config = getattr(getattr(hs, "config", None), "media", None)
    can_load = getattr(media_config, "can_load_media_repo", None)
    if not isinstance(can_load, bool):
        raise _refuse("hs.config.media.can_load_media_repo is missing")
    if not can_load:
        return None
    return check_media_repository(hs.get_media_repository())


_DECLARED_MARK = "_hauspost_declared_upload_check"


def install_declared_upload_check(repo: MediaRepositoryLike,
                                  refuse: Callable[[str | None, str | None], str | None]) -> None:
    """Make every upload (`/upload` and the async `PUT /upload/{server}/{id}`) ask
    `refuse(declared content type, file name)` before a byte is stored.

    Module callbacks see only the bytes; the client's declaration of what the file is —
    which the receiving app believes when it offers to open the file — reaches only
    `MediaRepository.create_or_update_content`, so that one method is wrapped here."""
    original = repo.create_or_update_content
    if getattr(original, _DECLARED_MARK, False):
        return

    async def checked_create_or_update_content(media_type: str, upload_name: str | None,
                                               content: Any, content_length: int,
                                               auth_user: Any, media_id: str | None = None
                                               ) -> Any:
        refusal = refuse(media_type, upload_name)
        if refusal is not None:
            logger.info("Refused upload by %s: declared %r named %r", auth_user, media_type,
                        upload_name)
            raise SynapseError(403, refusal, Codes.FORBIDDEN)
        return await original(media_type, upload_name, content, content_length, auth_user,
                              media_id)

    setattr(checked_create_or_update_content, _DECLARED_MARK, True)
    repo.create_or_update_content = checked_create_or_update_content  # type: ignore[method-assign]


def install_download_gate(repo: MediaRepositoryLike, gate: Gate) -> None:
    """Make every local download and thumbnail ask `gate(request, media_id, uploader)`.

    Synapse's own lookup runs first: it reads the file's row anyway (so the gate needs
    no query of its own to learn the uploader) and answers unknown, quarantined and
    withdrawn IDs itself. A refusal is then the very 404 Synapse sends for an unknown
    ID (same status, errcode and message, which names the request path), so a refused
    requester cannot tell the two apart, and nothing has been sent yet.
    """
    original = repo.get_local_media_info
    if getattr(original, _GATED_MARK, False):
        return

    async def gated_get_local_media_info(request: SynapseRequest, media_id: str,
                                         max_timeout_ms: int,
                                         bypass_quarantine: bool = False) -> Any:
        # Withdrawn files are quarantined until their bytes are gone; the admin-only
        # "bypass quarantine" switch is ignored because admins get no special access.
        info = await original(request, media_id, max_timeout_ms, bypass_quarantine=False)
        if info is None:
            return None  # Synapse has answered (404, or 504 "not yet uploaded")
        uploader = getattr(info, "user_id", None)
        if not await gate(request, media_id, uploader if isinstance(uploader, str) else None):
            # Word for word what Synapse answers for an unknown ID (media/_base.py).
            path = request.path.decode() if request.path is not None else ""
            raise SynapseError(404, f"Not found '{path}'", Codes.NOT_FOUND)
        return info

    setattr(gated_get_local_media_info, _GATED_MARK, True)
    # The instance attribute shadows the class method for every caller: the download
    # and thumbnail servlets and the thumbnail provider all look it up on this object.
    repo.get_local_media_info = gated_get_local_media_info  # type: ignore[method-assign]
    logger.info("Media download gate installed on MediaRepository.get_local_media_info")


async def delete_local_media(repo: MediaRepositoryLike, media_ids: list[str]) -> list[str]:
    """Remove files, thumbnails and their database rows; returns the IDs actually removed."""
    if not media_ids:
        return []
    deleted, _count = await repo.delete_local_media_ids(media_ids)
    return list(deleted)
