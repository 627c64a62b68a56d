"""Render a Synapse worker layout (pure: no I/O).

One main process plus named workers, all reading the same homeserver.yaml and each its
own `workers/<name>.yaml`:

* `client1..N`  generic workers for client traffic (sync, sending, keys, login, ...),
* `persister1`  the event persister (the only writer of the events stream),
* `media1`      the media repository: the only process that serves and deletes files,
                so the media gate's download rule and its sweep run there,
* `background1` background tasks, the user directory, pushers and appservice pushes.

Redis carries replication between them. The reverse proxy routes each request to the
right process by Synapse's documented endpoint patterns (docs/workers.md upstream); what
no pattern claims goes to the main process.

`hosts="loopback"` puts every process on 127.0.0.1 (one machine, tests, systemd);
`hosts="compose"` binds 0.0.0.0 inside containers and names each process by its
docker-compose service `synapse-<name>` (docker/docker-compose.yml).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from provisioner.errors import ConfigError
from provisioner.homeserver.homeserver_yaml import render_log_config, y
from provisioner.homeserver.module_configs import ModuleEntry

Role = Literal["client", "event_persister", "media", "background"]
Hosts = Literal["loopback", "compose"]

MAIN = "main"
PERSISTER = "persister1"
MEDIA = "media1"
BACKGROUND = "background1"
MAX_CLIENT_WORKERS = 32
REPLICATION_SECRET_FILE = "worker_replication_secret"  # noqa: S105 - a file name
MEDIA_GATE_MODULE = "synapse_modules.media_gate.MediaGate"

# Synapse docs/workers.md, `synapse.app.generic_worker`: client endpoints any generic
# worker can answer. Federation patterns are left out on purpose: federation is off.
GENERIC_WORKER_PATTERNS = (
    # Sync requests
    r"^/_matrix/client/(r0|v3)/sync$",
    r"^/_matrix/client/(api/v1|r0|v3)/events$",
    r"^/_matrix/client/(api/v1|r0|v3)/initialSync$",
    r"^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
    # Client API requests
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/createRoom$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/publicRooms$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/joined_members$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/context/.*$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/members$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state$",
    r"^/_matrix/client/v1/rooms/.*/hierarchy$",
    r"^/_matrix/client/(v1|unstable)/rooms/.*/relations/",
    r"^/_matrix/client/v1/rooms/.*/threads$",
    r"^/_matrix/client/(r0|v3|unstable)/account/3pid$",
    r"^/_matrix/client/(r0|v3|unstable)/account/whoami$",
    r"^/_matrix/client/(r0|v3|unstable)/account/deactivate$",
    r"^/_matrix/client/(r0|v3)/delete_devices$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/devices(/|$)",
    r"^/_matrix/client/versions$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/voip/turnServer$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/event/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/joined_rooms$",
    r"^/_matrix/client/v1/rooms/.*/timestamp_to_event$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/search$",
    r"^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/directory/room/.*$",
    r"^/_matrix/client/(r0|v3|unstable)/capabilities$",
    r"^/_matrix/client/(r0|v3|unstable)/notifications$",
    # Encryption requests
    r"^/_matrix/client/(r0|v3|unstable)/keys/query$",
    r"^/_matrix/client/(r0|v3|unstable)/keys/changes$",
    r"^/_matrix/client/(r0|v3|unstable)/keys/claim$",
    r"^/_matrix/client/(r0|v3|unstable)/room_keys/",
    r"^/_matrix/client/(r0|v3|unstable)/keys/upload",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/keys/device_signing/upload$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/keys/signatures/upload$",
    # Login requests (registration is off)
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/login$",
    # Event sending requests
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/redact",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/send",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/(join|invite|leave|ban|unban|kick)$",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/join/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/knock/",
    r"^/_matrix/client/(api/v1|r0|v3|unstable)/profile/",
    # User directory search requests
    r"^/_matrix/client/(r0|v3|unstable)/user_directory/search$",
)

# Sync-type requests of one user go to one worker (its caches stay warm); the rest
# round-robin. Hashing on the token's localpart is the documented nginx example.
STICKY_PATTERNS = GENERIC_WORKER_PATTERNS[:4]

# Synapse docs/workers.md, `synapse.app.media_repository` (its admin API stays internal).
# Plus the media gate's withdrawal: every process answers it (the decision is in the
# database), but on the media worker it also deletes the bytes at once.
MEDIA_PREFIXES = ("/_matrix/media/", "/_matrix/client/v1/media/", "/_synapse/media/",
                  "/_synapse/client/hauspost/media/")


@dataclass(frozen=True)
class Process:
    name: str
    role: Role | Literal["main"]
    host: str  # where the others reach it
    http_port: int  # client (or media) listener; /health answers on it
    replication_port: int | None = None

    @property
    def is_main(self) -> bool:
        return self.role == "main"


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int
    password_file: Path | None = None


@dataclass(frozen=True)
class WorkerLayout:
    main: Process
    workers: tuple[Process, ...]
    redis: RedisTarget
    hosts: Hosts

    @property
    def bind_address(self) -> str:
        # Inside a container the port must be reachable from the other containers;
        # the compose network is private and nothing publishes these ports.
        return "0.0.0.0" if self.hosts == "compose" else "127.0.0.1"  # noqa: S104

    @property
    def processes(self) -> tuple[Process, ...]:
        return (self.main, *self.workers)

    def by_role(self, role: Role) -> tuple[Process, ...]:
        return tuple(w for w in self.workers if w.role == role)

    def worker(self, name: str) -> Process:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(name)


def parse_redis_url(url: str, password_file: Path | None = None) -> RedisTarget:
    parsed = urlparse(url)
    if parsed.scheme != "redis" or not parsed.hostname:
        raise ConfigError(f"expected redis://host:port, got {url!r}", key="--redis-url")
    if parsed.password:
        raise ConfigError("put the Redis password in a file (--redis-password-file), "
                          "not in the URL", key="--redis-url")
    try:
        port = parsed.port or 6379
    except ValueError:
        raise ConfigError(f"the port of {url!r} is not a number", key="--redis-url") from None
    return RedisTarget(host=parsed.hostname, port=port, password_file=password_file)


def plan_layout(client_workers: int, *, main_port: int, first_port: int,
                redis: RedisTarget, hosts: Hosts = "loopback") -> WorkerLayout:
    """Name the processes and give each its ports: `first_port` upwards, one by one.

    The main process keeps `main_port` for client traffic (admin API, anything no
    pattern routes elsewhere) and gets `first_port` for replication.
    """
    if not 1 <= client_workers <= MAX_CLIENT_WORKERS:
        raise ConfigError(f"expected 1 to {MAX_CLIENT_WORKERS} client workers, "
                          f"got {client_workers}", key="--workers")
    needed = client_workers + 5  # main replication, persister (2), media, background
    if not 1024 <= first_port <= 65535 - needed:
        raise ConfigError(f"expected a port from 1024 to {65535 - needed}, got {first_port}",
                          key="--worker-base-port")
    if first_port <= main_port < first_port + needed:
        raise ConfigError(f"the worker ports {first_port}-{first_port + needed - 1} include "
                          f"the main port {main_port}", key="--worker-base-port")

    def host(name: str) -> str:
        return f"synapse-{name}" if hosts == "compose" else "127.0.0.1"

    ports = iter(range(first_port, first_port + needed))
    main = Process(MAIN, "main", host(MAIN), main_port, replication_port=next(ports))
    workers = [Process(f"client{i}", "client", host(f"client{i}"), next(ports))
               for i in range(1, client_workers + 1)]
    workers.append(Process(PERSISTER, "event_persister", host(PERSISTER), next(ports),
                           replication_port=next(ports)))
    workers.append(Process(MEDIA, "media", host(MEDIA), next(ports)))
    workers.append(Process(BACKGROUND, "background", host(BACKGROUND), next(ports)))
    return WorkerLayout(main=main, workers=tuple(workers), redis=redis, hosts=hosts)


def pin_singleton_jobs(modules: list[ModuleEntry], layout: WorkerLayout) -> list[ModuleEntry]:
    """Give every once-per-deployment module job one named worker.

    The media gate's sweep deletes files, so it must run where the media store is and
    only there; the main process has no media repository in a worker layout.
    """
    out = []
    for entry in modules:
        if entry.module == MEDIA_GATE_MODULE:
            entry = replace(entry, config={**entry.config, "sweep_worker": MEDIA})
        out.append(entry)
    return out


def render_shared_config(layout: WorkerLayout, keys_dir: Path) -> str:
    """Appended to homeserver.yaml: what every process must agree on."""
    instances = [p for p in layout.processes if p.replication_port is not None]
    instance_map = "".join(
        f"  {p.name}:\n    host: {y(p.host)}\n    port: {p.replication_port}\n"
        for p in instances)
    redis = (f"redis:\n  enabled: true  # replication between the processes\n"
             f"  host: {y(layout.redis.host)}\n  port: {layout.redis.port}\n")
    if layout.redis.password_file is not None:
        redis += f"  password_path: {y(str(layout.redis.password_file))}\n"
    persisters = [p.name for p in layout.by_role("event_persister")]
    return f"""
# --- Workers (`hauspost init --workers`): shared by every process; see docs/scale-out.md. ---
# Each process also reads workers/<name>.yaml; the reverse proxy routes by
# nginx/locations.conf. PostgreSQL is required: workers cannot share SQLite.
{redis}# Internal HTTP calls between processes must carry this secret.
worker_replication_secret_path: {y(str(keys_dir / REPLICATION_SECRET_FILE))}
instance_map:  # who listens for replication where
{instance_map}stream_writers:
  events: {y(persisters)}  # one writer of room events, off the main process
run_background_tasks_on: {y(BACKGROUND)}  # periodic clean-ups run once, there
update_user_directory_from_worker: {y(BACKGROUND)}
notify_appservices_from_worker: {y(BACKGROUND)}
pusher_instances: [{y(BACKGROUND)}]  # push notifications sent once, from one place
federation_sender_instances: []  # federation is off: no process sends to other servers
enable_media_repo: false  # only the media worker serves files (and runs the media gate)
media_instance_running_background_jobs: {y(MEDIA)}  # media retention deletes from there
"""


def render_main_config(layout: WorkerLayout) -> str:
    """workers/main.yaml: the main process's listeners (client plus replication)."""
    main = layout.main
    return f"""\
# Hauspost: the main process of a worker layout (`-c homeserver.yaml -c workers/main.yaml`).
listeners:
  - port: {main.http_port}
    bind_addresses: [{y(layout.bind_address)}]
    type: http
    x_forwarded: true  # behind the reverse proxy
    resources:
      - names: [client]  # admin API and whatever no worker pattern claims
        compress: false
  - port: {main.replication_port}
    bind_addresses: [{y(layout.bind_address)}]  # never publish: internal traffic only
    type: http
    resources:
      - names: [replication]
"""


def render_worker_config(layout: WorkerLayout, worker: Process, data_dir: Path) -> str:
    """workers/<name>.yaml for `python -m synapse.app.generic_worker`."""
    resource = {"client": "client", "event_persister": "health", "media": "media",
                "background": "health"}[worker.role]
    why = {
        "client": "client traffic routed here by the reverse proxy",
        "event_persister": "/health only: it takes events over replication",
        "media": "downloads and uploads; the media gate decides here",
        "background": "/health only: background work takes no requests",
    }[worker.role]
    listeners = (
        f"  - port: {worker.http_port}\n"
        f"    bind_addresses: [{y(layout.bind_address)}]\n"
        f"    type: http\n"
        f"    x_forwarded: true\n"
        f"    resources:\n"
        f"      - names: [{resource}]  # {why}\n"
    )
    if worker.replication_port is not None:
        listeners += (
            f"  - port: {worker.replication_port}\n"
            f"    bind_addresses: [{y(layout.bind_address)}]  # internal only\n"
            f"    type: http\n"
            f"    resources:\n"
            f"      - names: [replication]\n"
        )
    extra = ""
    if worker.role == "media":
        extra = "enable_media_repo: true  # this worker is the media repository\n"
    return f"""\
# Hauspost worker {worker.name} ({worker.role}); run with
#   python -m synapse.app.generic_worker -c homeserver.yaml -c workers/{worker.name}.yaml
worker_app: synapse.app.generic_worker
worker_name: {y(worker.name)}
worker_log_config: {y(str(data_dir / 'workers' / f'{worker.name}.log.config'))}
{extra}worker_listeners:
{listeners}"""


def _upstream(name: str, servers: list[Process], sticky: bool = False) -> str:
    lines = [f"upstream {name} {{"]
    if sticky:
        lines.append("    hash $hauspost_mxid_localpart consistent;")
    lines.extend(f"    server {p.host}:{p.http_port};" for p in servers)
    lines.append("    keepalive 16;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_nginx_upstreams(layout: WorkerLayout) -> str:
    """nginx/upstreams.conf, included in the `http {}` context."""
    clients = list(layout.by_role("client"))
    return "\n".join([
        "# Generated by `hauspost init --workers`; do not edit (re-run init instead).",
        "# Sync requests of one user stick to one worker: key = the token's localpart.",
        "map $http_authorization $hauspost_mxid_localpart {",
        "    default $http_authorization;",
        '    "~Bearer syt_(?<username>.*?)_.*" $username;',
        "}",
        "",
        _upstream("hauspost_main", [layout.main]),
        _upstream("hauspost_sync", clients, sticky=True),
        _upstream("hauspost_client", clients),
        _upstream("hauspost_media", list(layout.by_role("media"))),
    ])


def _location(pattern: str, upstream: str) -> str:
    return f"location ~ {pattern} {{\n    proxy_pass http://{upstream};\n}}\n"


def render_nginx_locations(layout: WorkerLayout) -> str:
    """nginx/locations.conf, included in the `server {}` that serves the client API.

    nginx picks the first matching regex location, so the media and sticky sync
    patterns come before the general client patterns.
    """
    del layout  # the same routing for every layout; upstreams.conf carries the hosts
    parts = [
        "# Generated by `hauspost init --workers` from Synapse's docs/workers.md patterns.",
        "# Include inside the server {} block; upstreams.conf goes in http {}.",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "client_max_body_size 50M;  # Synapse's max_upload_size refuses more anyway",
        "",
        "# Media repository: only the media worker serves files (the media gate runs there).",
    ]
    for prefix in MEDIA_PREFIXES:
        # ^~: no regex location below may take a media path away from the media worker.
        parts.append(f"location ^~ {prefix} {{\n    proxy_pass http://hauspost_media;\n}}\n")
    parts.append("# Sync: sticky per user.")
    parts.extend(_location(p, "hauspost_sync") for p in STICKY_PATTERNS)
    parts.append("# Other client endpoints any generic worker answers.")
    parts.extend(_location(p, "hauspost_client")
                 for p in GENERIC_WORKER_PATTERNS[len(STICKY_PATTERNS):])
    parts.append("# The admin API is not public: the Hauspost service calls the main process\n"
                 "# (and, for media, the media worker) on the internal network.")
    parts.append("location ^~ /_synapse/admin/ {\n    return 404;\n}\n")
    parts.append("# Other client endpoints (account data, to-device, ...) to the main process.")
    parts.append("location /_matrix/client/ {\n    proxy_pass http://hauspost_main;\n}\n")
    parts.append("location /_synapse/client/ {\n    proxy_pass http://hauspost_main;\n}\n")
    parts.append("# Federation, the key server, metrics: never reachable from outside.")
    parts.append("location / {\n    return 404;\n}\n")
    return "\n".join(parts)


@dataclass(frozen=True)
class RenderedLayout:
    """Every file of a worker layout, relative to the data directory."""

    shared_config: str  # appended to homeserver.yaml
    files: dict[str, str]


def render_layout(layout: WorkerLayout, data_dir: Path) -> RenderedLayout:
    files = {"workers/main.yaml": render_main_config(layout)}
    for worker in layout.workers:
        files[f"workers/{worker.name}.yaml"] = render_worker_config(layout, worker, data_dir)
        files[f"workers/{worker.name}.log.config"] = render_log_config(
            data_dir / "workers" / f"{worker.name}.log")
    files["nginx/upstreams.conf"] = render_nginx_upstreams(layout)
    files["nginx/locations.conf"] = render_nginx_locations(layout)
    return RenderedLayout(shared_config=render_shared_config(layout, data_dir / "keys"),
                          files=files)
