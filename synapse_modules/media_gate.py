"""Files stay inside: who may download a local file, what may be uploaded, withdrawal.

homeserver.yaml::

    modules:
      - module: synapse_modules.media_gate.MediaGate
        config:
          allowed_media_types: [image/png, image/jpeg, application/pdf,
                                application/octet-stream]  # octet-stream: E2EE files
          max_upload_size: 50M
          leaver_grace_period_days: 30
          sweep_interval_minutes: 60
          sweep_worker: null  # the main process; name a worker that has the media store

One module for one policy, "files stay inside", in small parts: the rules in
media_policy.py, the wrapped Synapse internal in media_internals.py, database state in
media_store.py, uploads in media_uploads.py, the withdraw endpoint in
media_withdraw.py. Admin documentation: docs/media-control.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from synapse.module_api import ModuleApi, Requester, SynapseRequest
from synapse.module_api.errors import ConfigError

from synapse_modules.media_internals import (
    MediaRepositoryLike,
    delete_local_media,
    install_declared_upload_check,
    install_download_gate,
    media_repository_of,
    rooms_for_user_of,
)
from synapse_modules.media_policy import (
    MediaGateConfig,
    declared_upload_refusal,
    may_fetch,
    parse_media_gate_config,
)
from synapse_modules.media_store import MediaStore
from synapse_modules.media_uploads import UploadPolicy
from synapse_modules.media_withdraw import WITHDRAW_PATH, WithdrawResource

logger = logging.getLogger(__name__)

_DAY_MS = 24 * 60 * 60 * 1000


def local_user_of(requester: object, is_mine: Callable[[str], bool]) -> str | None:
    """The local user behind an authenticated request, else None (and so: no file).

    Legacy endpoints authenticate nobody (None); federation requests carry the origin
    server as a string; guests are switched off but refused here too.
    """
    if not isinstance(requester, Requester) or requester.is_guest:
        return None
    user_id = requester.user.to_string()
    return user_id if is_mine(user_id) else None


class MediaGate:
    def __init__(self, config: MediaGateConfig, api: ModuleApi) -> None:
        self._config = config
        self._api = api
        self._store = MediaStore(api, rooms_for_user_of(api))
        # Refuses to start (IncompatibleSynapseError) if the wrapped internal changed.
        self._repo: MediaRepositoryLike | None = media_repository_of(api)
        if self._repo is not None:
            install_download_gate(self._repo, self._may_download)
            install_declared_upload_check(self._repo, declared_upload_refusal)
        UploadPolicy(config).register(api)
        api.register_web_resource(WITHDRAW_PATH,
                                  WithdrawResource(api, self._store, self._delete_now))
        if config.sweep_worker == api.worker_name:
            if self._repo is None:
                raise ConfigError(
                    "sweep_worker: this process runs the sweep but has no media repository "
                    "(enable_media_repo is false); name the media worker instead",
                    ("sweep_worker",))
            # One process deletes; run_on_all_instances because sweep_worker chose it.
            api.looping_background_call(self._sweep, config.sweep_interval_minutes * 60_000,
                                        desc="hauspost_media_sweep", run_on_all_instances=True)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> MediaGateConfig:
        return parse_media_gate_config(config)

    # --- downloads ------------------------------------------------------------------

    async def _may_download(self, request: SynapseRequest, media_id: str,
                            uploader: str | None) -> bool:
        user_id = local_user_of(request.requester, self._api.is_mine)
        if user_id is None or uploader is None:
            return False
        facts = await self._store.facts(media_id, uploader, user_id)
        allowed = may_fetch(user_id, facts)
        if not allowed:
            logger.info("Refused media %s to %s", media_id, user_id)
        return allowed

    # --- withdrawal and leavers -----------------------------------------------------

    async def _delete_now(self, media_id: str) -> bool:
        """Delete the bytes if this process holds the media store (else the sweep does)."""
        if self._repo is None:
            return False
        return media_id in await delete_local_media(self._repo, [media_id])

    async def _sweep(self) -> None:
        if self._repo is None:  # not scheduled then (see __init__); kept for the type
            return
        now = self._api.get_current_time_msec()
        due = await self._store.media_due_for_deletion(
            now, self._config.leaver_grace_period_days * _DAY_MS)
        deleted = await delete_local_media(self._repo, due)
        if deleted:
            logger.info("Deleted %d withdrawn or leavers' files", len(deleted))
