"""`hauspost init`, `hauspost run` and `hauspost demo`: a running company homeserver."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from provisioner.accounts.bot_account import bootstrap_own_accounts
from provisioner.directory.config import LdapSourceOptions
from provisioner.errors import ConfigError, EnvironmentProblemError
from provisioner.homeserver.data_dir import InitRequest, init_data_dir
from provisioner.homeserver.synapse_process import StopRequestedError, SynapseProcess, raise_stop
from provisioner.homeserver.worker_processes import has_worker_layout, serve_workers
from provisioner.settings import LdapSettings, Settings, load_settings

DEMO_SERVER_NAME = "hauspost.localhost"
DEMO_DATA_DIR = Path(".demo")



@click.command()
@click.option("--server-name", required=True,
              help="The company's Matrix domain, e.g. example.com (user IDs end in it).")
@click.option("-d", "--data-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("hauspost-data"), show_default=True, envvar="HAUSPOST_DATA_DIR",
              help="Where config, keys and data go.")
@click.option("--bind", "bind_address", default="127.0.0.1", show_default=True,
              help="Listen address of the client API (keep loopback behind a TLS proxy).")
@click.option("--port", type=click.IntRange(1, 65535), default=8008, show_default=True)
@click.option("--public-url", default=None,
              help="The URL clients use (e.g. https://matrix.example.com); default: the listener.")
@click.option("--media-lifetime", default="365d", show_default=True,
              help="Delete a file this long after its last download (Synapse duration: 90d, 1y).")
@click.option("--behind-proxy", is_flag=True,
              help="Trust X-Forwarded-For from a reverse proxy on this host (TLS in front).")
@click.option("--database-url", default=None,
              help="postgresql://user:password@host:5432/synapse (default: SQLite in the data dir).")
@click.option("--ldap-uri", default=None, help="Enable LDAP login: ldap:// or ldaps:// URI.")
@click.option("--ldap-base", default=None, help="Base DN of employee entries.")
@click.option("--ldap-bind-dn", default=None, help="DN to bind as for searches.")
@click.option("--ldap-bind-password-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="File holding the bind password (never on the command line).")
@click.option("--ldap-start-tls", is_flag=True, help="Use StartTLS on an ldap:// URI.")
@click.option("--ldap-login-attribute", default="uid", show_default=True,
              help="Attribute employees log in with; also their Matrix localpart.")
@click.option("--ldap-user-filter", default=None,
              help="LDAP filter of employee entries [default: (objectClass=inetOrgPerson)].")
@click.option("--ldap-employee-id-attribute", default=None,
              help="Attribute holding the immutable employee id [default: employeeNumber].")
@click.option("--ldap-disabled-attribute", default=None,
              help="Attribute that marks an entry as disabled (OpenLDAP), e.g. employeeType.")
@click.option("--ldap-disabled-value", "ldap_disabled_values", multiple=True,
              help="A value of --ldap-disabled-attribute that means disabled (repeatable; "
                   "none: any value).")
@click.option("--workers", type=click.IntRange(0, 32), default=0, show_default=True,
              help="Client workers of a worker layout (plus event persister, media and "
                   "background workers, Redis, nginx routing); 0 = one process. "
                   "Needs --database-url.")
@click.option("--worker-base-port", type=click.IntRange(1024, 65535), default=8100,
              show_default=True, help="Workers and replication listen from this port up.")
@click.option("--redis-url", default="redis://127.0.0.1:6379", show_default=True,
              help="Redis for replication between the workers.")
@click.option("--redis-password-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="File holding the Redis password.")
@click.option("--worker-hosts", type=click.Choice(["loopback", "compose"]), default="loopback",
              show_default=True,
              help="loopback: all processes on 127.0.0.1; compose: one container each "
                   "(docker/docker-compose.yml).")
@click.option("--store-url", default=None,
              help="The provisioner's own database, e.g. postgresql://hauspost@127.0.0.1/"
                   "hauspost (default: SQLite in the data dir).")
def init(server_name: str, data_dir: Path, bind_address: str, port: int, public_url: str | None,
         media_lifetime: str, behind_proxy: bool, database_url: str | None,
         ldap_uri: str | None, ldap_base: str | None,
         ldap_bind_dn: str | None, ldap_bind_password_file: Path | None, ldap_start_tls: bool,
         ldap_login_attribute: str, ldap_user_filter: str | None = None,
         ldap_employee_id_attribute: str | None = None,
         ldap_disabled_attribute: str | None = None,
         ldap_disabled_values: tuple[str, ...] = (), workers: int = 0, worker_base_port: int = 8100,
         redis_url: str = "redis://127.0.0.1:6379", redis_password_file: Path | None = None,
         worker_hosts: str = "loopback", store_url: str | None = None) -> None:
    """Write a hardened homeserver config, secrets and Element config into a data directory.

    Re-running it rewrites the config files (the old version is kept as *.bak) but never
    touches keys or secrets, and keeps every hauspost.yaml key it was not given. The LDAP
    login filter is rendered from hauspost.yaml's `ldap:` keys, the sync's own definition
    of an active employee.

    Example: hauspost init --server-name example.com -d /var/lib/hauspost

    Worker layout (docs/scale-out.md): hauspost init --server-name example.com
    --database-url postgresql://synapse@127.0.0.1/synapse --workers 2
    """
    ldap = None
    if ldap_uri:
        if not ldap_base:
            raise ConfigError("is required with --ldap-uri", key="--ldap-base")
        if ldap_disabled_values and not ldap_disabled_attribute:
            raise ConfigError("needs --ldap-disabled-attribute", key="--ldap-disabled-value")
        defaults = LdapSourceOptions()
        source = replace(
            defaults,
            employee_id_attribute=ldap_employee_id_attribute or defaults.employee_id_attribute,
            disabled_attribute=ldap_disabled_attribute,
            disabled_values=tuple(ldap_disabled_values))
        ldap = LdapSettings(uri=ldap_uri, base_dn=ldap_base, bind_dn=ldap_bind_dn,
                            bind_password_file=(ldap_bind_password_file.resolve()
                                                if ldap_bind_password_file else None),
                            start_tls=ldap_start_tls, localpart_attribute=ldap_login_attribute,
                            user_filter=ldap_user_filter or LdapSettings.user_filter,
                            source=source)
        if ldap_bind_dn and not ldap_bind_password_file:
            raise ConfigError("is required with --ldap-bind-dn", key="--ldap-bind-password-file")
    result = init_data_dir(InitRequest(
        server_name=server_name, data_dir=data_dir, bind_address=bind_address, port=port,
        public_baseurl=public_url, behind_proxy=behind_proxy, database_url=database_url,
        media_lifetime=media_lifetime,
        ldap=ldap, workers=workers, worker_base_port=worker_base_port, redis_url=redis_url,
        redis_password_file=(redis_password_file.resolve() if redis_password_file else None),
        worker_hosts="compose" if worker_hosts == "compose" else "loopback",
        store_url=store_url))
    for path in result.written:
        click.echo(f"wrote {path}")
    for path in result.kept:
        click.echo(f"kept  {path} (secrets are never overwritten)")
    click.echo(f"Next: hauspost run -d {data_dir}", err=True)


def serve_synapse(settings: Settings, on_ready: list[str] | None = None,
                  seed: bool = False) -> int:
    """Start Synapse, wait until healthy, bootstrap the service account, wait for a signal."""
    process = SynapseProcess(settings.homeserver_config)
    started = time.monotonic()
    process.start()
    old_term = signal.signal(signal.SIGTERM, raise_stop)
    try:
        process.wait_healthy(timeout=120)
        asyncio.run(bootstrap_own_accounts(settings))
        if seed:
            from provisioner.cli.demo import seed_demo_accounts

            lines = asyncio.run(seed_demo_accounts(settings))
            on_ready = (on_ready or []) + lines
        ready = time.monotonic() - started
        click.echo(f"Hauspost homeserver for {settings.server_name} is ready "
                   f"({ready:.1f} s).", err=True)
        click.echo(f"  Homeserver URL for Element / Element X: {settings.homeserver_url}",
                   err=True)
        for line in on_ready or []:
            click.echo("  " + line, err=True)
        click.echo("  Stop with Ctrl-C.", err=True)
        assert process.proc is not None  # noqa: S101 - started above
        code = process.proc.wait()
        click.echo(f"Synapse exited with code {code}; see {process.log_path}", err=True)
        return code or 1
    except (KeyboardInterrupt, StopRequestedError):
        # A second Ctrl-C / SIGTERM must not cut the clean stop short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        click.echo("Stopping Synapse…", err=True)
        stopped = process.stop()
        click.echo("Stopped.", err=True)
        return 0 if stopped in (0, -signal.SIGTERM, None) else int(stopped)
    finally:
        process.stop()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, signal.default_int_handler)


@click.command()
@click.option("-d", "--data-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("hauspost-data"), show_default=True, envvar="HAUSPOST_DATA_DIR",
              help="Data directory written by `hauspost init`.")
def run(data_dir: Path) -> None:
    """Start Synapse with the hardened config and our modules; stop cleanly on Ctrl-C/SIGTERM.

    Example: hauspost run -d /var/lib/hauspost
    """
    settings = load_settings(data_dir)
    if has_worker_layout(settings.homeserver_config):
        sys.exit(serve_workers(settings, bootstrap_own_accounts))  # `init --workers N`
    sys.exit(serve_synapse(settings))


@click.command()
@click.option("-d", "--data-dir", type=click.Path(path_type=Path, file_okay=False),
              default=DEMO_DATA_DIR, show_default=True, help="Where the demo keeps its data.")
@click.option("--port", type=click.IntRange(1, 65535), default=8008, show_default=True)
def demo(data_dir: Path, port: int) -> None:
    """Run a demo company: init, demo employees from config/demo/employees.csv, run.

    Everything on loopback with SQLite; log in from Element with the printed password.

    Example: hauspost demo
    """
    from provisioner.cli.demo import demo_settings, write_demo_company, write_demo_password

    data_dir = data_dir.resolve()
    try:
        write_demo_company(data_dir)
    except OSError as exc:
        raise EnvironmentProblemError(
            f"data directory {data_dir} is not writable: {exc.strerror or exc}") from None
    result = init_data_dir(InitRequest(server_name=DEMO_SERVER_NAME, data_dir=data_dir,
                                       port=port, extra_settings=demo_settings(data_dir)))
    write_demo_password(result.data_dir)
    settings = load_settings(result.data_dir)
    sys.exit(serve_synapse(settings, seed=True))
