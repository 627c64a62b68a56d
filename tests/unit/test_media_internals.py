"""The start-up check of the one wrapped Synapse internal, and the wrapper itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from synapse.media.media_repository import MediaRepository
from synapse.module_api.errors import SynapseError

from synapse_modules.media_internals import (
    IncompatibleSynapseError,
    check_media_repository,
    install_download_gate,
    media_repository_of,
    rooms_for_user_of,
)


class ShapedLike163:
    """The three methods with the exact shape of Synapse 1.163."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []

    async def get_local_media_info(self, request: Any, media_id: str, max_timeout_ms: int,
                                   bypass_quarantine: bool = False) -> str:
        self.calls.append((media_id, max_timeout_ms, bypass_quarantine))
        return f"info:{media_id}"

    async def delete_local_media_ids(self, media_ids: list[str]) -> tuple[list[str], int]:
        return media_ids, len(media_ids)

    async def create_or_update_content(self, media_type: str, upload_name: str | None,
                                       content: Any, content_length: int, auth_user: Any,
                                       media_id: str | None = None) -> str:
        return f"mxc://x/{media_id or upload_name}"


class OldUpload(ShapedLike163):
    async def create_or_update_content(  # type: ignore[override]
            self, upload_name: str | None, media_type: str, content: Any,
            content_length: int, auth_user: Any, media_id: str | None = None) -> str:
        return ""


class Renamed:
    async def get_local_media_metadata(self, request: Any, media_id: str,
                                       max_timeout_ms: int) -> None: ...

    async def delete_local_media_ids(self, media_ids: list[str]) -> tuple[list[str], int]:
        return [], 0


class Reordered(ShapedLike163):
    async def get_local_media_info(self, media_id: str, request: Any,  # type: ignore[override]
                                   max_timeout_ms: int, bypass_quarantine: bool = False) -> str:
        return ""


class Synchronous(ShapedLike163):
    def get_local_media_info(self, request: Any, media_id: str,  # type: ignore[override]
                             max_timeout_ms: int, bypass_quarantine: bool = False) -> str:
        return ""


class NoDelete:
    async def get_local_media_info(self, request: Any, media_id: str, max_timeout_ms: int,
                                   bypass_quarantine: bool = False) -> None: ...


def test_the_installed_synapse_has_the_expected_shape() -> None:
    # Against the real class, not a copy: this fails the day Synapse changes it.
    check_media_repository(MediaRepository.__new__(MediaRepository))


def test_a_compatible_repository_passes() -> None:
    repo = ShapedLike163()
    assert check_media_repository(repo) is repo


@pytest.mark.parametrize(("repo", "message"), [
    (Renamed(), "MediaRepository.get_local_media_info is missing"),
    (Reordered(), "MediaRepository.get_local_media_info takes (media_id, request, "
                  "max_timeout_ms, bypass_quarantine) instead of (request, media_id, "
                  "max_timeout_ms, bypass_quarantine)"),
    (Synchronous(), "MediaRepository.get_local_media_info is no longer a coroutine function"),
    (NoDelete(), "MediaRepository.delete_local_media_ids is missing"),
    (OldUpload(), "MediaRepository.create_or_update_content takes (upload_name, media_type, "
                  "content, content_length, auth_user, media_id) instead of (media_type, "
                  "upload_name, content, content_length, auth_user, media_id)"),
])
def test_a_changed_repository_refuses_to_start(repo: object, message: str) -> None:
    with pytest.raises(IncompatibleSynapseError) as excinfo:
        check_media_repository(repo)
    text = str(excinfo.value)
    assert text.startswith(f"Hauspost media gate: {message}. The gate was tested with "
                           "Synapse 1.163.x; this is Synapse ")
    assert "Synapse must not start" in text


def test_module_api_without_homeserver_refuses() -> None:
    class Api:
        pass

    with pytest.raises(IncompatibleSynapseError, match="no longer exposes the homeserver"):
        media_repository_of(Api())  # type: ignore[arg-type]


def test_worker_without_media_repository_gets_no_gate() -> None:
    class Media:
        can_load_media_repo = False

    class Config:
        media = Media()

    class Hs:
        config = Config()

        def get_media_repository(self) -> object:
            raise AssertionError("a worker without media must not build a media repository")

    class Api:
        _hs = Hs()

    assert media_repository_of(Api()) is None  # type: ignore[arg-type]


class Info:
    def __init__(self, media_id: str) -> None:
        self.user_id = "@alice:hauspost.test" if media_id != "orphan" else None


class LikeSynapse(ShapedLike163):
    async def get_local_media_info(self, request: Any, media_id: str, max_timeout_ms: int,
                                   bypass_quarantine: bool = False) -> Any:
        self.calls.append((media_id, max_timeout_ms, bypass_quarantine))
        return None if media_id == "unknown" else Info(media_id)


def test_the_gate_decides_after_synapse_lookup_and_refuses_with_synapse_404() -> None:
    repo = LikeSynapse()
    asked: list[tuple[str, str | None]] = []

    async def gate(request: Any, media_id: str, uploader: str | None) -> bool:
        asked.append((media_id, uploader))
        return media_id == "open"

    install_download_gate(repo, gate)  # type: ignore[arg-type]
    install_download_gate(repo, gate)  # type: ignore[arg-type]  # idempotent

    class Request:
        path = b"/_matrix/client/v1/media/download/hauspost.test/closed"

    async def run() -> None:
        info = await repo.get_local_media_info(Request(), "open", 20, bypass_quarantine=True)
        assert isinstance(info, Info)
        with pytest.raises(SynapseError) as excinfo:
            await repo.get_local_media_info(Request(), "closed", 20)
        assert (excinfo.value.code, excinfo.value.errcode, excinfo.value.msg) == (
            404, "M_NOT_FOUND", f"Not found '{Request.path.decode()}'")
        with pytest.raises(SynapseError) as excinfo:
            await repo.get_local_media_info(Request(), "orphan", 20)
        assert (excinfo.value.code, excinfo.value.errcode, excinfo.value.msg) == (
            404, "M_NOT_FOUND", f"Not found '{Request.path.decode()}'")
        # Synapse answered an unknown ID itself: nothing for the gate to decide.
        assert await repo.get_local_media_info(Request(), "unknown", 20) is None

    asyncio.run(run())
    # The admin quarantine bypass is switched off (withdrawn files are quarantined).
    assert repo.calls == [("open", 20, False), ("closed", 20, False), ("orphan", 20, False),
                          ("unknown", 20, False)]
    assert asked == [("open", "@alice:hauspost.test"), ("closed", "@alice:hauspost.test"),
                     ("orphan", None)]


def test_rooms_for_user_is_checked_against_the_installed_synapse() -> None:
    from synapse.storage.databases.main.roommember import RoomMemberWorkerStore

    class Clock:
        pass

    store = RoomMemberWorkerStore.__new__(RoomMemberWorkerStore)
    store.server_name = "hauspost.test"
    store.clock = Clock()  # type: ignore[assignment]

    class Databases:
        main = store

    class Media:
        can_load_media_repo = True

    class Config:
        media = Media()

    class Hs:
        config = Config()

        def get_datastores(self) -> Databases:
            return Databases()

        def get_media_repository(self) -> object:
            return ShapedLike163()

    class Api:
        _hs = Hs()

    assert callable(rooms_for_user_of(Api()))  # type: ignore[arg-type]

    class Renamed:
        async def get_rooms_for_member(self, user_id: str) -> frozenset[str]:
            return frozenset()

    Databases.main = Renamed()  # type: ignore[assignment]
    with pytest.raises(IncompatibleSynapseError, match="main data store has no "
                       "get_rooms_for_user"):
        rooms_for_user_of(Api())  # type: ignore[arg-type]
