"""Supervise the main process and the workers of a worker layout (`hauspost run`).

Start order matters: workers connect to the main process's replication listener, so
the main process must be healthy first; the workers then start together. Stop order
is the reverse. If any process exits, the whole group stops: a half-running layout
would answer some requests and not others.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
import yaml

from provisioner.errors import ConfigError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_process import (
    StopRequestedError,
    SynapseProcess,
    SynapseStartError,
    raise_stop,
)
from provisioner.settings import Settings

logger = logging.getLogger(__name__)

WORKERS_DIR = "workers"
MAIN_CONFIG = "main.yaml"


def has_worker_layout(config_path: Path) -> bool:
    """Does homeserver.yaml describe a worker layout (it has an `instance_map`)?"""
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # the single-process path reports the problem in its own words
    return isinstance(data, dict) and bool(data.get("instance_map"))


class ProcessGroup:
    """The main process plus every `workers/<name>.yaml` next to a homeserver.yaml."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None) -> None:
        workers_dir = config_path.parent / WORKERS_DIR
        main_config = workers_dir / MAIN_CONFIG
        if not main_config.is_file():
            raise ConfigError("homeserver.yaml has an instance_map but workers/main.yaml is "
                              "missing; re-run `hauspost init --workers N`",
                              file=str(main_config))
        self.main = SynapseProcess(config_path, env=env, extra_configs=(main_config,),
                                   log_path=workers_dir / "main.stdout.log")
        self.workers = {
            path.stem: SynapseProcess.worker(config_path, path, env=env)
            for path in sorted(workers_dir.glob("*.yaml")) if path.name != MAIN_CONFIG
        }
        if not self.workers:
            raise ConfigError("no worker configs found", file=str(workers_dir))

    @property
    def processes(self) -> dict[str, SynapseProcess]:
        return {"main": self.main, **self.workers}

    def start(self, timeout: float = 120.0) -> float:
        """Start everything and wait until every process is healthy; seconds taken."""
        started = time.monotonic()
        try:
            self.main.start()
            self.main.wait_healthy(timeout)
            for worker in self.workers.values():
                worker.start()
            for name, worker in self.workers.items():
                left = max(1.0, timeout - (time.monotonic() - started))
                try:
                    worker.wait_healthy(left)
                except SynapseStartError as exc:
                    raise SynapseStartError(f"worker {name}: {exc}", exc.output) from None
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def first_exit(self, poll: float = 0.5) -> tuple[str, int]:
        """Block until some process exits; its name and exit code."""
        while True:
            for name, process in self.processes.items():
                if process.proc is not None and process.proc.poll() is not None:
                    return name, process.proc.returncode
            time.sleep(poll)

    def stop(self) -> dict[str, int | None]:
        # All workers at once (each takes a few seconds to shut down), then the main.
        for worker in self.workers.values():
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        codes = {name: worker.stop() for name, worker in reversed(self.workers.items())}
        codes["main"] = self.main.stop()
        return codes


def serve_workers(settings: Settings,
                  bootstrap: Callable[[Settings], Coroutine[Any, Any, object]] = ensure_service_token
                  ) -> int:
    """`hauspost run` for a worker layout: start all, bootstrap (by default the service
    account's token; the CLI passes one that also checks the rate-limit exemptions), wait
    for a signal or an exit."""
    group = ProcessGroup(settings.homeserver_config)
    old_term = signal.signal(signal.SIGTERM, raise_stop)
    try:
        seconds = group.start()
        asyncio.run(bootstrap(settings))
        click.echo(f"Hauspost homeserver for {settings.server_name} is ready with "
                   f"{len(group.workers)} workers ({seconds:.1f} s).", err=True)
        for name, process in group.processes.items():
            click.echo(f"  {name:12} {process.url}  log: {process.log_path}", err=True)
        click.echo("  Clients connect through the reverse proxy (nginx/locations.conf).",
                   err=True)
        click.echo("  Stop with Ctrl-C.", err=True)
        name, code = group.first_exit()
        click.echo(f"{name} exited with code {code}; stopping the others "
                   f"(see {group.processes[name].log_path})", err=True)
        return code or 1
    except (KeyboardInterrupt, StopRequestedError):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        click.echo("Stopping Synapse workers and the main process…", err=True)
        codes = group.stop()
        click.echo("Stopped.", err=True)
        bad = [c for c in codes.values() if c not in (0, -signal.SIGTERM, None)]
        return int(bad[0]) if bad else 0
    finally:
        group.stop()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, signal.default_int_handler)
