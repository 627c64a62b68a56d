"""Synapse on PostgreSQL with workers and Redis, behind nginx: the scale-out layout.

`start_synapse_workers(workdir)` starts PostgreSQL and Redis (own data dirs, free
loopback ports), runs `hauspost init --workers N --database-url ...` logic, relaxes rate
limits (test only), starts the main process and the workers with the same
`ProcessGroup` that `hauspost run` uses, creates the service account, and starts nginx
with the generated routing. The returned `WorkersServer` is a `SynapseServer` whose
`url` is nginx, so the checks of the single-process integration tests run unchanged
against it; `via(name)` talks to one process directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import yaml

from provisioner.homeserver.data_dir import InitRequest, init_data_dir
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_process import port_in_use
from provisioner.homeserver.worker_processes import ProcessGroup
from provisioner.settings import load_settings
from tests.harness.nginx_server import NginxServer, start_nginx
from tests.harness.postgres_server import PostgresServer, start_postgres
from tests.harness.redis_server import RedisServer, start_redis
from tests.harness.synapse_server import TEST_RATE_LIMITS, SynapseServer, deep_merge

SYNAPSE_DATABASE = "synapse"


def free_port_block(count: int, low: int = 20000, high: int = 30000) -> int:
    """The first of `count` consecutive free loopback ports.

    Below Linux's ephemeral range (32768+), where `free_port()` of other tests and
    outgoing connections take theirs, so a block stays free until our processes bind.
    """
    for _ in range(200):
        start = random.randrange(low, high - count)  # noqa: S311 - not security relevant
        if not any(port_in_use("127.0.0.1", p) for p in range(start, start + count)):
            return start
    raise RuntimeError(f"no {count} consecutive free ports between {low} and {high}")


@dataclass
class WorkersServer(SynapseServer):
    group: ProcessGroup | None = None
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    nginx: NginxServer | None = None
    entry_url: str = ""  # nginx, or one process for a `via()` view
    _stoppers: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.entry_url

    def admin(self) -> httpx.Client:
        """The admin API is not behind the public proxy: straight to the main process."""
        assert self.group is not None  # noqa: S101 - started
        return httpx.Client(base_url=self.group.main.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.admin_token}"})

    def via(self, name: str) -> WorkersServer:
        """The same server, but every request goes straight to process `name`."""
        assert self.group is not None  # noqa: S101 - started
        return dataclasses.replace(self, entry_url=self.group.processes[name].url)

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read Synapse's PostgreSQL database (bound parameters only)."""
        assert self.postgres is not None  # noqa: S101 - started
        conn = psycopg2.connect(host=self.postgres.host, port=self.postgres.port,
                                user=self.postgres.user, dbname=SYNAPSE_DATABASE)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def stop(self) -> None:
        for part in (self.nginx, self.group, self.redis, self.postgres):
            if part is not None:
                part.stop()


def start_synapse_workers(workdir: Path, *, client_workers: int = 2,
                          server_name: str = "hauspost.test") -> WorkersServer:
    workdir.mkdir(parents=True, exist_ok=True)
    server = WorkersServer(data_dir=workdir / "data", server_name=server_name,
                           process=None)  # type: ignore[arg-type] # set below
    try:
        server.postgres = start_postgres()
        server.postgres.create_database(SYNAPSE_DATABASE)
        server.redis = start_redis(workdir / "redis")
        base = free_port_block(client_workers + 6)
        init_data_dir(InitRequest(
            server_name=server_name, data_dir=server.data_dir, port=base,
            database_url=server.postgres.url(SYNAPSE_DATABASE), workers=client_workers,
            worker_base_port=base + 1, redis_url=server.redis.url))
        config_path = server.data_dir / "homeserver.yaml"
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        config = deep_merge(config, {k: v for k, v in TEST_RATE_LIMITS.items()
                                     if v is not None})
        # Test only: open registration, so the identity module alone stands between
        # `POST /register` on a client worker and a new account (test_workers.py).
        config.update(enable_registration=True,
                      enable_registration_without_verification=True)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

        server.group = ProcessGroup(config_path)
        server.process = server.group.main
        server.startup_seconds = server.group.start(timeout=180)
        settings = load_settings(server.data_dir)
        server.admin_token = asyncio.run(ensure_service_token(settings))
        server.admin_user_id = settings.service_user_id
        server.nginx = start_nginx(workdir / "nginx", server.data_dir)
        server.entry_url = server.nginx.url
    except BaseException:
        server.stop()
        raise
    return server
