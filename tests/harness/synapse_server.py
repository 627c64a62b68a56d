"""A real Synapse, configured by `hauspost init` plus test-only relaxations, on a free port."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from provisioner.homeserver.data_dir import InitRequest, init_data_dir
from provisioner.homeserver.module_configs import ModuleEntry
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_process import SynapseProcess, free_port
from provisioner.settings import LdapSettings, load_settings

TEST_PASSWORD = "correct horse battery staple"

# Test config only: production keeps Synapse's defaults (see PITFALLS.md).
TEST_RATE_LIMITS: dict[str, Any] = {
    "rc_login": {
        "address": {"per_second": 1000, "burst_count": 1000},
        "account": {"per_second": 1000, "burst_count": 1000},
        "failed_attempts": {"per_second": 1000, "burst_count": 1000},
    },
    "rc_message": {"per_second": 1000, "burst_count": 1000},
    "rc_joins": {"local": {"per_second": 1000, "burst_count": 1000},
                 "remote": {"per_second": 1000, "burst_count": 1000}},
    "rc_joins_per_room": {"per_second": 1000, "burst_count": 1000},
    "rc_invites": {"per_room": {"per_second": 1000, "burst_count": 1000},
                   "per_user": {"per_second": 1000, "burst_count": 1000},
                   "per_issuer": {"per_second": 1000, "burst_count": 1000}},
    "rc_admin_redaction": {"per_second": 1000, "burst_count": 1000},
    "rc_registration": {"per_second": 1000, "burst_count": 1000},
    "rc_media_create": {"per_second": 1000, "burst_count": 1000},
    "rc_key_requests": {"per_second": 1000, "burst_count": 1000},
    "rc_presence": {"per_user": {"per_second": 1000, "burst_count": 1000}},
    "rc_delayed_event_mgmt": {"per_second": 1000, "burst_count": 1000},
    "rc_reports": {"per_second": 1000, "burst_count": 1000},
    "rc_room_creation": {"per_second": 1000, "burst_count": 1000},
    "rc_3pid_validation": {"per_second": 1000, "burst_count": 1000},
    "rc_media_download": None,
}


@dataclass
class TestUser:
    __test__ = False  # not a pytest test class

    user_id: str
    password: str
    token: str
    device_id: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class SynapseServer:
    data_dir: Path
    server_name: str
    process: SynapseProcess
    admin_token: str = ""
    admin_user_id: str = ""
    startup_seconds: float = 0.0
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return self.process.url

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def mxid(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def unique(self, prefix: str = "user") -> str:
        return f"{prefix}{next(self._counter)}"

    def login(self, user_id: str, password: str = TEST_PASSWORD,
              device_name: str = "test") -> httpx.Response:
        with self.client() as c:
            return c.post("/_matrix/client/v3/login", json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user_id},
                "password": password,
                "initial_device_display_name": device_name,
            })

    def create_user(self, localpart: str | None = None, *, password: str = TEST_PASSWORD,
                    displayname: str | None = None, admin: bool = False) -> TestUser:
        """Create an account through the admin API and log it in with a password (so E2EE works)."""
        localpart = localpart or self.unique()
        user_id = self.mxid(localpart)
        body: dict[str, Any] = {"password": password, "admin": admin,
                                "displayname": displayname or localpart.title()}
        with self.admin() as c:
            resp = c.put(f"/_synapse/admin/v2/users/{quote(user_id)}", json=body)
            resp.raise_for_status()
        resp = self.login(user_id, password)
        resp.raise_for_status()
        data = resp.json()
        return TestUser(user_id=user_id, password=password, token=data["access_token"],
                        device_id=data["device_id"])

    def create_room(self, user: TestUser, **body: Any) -> str:
        with self.client(user.token) as c:
            resp = c.post("/_matrix/client/v3/createRoom", json=body)
            resp.raise_for_status()
            return str(resp.json()["room_id"])

    def join(self, user: TestUser, room_id: str) -> httpx.Response:
        with self.client(user.token) as c:
            return c.post(f"/_matrix/client/v3/join/{quote(room_id)}", json={})

    def room_state(self, room_id: str) -> list[dict[str, Any]]:
        with self.admin() as c:
            resp = c.get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/state")
            resp.raise_for_status()
            state: list[dict[str, Any]] = resp.json()["state"]
            return state

    def stop(self) -> None:
        self.process.stop()


def start_synapse(
    workdir: Path,
    *,
    server_name: str = "hauspost.test",
    modules: list[ModuleEntry] | None = None,
    ldap: LdapSettings | None = None,
    extra_config: dict[str, Any] | None = None,
    remove_keys: tuple[str, ...] = (),
    edit: Callable[[dict[str, Any]], None] | None = None,
    bootstrap_admin: bool = True,
) -> SynapseServer:
    """`hauspost init` into `workdir`, relax rate limits, start Synapse, create the admin.

    `modules` replaces the default module list; `remove_keys` drops top-level keys (to
    prove that a hardening line matters); `edit` may change the parsed config freely.
    Raises SynapseStartError (with Synapse's output) if Synapse does not come up.
    """
    port = free_port()
    init_data_dir(InitRequest(server_name=server_name, data_dir=workdir, port=port, ldap=ldap))
    config_path = workdir / "homeserver.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config = deep_merge(config, {k: v for k, v in TEST_RATE_LIMITS.items() if v is not None})
    if modules is not None:
        config["modules"] = [{"module": m.module, "config": m.config} for m in modules]
    if extra_config:
        config = deep_merge(config, extra_config)
    for key in remove_keys:
        config.pop(key, None)
    if edit is not None:
        edit(config)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    process = SynapseProcess(config_path)
    process.start()
    server = SynapseServer(data_dir=workdir, server_name=server_name, process=process)
    try:
        server.startup_seconds = process.wait_healthy(timeout=90)
        if bootstrap_admin:
            settings = load_settings(workdir)
            server.admin_token = asyncio.run(ensure_service_token(settings))
            server.admin_user_id = settings.service_user_id
    except BaseException:
        process.stop()
        raise
    return server
