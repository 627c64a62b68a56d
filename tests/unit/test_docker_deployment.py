"""docker/: what can be checked without Docker is checked.

The compose file parses, pins every image, health-checks every service and takes
secrets from files; the Synapse services are exactly the processes of the layout
`hauspost init --workers 2 --worker-hosts compose` writes, with the same config files and
health ports; every config it mounts from ./data is one that init writes (the generator
the worker integration tests run); and nginx accepts the TLS site config with the
generated routing included (`nginx -t`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.homeserver.data_dir import InitRequest, init_data_dir
from provisioner.homeserver.workers import WorkerLayout, parse_redis_url, plan_layout
from tests.harness.nginx_server import check_config, main_config

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
# What the README's init command passes.
COMPOSE_INIT = {"port": 8008, "worker_base_port": 8100, "workers": 2}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def services() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = compose()["services"]
    return out


def compose_layout() -> WorkerLayout:
    return plan_layout(COMPOSE_INIT["workers"], main_port=COMPOSE_INIT["port"],
                       first_port=COMPOSE_INIT["worker_base_port"],
                       redis=parse_redis_url("redis://redis:6379"), hosts="compose")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir as the README's `hauspost init ... --worker-hosts compose` writes it."""
    data = tmp_path_factory.mktemp("compose") / "data"
    init_data_dir(InitRequest(
        server_name="example.com", data_dir=data, public_baseurl="https://matrix.example.com",
        behind_proxy=True, database_url="postgresql://synapse@postgres:5432/synapse",
        redis_url="redis://redis:6379", worker_hosts="compose",
        store_url="postgresql://hauspost@postgres:5432/hauspost",
        port=COMPOSE_INIT["port"], worker_base_port=COMPOSE_INIT["worker_base_port"],
        workers=COMPOSE_INIT["workers"]))
    return data


def test_every_service_has_a_health_check_and_a_pinned_image() -> None:
    for name, service in services().items():
        assert "healthcheck" in service and service["healthcheck"]["test"], name
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (name, image)
        assert service["restart"] == "unless-stopped", name


def test_secrets_come_from_files_never_from_the_file_or_environment() -> None:
    doc = compose()
    assert set(doc["secrets"]) == {"postgres_password", "synapse_pgpass", "hauspost_pgpass",
                                   "redis_password"}
    for name, secret in doc["secrets"].items():
        assert secret == {"file": f"./secrets/{name}"}
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASS|SECRET|TOKEN", key):
                assert key.endswith("_FILE") or key == "PGPASSFILE", (name, key)
                assert str(value).startswith("/run/secrets/"), (name, key)
    text = COMPOSE.read_text(encoding="utf-8")
    assert "requirepass \"$$(cat /run/secrets/redis_password)\"" in text


def test_synapse_services_are_the_layouts_processes(generated: Path) -> None:
    layout = compose_layout()
    synapse = {name: s for name, s in services().items() if name.startswith("synapse-")}
    assert set(synapse) == {p.host for p in layout.processes}
    for process in layout.processes:
        service = synapse[process.host]
        app = "synapse.app.homeserver" if process.is_main else "synapse.app.generic_worker"
        assert service["command"] == ["python", "-m", app, "-c", "/data/homeserver.yaml",
                                      "-c", f"/data/workers/{process.name}.yaml"]
        assert (generated / "workers" / f"{process.name}.yaml").is_file()
        assert service["healthcheck"]["test"] == [
            "CMD", "curl", "-fsS", f"http://localhost:{process.http_port}/health"]
        assert service["volumes"] == ["./data:/data"]
        assert service["user"] == "991:991"
        assert service["environment"]["PGPASSFILE"] == "/run/secrets/synapse_pgpass"
        deps = service["depends_on"]
        assert deps["postgres"] == deps["redis"] == {"condition": "service_healthy"}
        if not process.is_main:
            assert deps["synapse-main"] == {"condition": "service_healthy"}
    hs = yaml.safe_load((generated / "homeserver.yaml").read_text(encoding="utf-8"))
    assert hs["redis"]["host"] == "redis" and hs["database"]["args"]["host"] == "postgres"
    assert hs["instance_map"]["main"]["host"] == "synapse-main"
    settings = yaml.safe_load((generated / "hauspost.yaml").read_text(encoding="utf-8"))
    # The provisioner calls the main process directly: the public proxy hides the admin API.
    assert settings["homeserver"]["url"] == "http://synapse-main:8008"


def test_every_mounted_config_is_in_the_repo_or_written_by_init(generated: Path) -> None:
    mounts = [(name, v) for name, s in services().items() for v in s.get("volumes", [])
              if v.startswith("./")]
    assert mounts
    for name, volume in mounts:
        source = volume.split(":", 1)[0]
        if source == "./data":
            continue  # the whole data dir
        if source.startswith("./data/"):
            assert (generated / source.removeprefix("./data/")).is_file(), (name, source)
        elif source != "./certs":  # the operator's certificates
            assert (DOCKER / source).exists(), (name, source)
    nginx_conf = (DOCKER / "nginx" / "hauspost.conf").read_text(encoding="utf-8")
    for include in re.findall(r"include (/data/\S+);", nginx_conf):
        assert (generated / include.removeprefix("/data/")).is_file(), include


def test_dockerfile_pins_its_bases_and_matches_the_tested_synapse() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases == ["matrixdotorg/synapse:v1.163.2", "python:3.11.10-slim-bookworm"]
    from importlib.metadata import version
    assert bases[0].endswith(":v" + version("matrix-synapse"))
    assert services()["synapse-main"]["image"].endswith(":" + version("matrix-synapse"))


def _self_signed(directory: Path) -> None:
    subprocess.run(  # noqa: S603 - fixed argv
        [shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048",
         "-nodes", "-days", "1", "-subj", "/CN=matrix.example.com",
         "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem")],
        check=True, capture_output=True)


def test_nginx_accepts_the_tls_site_with_the_generated_routing(tmp_path: Path) -> None:
    """`nginx -t` on docker/nginx/hauspost.conf.

    Container names don't resolve here and nginx -t resolves upstream hosts, so the
    routing comes from a loopback layout (same locations.conf, other hosts) and the
    two service names become 127.0.0.1; everything else is the file as shipped.
    """
    data = tmp_path / "data"
    init_data_dir(InitRequest(server_name="example.com", data_dir=data,
                              database_url="postgresql://synapse@127.0.0.1/synapse",
                              workers=2, port=8008, worker_base_port=8100))
    certs = tmp_path / "certs"
    certs.mkdir()
    _self_signed(certs)
    site = (DOCKER / "nginx" / "hauspost.conf").read_text(encoding="utf-8")
    site = (site.replace("/data/", f"{data}/").replace("/etc/nginx/certs/", f"{certs}/")
            .replace("http://hauspost:8090", "http://127.0.0.1:8090")
            .replace("http://element:80", "http://127.0.0.1:8080"))
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    top = prefix / "nginx.conf"
    top.write_text(main_config(prefix, f"    include {tmp_path / 'site.conf'};"),
                   encoding="utf-8")
    result = check_config(shutil.which("nginx") or "/usr/sbin/nginx", top)
    assert result.returncode == 0, result.stderr
