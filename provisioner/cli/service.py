"""`hauspost serve` and `hauspost status`: the long-running HR service and its queue.

Exit codes: serve: 0 stopped by SIGTERM/SIGINT · 3 config error (e.g. the SCIM token file
is missing) · 4 environment problem (port in use). status: 0 · 3 config error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click

from provisioner.cli import data_dir_option
from provisioner.settings import load_settings
from provisioner.store import open_store
from provisioner.store.jobs import job_json, queue_status
from provisioner.store.models import RunRow


@click.command("serve")
@data_dir_option
@click.pass_context
def serve_command(ctx: click.Context, data_dir: Path) -> None:
    """Run the Hauspost service: SCIM endpoint, HR webhook, health, schedules.

    Listens on service.listen (default 127.0.0.1:8090) behind the TLS reverse proxy;
    /scim/v2 (bearer token from service.scim.token_file), /hooks/hr (HMAC-signed, when
    service.webhook is set) and /health. Logs go to stderr; SIGTERM stops it cleanly.

    Example: hauspost serve -d /var/lib/hauspost
    """
    from provisioner.service.server import run_service

    settings = load_settings(data_dir)
    root = logging.getLogger()
    if not (ctx.find_root().obj or {}).get("quiet") and root.level > logging.INFO:
        # A service logs what it does by default; one line per request to Synapse and
        # per store open is noise in the journal unless asked for with -v.
        root.setLevel(logging.INFO)
        if not ctx.find_root().params.get("verbose"):
            for noisy in ("httpx", "alembic.runtime.migration"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(run_service(settings))


@click.command("status")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable status on stdout.")
def status_command(data_dir: Path, as_json: bool) -> None:
    """Show the service's queue of accepted HR changes and the last sync run.

    Pending changes are applied by `hauspost serve` (retried while Synapse is down);
    failed ones need a person: the error says why.

    Example: hauspost status -d /var/lib/hauspost
    """
    from sqlalchemy import select

    settings = load_settings(data_dir)
    store = open_store(settings.store_url)
    try:
        with store.session() as session:
            status = queue_status(session)
            last = session.scalars(select(RunRow).where(RunRow.kind == "sync")
                                   .order_by(RunRow.id.desc()).limit(1)).first()
            last_sync = None if last is None else {
                "id": last.id, "status": last.status, "started_at": last.started_at.isoformat(),
                "finished_at": last.finished_at.isoformat() if last.finished_at else None}
            if as_json:
                click.echo(json.dumps({**status.to_json(), "last_sync": last_sync}, indent=2,
                                      sort_keys=True))
                return
            counts = status.counts
            click.echo(f"Queue: {counts['pending']} pending, {counts['failed']} failed, "
                       f"{counts['done']} done")
            for job in status.open_jobs:
                j = job_json(job)
                error = f"  last error: {j['last_error']}" if j["last_error"] else ""
                when = (f"next try {j['next_attempt_at']}" if job.state == "pending"
                        else "needs attention")
                click.echo(f"  {j['state']:<7} #{j['id']} {j['kind']} {j['target']} "
                           f"({j['source']}, {j['attempts']} tries, {when}){error}")
            for job in status.recent_done:
                click.echo(f"  done    #{job.id} {job.kind} {job.target} "
                           f"({job.source}, at {job.finished_at:%Y-%m-%d %H:%M:%S}Z)")
            if last_sync is None:
                click.echo("Last sync: never")
            else:
                click.echo(f"Last sync: run {last_sync['id']} {last_sync['status']}, started "
                           f"{last_sync['started_at']}")
    finally:
        store.close()
