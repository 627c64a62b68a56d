"""`hauspost serve`: one asyncio process hosting the SCIM endpoint (/scim/v2), the signed HR
webhook (/hooks/hr) and /health, plus the schedules (queue worker, directory sync, leave
dates, announcement reminders).

Systemd-friendly: logs to stderr, stops cleanly on SIGTERM (requests in flight finish, the
running job finishes or stays queued), and refuses to start with one line naming the
problem (missing token file, port in use) before it accepts anything.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from provisioner.accounts.policy import policy_for
from provisioner.console.web import Console
from provisioner.errors import ConfigError, EnvironmentProblemError
from provisioner.scim.app import PREFIX, ScimApplication, aiohttp_handler, build_provider, resource_models
from provisioner.scim.storage import HauspostScimStorage
from provisioner.service.leave_dates import due_leavers
from provisioner.service.scheduler import Scheduler
from provisioner.service.webhook import (
    MAX_BODY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRefusedError,
    accept,
    parse_event,
    verify,
)
from provisioner.service.worker import JobWorker
from provisioner.settings import Settings
from provisioner.store import Store, open_store
from provisioner.store.jobs import KIND_SYNC, JobSpec, enqueue, queue_status

logger = logging.getLogger(__name__)

SERVICE_ACTOR = "hauspost-service"
HOOK_PATH = "/hooks/hr"
STOP_GRACE_SECONDS = 10.0
MAX_REQUEST_LINE = 32 * 1024
#: The leaver data timeline counts in days: hourly is plenty.
DATA_PROTECTION_SECONDS = 3600.0


def read_secret(path: Path, *, settings: Settings, key: str) -> str:
    """A secret file's first line; ConfigError naming hauspost.yaml and the key otherwise."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist (create it with one secret line, mode 0600)",
                          file=str(settings.file), key=key) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", file=str(settings.file),
                          key=key) from None
    if len(value) < 16:
        raise ConfigError(f"{path} holds {'no' if not value else 'a too short'} secret "
                          "(at least 16 characters)", file=str(settings.file), key=key)
    return value


@dataclass(frozen=True)
class Secrets:
    scim_token: str | None
    webhook_secret: bytes | None


def load_secrets(settings: Settings) -> Secrets:
    """The SCIM token and webhook secret; ConfigError when nothing at all would be served."""
    service = settings.service
    token = (read_secret(service.scim.token_file, settings=settings, key="service.scim.token_file")
             if service.scim else None)
    secret = (read_secret(service.webhook.secret_file, settings=settings,
                          key="service.webhook.secret_file").encode()
              if service.webhook else None)
    if token is None and secret is None and settings.console is None:
        raise ConfigError("neither SCIM, the webhook nor the console is enabled: nothing to serve",
                          file=str(settings.file), key="service")
    return Secrets(token, secret)


def rooms_follow_scim_groups(settings: Settings) -> bool:
    """SCIM membership changes queue a room sync only where they can change a room: rooms
    are managed and `scim` is a directory source (else the room sync never sees SCIM groups)."""
    directory = settings.directory
    return settings.policies is not None and directory is not None and directory.uses_scim


class Service:
    def __init__(self, settings: Settings, store: Store, secrets: Secrets) -> None:
        self.settings = settings
        self.store = store
        self.secrets = secrets
        # Settings don't change while the service runs; policy_for also reads
        # announcements.yaml, which the webhook and the leave-date tick don't need.
        self.time_zone = policy_for(settings).time_zone
        self.worker = JobWorker(settings, store)
        self.stop_event = asyncio.Event()
        self.started = time.monotonic()
        self.scheduler = Scheduler()
        self.storage: HauspostScimStorage | None = None
        self.console: Console | None = None
        #: One writer of the job queue at a time (SCIM, webhook, schedules): de-duplication
        #: reads and then inserts.
        self.queue_lock = asyncio.Lock()

    # --- HTTP -------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024, middlewares=[_log_requests])
        app.router.add_get("/health", self.health)
        if self.secrets.scim_token is not None and self.settings.service.scim is not None:
            provider = build_provider()
            self.storage = HauspostScimStorage(
                self.store, server_name=self.settings.server_name,
                protected=policy_for(self.settings).protected,
                models=resource_models(provider), on_queued=self.worker.wake,
                lock=self.queue_lock, rooms_follow=rooms_follow_scim_groups(self.settings))
            count = self.storage.load()
            logger.info("SCIM: %d stored resources loaded", count)
            scim = ScimApplication(self.storage, provider, token=self.secrets.scim_token,
                                   actor=self.settings.service.scim.actor)
            handler = aiohttp_handler(scim, self.settings.service.public_url)
            app.router.add_route("*", PREFIX, handler)
            app.router.add_route("*", PREFIX + "/{tail:.*}", handler)
        if self.secrets.webhook_secret is not None:
            app.router.add_post(HOOK_PATH, self.hook)
        if self.settings.console is not None:
            from provisioner.console.app import add_console

            self.console = add_console(app, self.settings, self.store, self.settings.console,
                                       time_zone=self.time_zone, on_queued=self.worker.wake)
        return app

    async def health(self, request: web.Request) -> web.Response:
        try:
            status = await asyncio.to_thread(self._queue_counts)
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            logger.error("health: the store is not readable: %s", exc)
            return web.json_response({"status": "store unavailable"}, status=503)
        return web.json_response({"status": "ok", "queue": status,
                                  "uptime_seconds": round(time.monotonic() - self.started, 1)})

    def _queue_counts(self) -> dict[str, int]:
        with self.store.session() as session:
            return queue_status(session, recent=0).counts

    async def hook(self, request: web.Request) -> web.Response:
        webhook = self.settings.service.webhook
        assert webhook is not None and self.secrets.webhook_secret is not None  # noqa: S101
        peer = request.remote or "?"
        try:
            if request.content_length is not None and request.content_length > MAX_BODY:
                raise WebhookRefusedError(413, "body too large")
            body = await request.content.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise WebhookRefusedError(413, "body too large")
            digest = verify(self.secrets.webhook_secret, request.headers.get(TIMESTAMP_HEADER),
                            request.headers.get(SIGNATURE_HEADER), body, now=time.time(),
                            window=webhook.replay_window_seconds)
            event = parse_event(body)
            async with self.queue_lock:
                jobs = await asyncio.to_thread(
                    accept, self.store, event, digest, actor=webhook.actor,
                    tz=self.time_zone, now=datetime.now(UTC),
                    window=webhook.replay_window_seconds)
        except WebhookRefusedError as exc:
            logger.warning("HR webhook from %s refused (%d): %s", peer, exc.status, exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        self.worker.wake()
        logger.info("HR webhook from %s accepted: %s %s effective %s (jobs %s)", peer,
                    event.event, event.employee_id, event.effective_date, jobs)
        return web.json_response({"status": "accepted", "jobs": jobs}, status=202)

    # --- schedules --------------------------------------------------------------------

    async def _queue_leavers(self) -> None:
        def work() -> int:
            now = datetime.now(UTC)
            with self.store.session() as session:
                specs = due_leavers(session, now, self.time_zone)
                for spec in specs:
                    enqueue(session, spec, actor=SERVICE_ACTOR, source="schedule", now=now)
                return len(specs)

        async with self.queue_lock:
            queued = await asyncio.to_thread(work)
        if queued:
            self.worker.wake()

    async def _queue_sync(self) -> None:
        def work() -> None:
            with self.store.session() as session:
                enqueue(session, JobSpec(kind=KIND_SYNC, target="directory",
                                         reason="periodic directory sync", dedupe_key="sync"),
                        actor=SERVICE_ACTOR, source="schedule", now=datetime.now(UTC))

        async with self.queue_lock:
            await asyncio.to_thread(work)
        self.worker.wake()

    async def _announcement_tick(self) -> None:
        # Imported at the first tick, one interval after start: it loads the bot's E2EE
        # client, which the SCIM endpoint and the webhook don't need to start answering.
        from provisioner.announcements.tick import run_tick

        await run_tick(self.settings, datetime.now(UTC))

    async def _data_protection_timeline(self) -> None:
        from provisioner.gdpr.timeline import run_timeline

        result = await run_timeline(self.settings, self.store)
        if result.erased or result.failed:
            logger.info("data-protection timeline: %d erased, %d withheld by legal hold, "
                        "%d failed", len(result.erased), len(result.withheld),
                        len(result.failed))

    def plan_schedules(self) -> None:
        service = self.settings.service
        self.scheduler.every("leave-dates", service.tick_seconds, self._queue_leavers)
        if service.sync_interval_seconds:
            self.scheduler.every("directory-sync", service.sync_interval_seconds,
                                 self._queue_sync)
        self.scheduler.every("announcement-reminders", service.tick_seconds,
                             self._announcement_tick, run_at_start=False)
        if self.settings.data_protection.erase_after_days:
            self.scheduler.every("data-protection-timeline", DATA_PROTECTION_SECONDS,
                                 self._data_protection_timeline, run_at_start=False)

    # --- life cycle -------------------------------------------------------------------

    async def run(self) -> None:
        service = self.settings.service
        app = self.build_app()
        # Long request lines reach the SCIM filter check and get a SCIM error body back,
        # instead of aiohttp's plain-text 400 at its 8 KiB default.
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               max_line_size=MAX_REQUEST_LINE)
        await runner.setup()
        site = web.TCPSite(runner, service.host, service.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise EnvironmentProblemError(
                f"cannot listen on {service.host}:{service.port}: {why} "
                f"(service.listen in {self.settings.file})") from None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        self.plan_schedules()
        logger.info("hauspost service listening on http://%s:%d (SCIM %s, webhook %s, "
                    "console %s)", service.host, service.port,
                    "on" if self.storage else "off",
                    "on" if self.secrets.webhook_secret else "off",
                    "on at /console/" if self.console else "off")
        tasks = [asyncio.create_task(self.worker.run(self.stop_event), name="worker"),
                 asyncio.create_task(self.scheduler.run(self.stop_event), name="schedules")]
        await self.stop_event.wait()
        logger.info("stopping: finishing requests in flight and the running job")
        await runner.cleanup()
        self.worker.wake()
        done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                logger.error("%s ended with %s", task.get_name(), task.exception())
        await self.worker.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        logger.info("stopped")


@web.middleware
async def _log_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    # Path only: query strings (SCIM filters) hold personal data and stay out of the log.
    started = time.monotonic()
    response: web.StreamResponse = await handler(request)
    logger.debug("%s %s -> %d in %.1f ms", request.method, request.path, response.status,
                 (time.monotonic() - started) * 1000)
    return response


async def run_service(settings: Settings) -> None:
    """Check the config, open the store, serve until SIGTERM/SIGINT."""
    secrets = load_secrets(settings)
    store = open_store(settings.store_url)
    try:
        await Service(settings, store, secrets).run()
    finally:
        store.close()
