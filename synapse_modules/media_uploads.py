"""What may be uploaded: size from the client's claim, type from the file's first bytes.

Part of the media gate (synapse_modules/media_gate.py); the rules themselves are pure
functions in synapse_modules/media_policy.py.
"""

from __future__ import annotations

import logging
from io import BytesIO
from typing import Any

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_modules.media_policy import (
    PROGRAM_EXTENSIONS,
    MediaGateConfig,
    detect_media_type,
    media_type_refusal,
    upload_size_allowed,
)

logger = logging.getLogger(__name__)

# Enough to recognise every signature in media_policy.detect_media_type.
SNIFF_BYTES = 4096


class _StopReadingError(Exception):
    """Stops reading an upload once its first bytes are in."""


class UploadPolicy:
    def __init__(self, config: MediaGateConfig) -> None:
        self._config = config

    def register(self, api: ModuleApi) -> None:
        api.register_spam_checker_callbacks(check_media_file_for_spam=self.check_content)
        api.register_media_repository_callbacks(
            get_media_config_for_user=self.media_config_for_user,
            is_user_allowed_to_upload_media_of_size=self.size_allowed,
        )

    async def media_config_for_user(self, user_id: str) -> dict[str, Any]:
        # Clients read m.upload.size and refuse too large files before uploading; the
        # type rules are there for apps and admins to read (no spec key exists for them).
        return {"m.upload.size": self._config.max_upload_bytes,
                "de.hauspost.upload.allowed_types": sorted(self._config.allowed_media_types),
                "de.hauspost.upload.refused_extensions": sorted(PROGRAM_EXTENSIONS)}

    async def size_allowed(self, user_id: str, size: int) -> bool:
        allowed = upload_size_allowed(self._config, size)
        if not allowed:
            logger.info("Refused upload of %d bytes by %s (limit %d)", size, user_id,
                        self._config.max_upload_bytes)
        return allowed

    async def check_content(self, file_wrapper: Any, file_info: Any) -> Any:
        # Thumbnails are made by Synapse itself; remote media is never fetched.
        if getattr(file_info, "thumbnail", None) is not None or file_info.server_name:
            return NOT_SPAM
        buffer = BytesIO()

        def collect(chunk: bytes) -> None:
            buffer.write(chunk)
            if buffer.tell() >= SNIFF_BYTES:
                raise _StopReadingError

        try:
            await file_wrapper.write_chunks_to(collect)
        except _StopReadingError:
            pass
        detected = detect_media_type(buffer.getvalue()[:SNIFF_BYTES])
        refusal = media_type_refusal(self._config, detected)
        if refusal is None:
            return NOT_SPAM
        logger.info("Refused upload %s: detected type %s", file_info.file_id, detected)
        # Raised rather than returned: Synapse turns a returned code into a bare
        # "Bad content"; the raised error reaches the client with our message.
        raise SynapseError(403, refusal, Codes.FORBIDDEN)
