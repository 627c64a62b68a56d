"""`hauspost init --workers N`: the layout, the files, and what Synapse's own parser makes of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from synapse.config.homeserver import HomeServerConfig

from provisioner.cli import main
from provisioner.errors import ConfigError
from provisioner.homeserver.data_dir import InitRequest, init_data_dir
from provisioner.homeserver.workers import (
    MEDIA_GATE_MODULE,
    RedisTarget,
    parse_redis_url,
    plan_layout,
)

PG_URL = "postgresql://synapse@127.0.0.1:5432/synapse"
REDIS = RedisTarget("127.0.0.1", 6379)


def init_workers(tmp_path: Path, n: int = 2, **kw: object) -> Path:
    data = tmp_path / "data"
    init_data_dir(InitRequest(server_name="corp.test", data_dir=data, port=8008,
                              database_url=PG_URL, workers=n, worker_base_port=8100,
                              **kw))  # type: ignore[arg-type]
    return data


def test_layout_names_roles_and_ports() -> None:
    layout = plan_layout(3, main_port=8008, first_port=8100, redis=REDIS)
    assert [(p.name, p.role, p.http_port, p.replication_port) for p in layout.processes] == [
        ("main", "main", 8008, 8100),
        ("client1", "client", 8101, None),
        ("client2", "client", 8102, None),
        ("client3", "client", 8103, None),
        ("persister1", "event_persister", 8104, 8105),
        ("media1", "media", 8106, None),
        ("background1", "background", 8107, None),
    ]
    assert {p.host for p in layout.processes} == {"127.0.0.1"}
    compose = plan_layout(1, main_port=8008, first_port=8100, redis=REDIS, hosts="compose")
    assert [p.host for p in compose.processes] == [
        "synapse-main", "synapse-client1", "synapse-persister1", "synapse-media1",
        "synapse-background1"]
    assert compose.bind_address == "0.0.0.0"  # noqa: S104 - inside a container


@pytest.mark.parametrize(("n", "first", "message"), [
    (0, 8100, "--workers: expected 1 to 32 client workers, got 0"),
    (33, 8100, "--workers: expected 1 to 32 client workers, got 33"),
    (2, 8005, "--worker-base-port: the worker ports 8005-8011 include the main port 8008"),
    (2, 65530, "--worker-base-port: expected a port from 1024 to 65528, got 65530"),
])
def test_bad_layout_requests_name_the_option(n: int, first: int, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_layout(n, main_port=8008, first_port=first, redis=REDIS)
    assert str(err.value) == message


def test_redis_url_checked() -> None:
    assert parse_redis_url("redis://cache.internal:6380") == RedisTarget("cache.internal", 6380)
    with pytest.raises(ConfigError, match="--redis-url: put the Redis password in a file"):
        parse_redis_url("redis://:hunter2@cache:6379")
    with pytest.raises(ConfigError, match="--redis-url: expected redis://host:port"):
        parse_redis_url("http://cache:6379")


def test_workers_need_postgres(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--workers: workers need PostgreSQL"):
        init_data_dir(InitRequest(server_name="corp.test", data_dir=tmp_path, workers=2))


def test_init_writes_every_file_of_the_layout(tmp_path: Path) -> None:
    data = init_workers(tmp_path)
    names = sorted(str(p.relative_to(data)) for p in (data / "workers").iterdir())
    expected = ["workers/main.yaml"]
    for w in ("background1", "client1", "client2", "media1", "persister1"):
        expected += [f"workers/{w}.log.config", f"workers/{w}.yaml"]
    assert names == sorted(expected)
    assert (data / "nginx" / "upstreams.conf").is_file()
    assert (data / "nginx" / "locations.conf").is_file()
    secret = data / "keys" / "worker_replication_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(secret.read_text().strip()) >= 48

    hs = yaml.safe_load((data / "homeserver.yaml").read_text())
    assert hs["instance_map"] == {"main": {"host": "127.0.0.1", "port": 8100},
                                  "persister1": {"host": "127.0.0.1", "port": 8104}}
    assert hs["stream_writers"] == {"events": ["persister1"]}
    assert hs["redis"] == {"enabled": True, "host": "127.0.0.1", "port": 6379}
    assert (hs["run_background_tasks_on"], hs["media_instance_running_background_jobs"],
            hs["enable_media_repo"], hs["federation_sender_instances"]) == (
        "background1", "media1", False, [])
    assert hs["worker_replication_secret_path"] == str(secret)
    assert "worker_replication_secret" not in hs  # the secret itself is never in a config
    gate = [m for m in hs["modules"] if m["module"] == MEDIA_GATE_MODULE]
    assert [m["config"]["sweep_worker"] for m in gate] == ["media1"]


def test_re_running_init_keeps_the_replication_secret(tmp_path: Path) -> None:
    data = init_workers(tmp_path)
    before = (data / "keys" / "worker_replication_secret").read_text()
    init_workers(tmp_path)
    assert (data / "keys" / "worker_replication_secret").read_text() == before


def test_single_process_init_has_no_layout(tmp_path: Path) -> None:
    init_data_dir(InitRequest(server_name="corp.test", data_dir=tmp_path))
    hs = yaml.safe_load((tmp_path / "homeserver.yaml").read_text())
    assert "instance_map" not in hs and not (tmp_path / "workers").exists()
    gate = [m for m in hs["modules"] if m["module"] == MEDIA_GATE_MODULE]
    assert [m["config"]["sweep_worker"] for m in gate] == [None]


@pytest.mark.parametrize(("process", "worker_name", "media", "background", "persists"), [
    ("main", None, False, False, False),
    ("client1", "client1", False, False, False),
    ("persister1", "persister1", False, False, True),
    ("media1", "media1", True, False, False),
    ("background1", "background1", False, True, False),
])
def test_synapse_parses_each_process_config(tmp_path: Path, process: str,
                                            worker_name: str | None, media: bool,
                                            background: bool, persists: bool) -> None:
    """Synapse's own config loader, on exactly the files `hauspost run` passes it."""
    data = init_workers(tmp_path)
    config = HomeServerConfig.load_config("synapse", [
        "-c", str(data / "homeserver.yaml"), "-c", str(data / "workers" / f"{process}.yaml")])
    assert config.worker.worker_name == worker_name
    assert config.media.can_load_media_repo is media
    assert config.worker.run_background_tasks is background
    assert (config.worker.instance_name in config.worker.writers.events) is persists
    assert config.worker.should_update_user_directory is background
    assert config.worker.send_federation is False
    assert config.redis.redis_enabled is True


def route(locations: str, path: str) -> str:
    """Which upstream nginx picks for `path` (prefix, `^~` prefix and regex locations)."""
    blocks: list[tuple[str, str, str]] = [
        (kind, pattern, upstream or "404") for kind, pattern, upstream in re.findall(
            r"location (\^~ |~ )?(\S+) \{\n    (?:proxy_pass http://(\w+)|return 404);",
            locations)]
    best_prefix: tuple[int, str, bool] | None = None
    for kind, pattern, upstream in blocks:
        if kind != "~ " and path.startswith(pattern) and (
                best_prefix is None or len(pattern) > best_prefix[0]):
            best_prefix = (len(pattern), upstream, kind == "^~ ")
    if best_prefix is not None and best_prefix[2]:
        return best_prefix[1]
    for kind, pattern, upstream in blocks:
        if kind == "~ " and re.search(pattern, path):
            return upstream
    return best_prefix[1] if best_prefix else "(none)"


@pytest.mark.parametrize(("path", "upstream"), [
    ("/_matrix/client/v3/sync", "hauspost_sync"),
    ("/_matrix/client/v3/rooms/!r/send/m.room.encrypted/t1", "hauspost_client"),
    ("/_matrix/client/v3/keys/upload", "hauspost_client"),
    ("/_matrix/client/v3/login", "hauspost_client"),
    ("/_matrix/client/v1/media/download/corp.test/abc", "hauspost_media"),
    ("/_matrix/client/v1/media/thumbnail/corp.test/abc", "hauspost_media"),
    ("/_matrix/media/v3/upload", "hauspost_media"),
    ("/_synapse/client/hauspost/media/withdraw", "hauspost_media"),
    ("/_synapse/admin/v1/media/corp.test/abc", "404"),
    ("/_synapse/admin/v1/deactivate/@a:corp.test", "404"),
    ("/_synapse/admin/v2/users/@a:corp.test", "404"),
    ("/_synapse/admin/v1/rooms/!r", "404"),
    ("/_matrix/federation/v1/send/1", "404"),
    ("/_matrix/key/v2/server", "404"),
    ("/metrics", "404"),
    ("/_matrix/client/v3/user/@a:corp.test/account_data/m.direct", "hauspost_main"),
    ("/_matrix/client/v3/sendToDevice/m.room_key/1", "hauspost_main"),
])
def test_nginx_routes_each_endpoint_to_its_process(tmp_path: Path, path: str,
                                                   upstream: str) -> None:
    locations = (init_workers(tmp_path) / "nginx" / "locations.conf").read_text()
    assert route(locations, path) == upstream


def test_upstreams_list_the_layouts_processes(tmp_path: Path) -> None:
    upstreams = (init_workers(tmp_path, 3) / "nginx" / "upstreams.conf").read_text()
    servers = dict.fromkeys(("hauspost_main", "hauspost_sync", "hauspost_client",
                             "hauspost_media"), "")
    for name, body in re.findall(r"upstream (\w+) \{(.*?)\}", upstreams, re.S):
        servers[name] = " ".join(re.findall(r"server (\S+);", body))
    assert servers == {
        "hauspost_main": "127.0.0.1:8008",
        "hauspost_sync": "127.0.0.1:8101 127.0.0.1:8102 127.0.0.1:8103",
        "hauspost_client": "127.0.0.1:8101 127.0.0.1:8102 127.0.0.1:8103",
        "hauspost_media": "127.0.0.1:8106",
    }


def test_cli_init_workers(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "init", "--server-name", "corp.test", "-d", str(tmp_path / "d"), "--database-url",
        PG_URL, "--workers", "1", "--redis-url", "redis://127.0.0.1:6390",
        "--store-url", "postgresql://hauspost@127.0.0.1/hauspost"])
    assert result.exit_code == 0, result.output
    assert "workers/client1.yaml" in result.output
    hs = yaml.safe_load((tmp_path / "d" / "homeserver.yaml").read_text())
    assert hs["redis"]["port"] == 6390
    settings = yaml.safe_load((tmp_path / "d" / "hauspost.yaml").read_text())
    assert settings["store"] == {"url": "postgresql://hauspost@127.0.0.1/hauspost"}
    refused = CliRunner().invoke(main, ["init", "--server-name", "corp.test", "-d",
                                        str(tmp_path / "e"), "--workers", "1"])
    assert refused.exit_code == 3
    assert "--workers: workers need PostgreSQL" in refused.output
