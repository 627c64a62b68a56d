"""`hauspost init --workers 1` then `hauspost run`, as an admin would type them.

`run` must start the main process and every worker, stop them all on SIGTERM, and when
one process dies, stop the others and exit non-zero (a half-running layout would answer
some requests and not others).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from provisioner.homeserver.synapse_process import read_listener, read_worker_listener
from tests.harness.postgres_server import PostgresServer, start_postgres
from tests.harness.redis_server import RedisServer, start_redis
from tests.harness.synapse_workers import free_port_block

WORKERS = ("background1", "client1", "media1", "persister1")


@pytest.fixture
def backing(tmp_path: Path) -> Iterator[tuple[PostgresServer, RedisServer]]:
    postgres = start_postgres()
    try:
        postgres.create_database("synapse")
        redis = start_redis(tmp_path / "redis")
        try:
            yield postgres, redis
        finally:
            redis.stop()
    finally:
        postgres.stop()


def hauspost(*args: str) -> list[str]:
    return [sys.executable, "-m", "provisioner", *args]


def processes_of(data: Path) -> dict[str, int]:
    """PIDs of the Synapse processes running on `data`'s configs (from /proc)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if str(data / "homeserver.yaml") in args:
            config = args[-1]
            name = Path(config).stem if "/workers/" in config else "main"
            found[name] = int(entry.name)
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_run_supervises_the_layout(tmp_path: Path,
                                   backing: tuple[PostgresServer, RedisServer]) -> None:
    postgres, redis = backing
    data = tmp_path / "data"
    base = free_port_block(7)
    init = subprocess.run(hauspost(  # noqa: S603 - our own CLI
        "init", "--server-name", "hauspost.test", "-d", str(data), "--port", str(base),
        "--database-url", postgres.url("synapse"), "--workers", "1",
        "--worker-base-port", str(base + 1), "--redis-url", redis.url),
        capture_output=True, text=True, check=False)
    assert init.returncode == 0, init.stderr
    urls = {"main": read_listener(data / "homeserver.yaml").url}
    urls.update({w: read_worker_listener(data / "workers" / f"{w}.yaml").url for w in WORKERS})

    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(hauspost("run", "-d", str(data)),  # noqa: S603
                               stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"is ready with 4 workers" in log.read_bytes(), 180, "run to be ready")
        assert {name: healthy(url) for name, url in urls.items()} == dict.fromkeys(urls, True)
        pids = processes_of(data)
        assert sorted(pids) == sorted(["main", *WORKERS])

        # A worker dies: run stops the others and exits non-zero, naming it.
        os.kill(pids["client1"], signal.SIGKILL)
        assert run.wait(60) != 0
        text = log.read_text(encoding="utf-8")
        assert "client1 exited with code -9; stopping the others" in text
        assert processes_of(data) == {}

        # Started again, SIGTERM stops everything cleanly.
        log.write_bytes(b"")
        with open(log, "wb") as out:
            run = subprocess.Popen(hauspost("run", "-d", str(data)),  # noqa: S603
                                   stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: b"is ready with 4 workers" in log.read_bytes(), 180,
                 "run to be ready again")
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0, log.read_text(encoding="utf-8")
        assert processes_of(data) == {}
        assert not any(healthy(url) for url in urls.values())
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in processes_of(data).values():
            os.kill(pid, signal.SIGKILL)
