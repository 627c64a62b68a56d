"""Where the media gate installs itself and where its sweep runs (fake module API)."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from synapse_modules.media_gate import MediaGate
from synapse_modules.media_policy import parse_media_gate_config
from tests.unit.test_media_internals import ShapedLike163


class FakeStore:
    async def get_rooms_for_user(self, user_id: str) -> frozenset[str]:
        return frozenset()


class FakeApi:
    """Records what the module registers; stands in for one Synapse process."""

    def __init__(self, *, worker_name: str | None, has_media: bool) -> None:
        self.worker_name = worker_name
        self.server_name = "hauspost.test"
        self.loops: list[tuple[str, float]] = []
        self.resources: list[str] = []
        self.callbacks: list[str] = []
        repo = ShapedLike163()
        self.repo = repo

        class Media:
            can_load_media_repo = has_media

        class Config:
            media = Media()

        class Databases:
            main = FakeStore()

        class Hs:
            config = Config()

            def get_datastores(self) -> Databases:
                return Databases()

            def get_media_repository(self) -> ShapedLike163:
                if not has_media:
                    raise AssertionError("no media repository on this process")
                return repo

        self._hs = Hs()

    def register_spam_checker_callbacks(self, **callbacks: Any) -> None:
        self.callbacks.extend(callbacks)

    def register_media_repository_callbacks(self, **callbacks: Any) -> None:
        self.callbacks.extend(callbacks)

    def register_web_resource(self, path: str, resource: object) -> None:
        self.resources.append(path)

    def looping_background_call(self, f: Any, msec: float, *args: Any, desc: str,
                                run_on_all_instances: bool) -> None:
        assert run_on_all_instances  # the module chose the process itself
        self.loops.append((desc, msec))


CONFIG = {"allowed_media_types": ["application/octet-stream"], "sweep_interval_minutes": 15}


def gate_on(api: FakeApi, **extra: Any) -> MediaGate:
    return MediaGate(parse_media_gate_config({**CONFIG, **extra}), api)  # type: ignore[arg-type]


def test_main_process_with_media_gates_downloads_and_runs_the_sweep() -> None:
    api = FakeApi(worker_name=None, has_media=True)
    gate_on(api)
    assert getattr(api.repo.get_local_media_info, "_hauspost_media_gate", False)
    assert api.loops == [("hauspost_media_sweep", 15 * 60_000)]
    assert api.resources == ["/_synapse/client/hauspost/media/withdraw"]
    assert sorted(api.callbacks) == ["check_media_file_for_spam", "get_media_config_for_user",
                                     "is_user_allowed_to_upload_media_of_size"]


def test_sweep_runs_only_on_the_named_worker() -> None:
    media, client = (FakeApi(worker_name="media1", has_media=True),
                     FakeApi(worker_name="client1", has_media=False))
    gate_on(media, sweep_worker="media1")
    gate_on(client, sweep_worker="media1")
    assert media.loops == [("hauspost_media_sweep", 15 * 60_000)]
    assert client.loops == []
    # A client worker still serves the withdraw endpoint (it records the decision).
    assert client.resources == ["/_synapse/client/hauspost/media/withdraw"]


def test_sweep_on_a_process_without_media_store_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        gate_on(FakeApi(worker_name=None, has_media=False))
    assert excinfo.value.msg.startswith("sweep_worker: this process runs the sweep but has "
                                        "no media repository")
