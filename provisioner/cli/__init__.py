"""The `hauspost` command line. Data on stdout, progress and logs on stderr.

Exit codes (documented in the README):
  0 ok · 1 failure · 2 usage error · 3 config/policy error · 4 environment problem
  (port in use, unwritable directory, missing program) · further codes per command.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from provisioner.errors import EXIT_FAILURE, HauspostError

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

logger = logging.getLogger(__name__)


def data_dir_option(func: F) -> F:
    return click.option(
        "-d", "--data-dir", type=click.Path(path_type=Path), default=Path("hauspost-data"),
        show_default=True, envvar="HAUSPOST_DATA_DIR",
        help="Data directory written by `hauspost init` (holds hauspost.yaml).",
    )(func)


#: Command name -> "module:attribute". Modules are imported only when their command runs:
#: `hauspost offboard` must not pay for importing matrix-nio, SCIM and the org-room planner
#: (over a second of start-up), since a leaver's access should end within a second.
LAZY_COMMANDS = {
    "init": "provisioner.cli.server:init",
    "run": "provisioner.cli.server:run",
    "demo": "provisioner.cli.server:demo",
    "plan": "provisioner.cli.accounts:plan_command",
    "sync": "provisioner.cli.accounts:sync_command",
    "offboard": "provisioner.cli.accounts:offboard_command",
    "audit": "provisioner.cli.accounts:audit_command",
    "rooms": "provisioner.cli.rooms:rooms_command",
    "review": "provisioner.cli.review:review_command",
    "gdpr": "provisioner.cli.gdpr:gdpr_group",
    "hold": "provisioner.cli.gdpr:hold_group",
    "announce": "provisioner.cli.announce:announce_command",
    "announcements": "provisioner.cli.announce:announcements_group",
    "tick": "provisioner.cli.announce:tick_command",
    "serve": "provisioner.cli.service:serve_command",
    "status": "provisioner.cli.service:status_command",
}


class HauspostGroup(click.Group):
    """Loads command modules lazily; turns domain errors into one line `Error: …` + exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module_name, attribute = LAZY_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{LAZY_COMMANDS[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HauspostError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except OSError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_FAILURE)


@click.group(cls=HauspostGroup, context_settings=CONTEXT_SETTINGS)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars.")
@click.version_option(package_name="hauspost")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Hauspost: a company messenger on Matrix that follows HR.

    Typical start: `hauspost init --server-name example.com`, then `hauspost run`.
    """
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
