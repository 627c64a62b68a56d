"""Shared set-up for the service tests: `hauspost serve` as a real subprocess
(`python -m provisioner serve -d <data dir>`) next to a real Synapse, with a SCIM token,
a webhook secret and a demo-mode initial password (so SCIM-created people can log in)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from provisioner.homeserver.synapse_process import free_port
from provisioner.service.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_for

REPO = Path(__file__).resolve().parents[2]
INITIAL_PASSWORD = "scim initial password for tests"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n", encoding="utf-8")
    os.chmod(path, 0o600)


@dataclass
class ServiceConfig:
    port: int
    token: str
    webhook_secret: str


def configure_service(data_dir: Path, *, port: int | None = None, retry_max: float = 1.0,
                      tick: float = 1.0, extra: dict[str, Any] | None = None) -> ServiceConfig:
    """Add `service:` and demo-mode `sync:` sections to the data dir's hauspost.yaml."""
    port = port or free_port()
    token = secrets.token_urlsafe(32)
    webhook_secret = secrets.token_urlsafe(32)
    _write_secret(data_dir / "keys" / "scim_token", token)
    _write_secret(data_dir / "keys" / "hr_webhook_secret", webhook_secret)
    _write_secret(data_dir / "keys" / "initial_password", INITIAL_PASSWORD)
    path = data_dir / "hauspost.yaml"
    settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    settings["service"] = {
        "listen": f"127.0.0.1:{port}",
        "scim": {"token_file": "keys/scim_token", "client_name": "okta-test"},
        "webhook": {"secret_file": "keys/hr_webhook_secret", "replay_window_seconds": 300},
        "retry_max_seconds": retry_max,
        "tick_seconds": tick,
        **(extra or {}),
    }
    settings["sync"] = {"initial_password_file": "keys/initial_password"}
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return ServiceConfig(port=port, token=token, webhook_secret=webhook_secret)


@dataclass
class ServiceProcess:
    data_dir: Path
    config: ServiceConfig
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def scim(self, token: str | None = "default", *, scheme: str = "Bearer") -> httpx.Client:
        token = self.config.token if token == "default" else token
        headers = {"Content-Type": "application/scim+json"}
        if token is not None:
            headers["Authorization"] = f"{scheme} {token}"
        return httpx.Client(base_url=self.url + "/scim/v2", headers=headers, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def send_hook(self, payload: dict[str, Any] | bytes, *, timestamp: int | None = None,
                  secret: str | None = None, signature: str | None = None) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        ts = str(timestamp if timestamp is not None else int(time.time()))
        sig = signature or signature_for((secret or self.config.webhook_secret).encode(), ts,
                                         body)
        return httpx.post(self.url + "/hooks/hr", content=body, timeout=30,
                          headers={TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sig,
                                   "Content-Type": "application/json"})

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()
        return int(self.process.returncode)


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provisioner", *args, "-d", str(data_dir)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def status_json(data_dir: Path) -> dict[str, Any]:
    result = run_cli(data_dir, "status", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def audit_rows(data_dir: Path, **filters: str) -> list[dict[str, Any]]:
    args = ["audit", "--json"]
    for key, value in filters.items():
        args += [f"--{key}", value]
    result = run_cli(data_dir, *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def start_service(data_dir: Path, config: ServiceConfig, *, timeout: float = 30.0,
                  expect_ready: bool = True) -> ServiceProcess:
    log_path = data_dir / f"service-{config.port}-{time.monotonic_ns()}.log"
    log = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "provisioner", "serve", "-d", str(data_dir)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    service = ServiceProcess(data_dir, config, process, log_path, log)
    if not expect_ready:
        return service
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hauspost serve exited with {process.returncode}:\n{service.log()}")
        try:
            if httpx.get(service.url + "/health", timeout=2).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    service.stop()
    raise RuntimeError(f"hauspost serve did not become healthy:\n{service.log()}")


def wait_for(predicate: Any, *, timeout: float = 30.0, interval: float = 0.1,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def scim_user(user_name: str, *, external_id: str | None = None, display_name: str | None = None,
              email: str | None = None, active: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "userName": user_name, "active": active}
    if external_id:
        body["externalId"] = external_id
    if display_name:
        body["displayName"] = display_name
    if email:
        body["emails"] = [{"value": email, "primary": True, "type": "work"}]
    return body


def settle(data_dir: Path, timeout: float = 60.0) -> None:
    """Wait until the service has applied every job that is due (none pending now)."""
    from sqlalchemy import func, select

    from provisioner.settings import load_settings
    from provisioner.store import open_store
    from provisioner.store.service_models import ServiceJobRow

    store = open_store(load_settings(data_dir).store_url)

    def due() -> int:
        with store.session() as session:
            return int(session.scalar(
                select(func.count()).select_from(ServiceJobRow)
                .where(ServiceJobRow.state == "pending",
                       ServiceJobRow.next_attempt_at <= datetime.now(UTC))) or 0)

    try:
        wait_for(lambda: due() == 0, timeout=timeout, interval=0.05, what="due jobs to be applied")
    finally:
        store.close()


def store_counts(data_dir: Path) -> tuple[int, int]:
    """(audit rows, queued jobs) read from the store in-process (faster than the CLI)."""
    from sqlalchemy import func, select

    from provisioner.settings import load_settings
    from provisioner.store import open_store
    from provisioner.store.models import AuditRow
    from provisioner.store.service_models import ServiceJobRow

    store = open_store(load_settings(data_dir).store_url)
    try:
        with store.session() as session:
            return (int(session.scalar(select(func.count()).select_from(AuditRow)) or 0),
                    int(session.scalar(select(func.count()).select_from(ServiceJobRow)) or 0))
    finally:
        store.close()
