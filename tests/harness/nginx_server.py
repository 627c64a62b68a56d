"""Debian's nginx as a child process, running the routing `hauspost init --workers` writes.

The tests route through the generated nginx/upstreams.conf and nginx/locations.conf
unchanged, so a wrong pattern or upstream fails a test. A system nginx the package may
have started is not used: this one has its own prefix, pid file, temp dirs and port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from provisioner.homeserver.synapse_process import free_port


class NginxMissingError(RuntimeError):
    pass


def find_nginx() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                       else None)
    if binary is None:
        raise NginxMissingError("nginx is not installed: the worker tests need the Debian "
                                "package nginx (./dev installs it)")
    return binary


def main_config(prefix: Path, http_body: str) -> str:
    """A top-level nginx.conf whose every path is under `prefix`."""
    # As root, nginx's workers would drop to `nobody`, who can't write our temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {kind}_temp_path {prefix / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""\
{user}daemon off;
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}{http_body}
}}
"""


def check_config(binary: str, config: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a config (syntax, includes, upstream hosts)."""
    return subprocess.run(  # noqa: S603 - fixed argv
        [binary, "-t", "-q", "-e", "stderr", "-c", str(config)],
        capture_output=True, text=True, check=False)


@dataclass
class NginxServer:
    prefix: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nginx(prefix: Path, data_dir: Path, timeout: float = 20.0) -> NginxServer:
    """Serve the data dir's generated routing on a free loopback port."""
    binary = find_nginx()
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    body = (f"    include {data_dir / 'nginx' / 'upstreams.conf'};\n"
            f"    server {{\n"
            f"        listen 127.0.0.1:{port};\n"
            f"        include {data_dir / 'nginx' / 'locations.conf'};\n"
            f"    }}")
    config = prefix / "nginx.conf"
    config.write_text(main_config(prefix, body), encoding="utf-8")
    checked = check_config(binary, config)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx -t refused the generated config: {checked.stderr.strip()}")
    log = open(prefix / "nginx.stdout.log", "wb")  # noqa: SIM115 - lives as long as nginx
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [binary, "-e", "stderr", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    server = NginxServer(prefix=prefix, port=port, proc=proc)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited with code {proc.returncode}: "
                                   + (prefix / "nginx.stdout.log").read_text(errors="replace"))
            try:
                client.get(server.url + "/_matrix/client/versions")
                return server
            except httpx.TransportError:
                time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"nginx did not answer within {timeout:.0f} s")
