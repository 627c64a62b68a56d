"""Start Synapse as a supervised child process and wait until it is healthy.

Used by `hauspost run` and by the test harness, so tests exercise the same path.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version as distribution_version
from pathlib import Path
from types import FrameType

import httpx
import yaml

from provisioner.errors import ConfigError, EnvironmentProblemError, HauspostError

logger = logging.getLogger(__name__)


class SynapseStartError(HauspostError):
    """Synapse exited or never became healthy; carries the tail of its output."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class StopRequestedError(Exception):
    """SIGTERM arrived: `hauspost run` stops its processes the way Ctrl-C does."""


def raise_stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler for `hauspost run` (single process and worker layout)."""
    raise StopRequestedError(signum)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ListenerInfo:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def read_listener(config_path: Path) -> ListenerInfo:
    """The client listener of a homeserver.yaml (validated: a malformed file is a ConfigError)."""
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("not found; run `hauspost init` first", file=str(config_path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{where}not valid YAML ({getattr(exc, 'problem', exc)})",
                          file=str(config_path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", file=str(config_path))
    listeners = data.get("listeners")
    if not isinstance(listeners, list) or not listeners:
        raise ConfigError("expected a non-empty list", file=str(config_path), key="listeners")
    for i, listener in enumerate(listeners):
        if not isinstance(listener, dict):
            raise ConfigError("expected a mapping", file=str(config_path), key=f"listeners[{i}]")
        names = [n for r in listener.get("resources", []) for n in r.get("names", [])]
        if "client" in names:
            port = listener.get("port")
            if not isinstance(port, int):
                raise ConfigError("expected an integer port", file=str(config_path),
                                  key=f"listeners[{i}].port")
            addrs = listener.get("bind_addresses") or ["127.0.0.1"]
            host = addrs[0]
            if host in ("0.0.0.0", "::"):  # noqa: S104 - we only connect, not bind
                host = "127.0.0.1"
            return ListenerInfo(host=host, port=port)
    raise ConfigError("no listener serves the client API", file=str(config_path), key="listeners")


MAIN_APP = "synapse.app.homeserver"
WORKER_APP = "synapse.app.generic_worker"


def read_worker_listener(worker_config: Path) -> ListenerInfo:
    """The first HTTP listener of a workers/<name>.yaml (/health answers on every one)."""
    try:
        data = yaml.safe_load(worker_config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("not found; run `hauspost init --workers N` first",
                          file=str(worker_config)) from None
    listeners = data.get("worker_listeners") if isinstance(data, dict) else None
    if not isinstance(listeners, list):
        raise ConfigError("expected a list", file=str(worker_config), key="worker_listeners")
    for i, listener in enumerate(listeners):
        if isinstance(listener, dict) and listener.get("type") == "http":
            port = listener.get("port")
            if not isinstance(port, int):
                raise ConfigError("expected an integer port", file=str(worker_config),
                                  key=f"worker_listeners[{i}].port")
            host = (listener.get("bind_addresses") or ["127.0.0.1"])[0]
            if host in ("0.0.0.0", "::"):  # noqa: S104 - we only connect, not bind
                host = "127.0.0.1"
            return ListenerInfo(host=host, port=port)
    raise ConfigError("no HTTP listener", file=str(worker_config), key="worker_listeners")


class SynapseProcess:
    """A running Synapse child process (the main process, or one worker)."""

    def __init__(self, config_path: Path, *, log_path: Path | None = None,
                 env: dict[str, str] | None = None, app: str = MAIN_APP,
                 extra_configs: tuple[Path, ...] = (),
                 listener: ListenerInfo | None = None) -> None:
        self.config_path = config_path
        self.listener = listener or read_listener(config_path)
        self.log_path = log_path or config_path.with_name("synapse.stdout.log")
        self._env = env
        self.app = app
        # Later files override earlier ones key by key (Synapse merges -c files).
        self.extra_configs = extra_configs
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def worker(cls, config_path: Path, worker_config: Path, *,
               env: dict[str, str] | None = None) -> SynapseProcess:
        """A generic worker: `-c homeserver.yaml -c workers/<name>.yaml`."""
        return cls(config_path, app=WORKER_APP, extra_configs=(worker_config,), env=env,
                   listener=read_worker_listener(worker_config),
                   log_path=worker_config.with_suffix(".stdout.log"))

    @property
    def url(self) -> str:
        return self.listener.url

    def start(self) -> None:
        if port_in_use(self.listener.host, self.listener.port):
            raise EnvironmentProblemError(
                f"port {self.listener.port} on {self.listener.host} is in use: "
                "stop what runs there or choose another port with `hauspost init --port`"
            )
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault("SYNAPSE_ASYNC_IO_REACTOR", "0")
        # Synapse appends the git state of whatever checkout its venv lies in (`./dev demo`
        # puts it in ours) to its version: "1.163.2 (b=main,8252723)". matrix-synapse-ldap3
        # parses that version when it makes an account and fails on it; report the plain one.
        env.setdefault("SYNAPSE_VERSION_STRING", distribution_version("matrix-synapse"))
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [sys.executable, "-m", self.app, "-c", str(self.config_path),
             *(arg for extra in self.extra_configs for arg in ("-c", str(extra)))],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(self.config_path.parent),
            env=env,
            start_new_session=True,
        )

    def output_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Block until `/health` answers OK; returns seconds waited."""
        assert self.proc is not None  # noqa: S101 - start() first
        started = time.monotonic()
        deadline = started + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SynapseStartError(
                        f"Synapse exited with code {self.proc.returncode} during start-up: "
                        + first_error_line(self.output_tail(80)),
                        self.output_tail(80),
                    )
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise SynapseStartError(f"Synapse did not become healthy within {timeout:.0f} s",
                                self.output_tail(80))

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("Synapse did not stop within %.0f s; killing it", timeout)
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def first_error_line(output: str) -> str:
    """The most telling line of a failed start-up (a ConfigError, else the last line).

    Synapse prints a config error as a headline followed by indented detail lines; they
    are joined so the one-line error carries the module's own reason too.
    """
    raw = output.splitlines()
    for i, line in enumerate(raw):
        if "Error in configuration" in line:
            detail = []
            for following in raw[i + 1:]:
                if not following.startswith((" ", "\t")) or not following.strip():
                    break
                detail.append(following.strip())
            return " ".join([line.strip(), *detail])
    lines = [ln.strip() for ln in raw if ln.strip()]
    for marker in ("ConfigError", "Error:", "Exception:"):
        for line in lines:
            if marker in line:
                return line
    return lines[-1] if lines else "(no output)"
