"""A real redis-server on a free loopback port, no persistence, as a child process.

Debian's `redis-server` package may run a system instance on 6379; this one has its own
port and working directory and nothing else uses it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.homeserver.synapse_process import free_port


class RedisMissingError(RuntimeError):
    pass


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_redis(workdir: Path, timeout: float = 20.0) -> RedisServer:
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if binary is None:
        raise RedisMissingError("redis-server is not installed: the worker tests need the "
                                "Debian package redis-server (./dev installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(workdir / "redis.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
         "--protected-mode", "yes"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = RedisServer(port=port, proc=proc, workdir=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode}: "
                               + (workdir / "redis.log").read_text(errors="replace")[-2000:])
        if server.ping():
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"redis-server did not answer PING within {timeout:.0f} s")
