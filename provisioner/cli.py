"""The `hauspost` command line. Data on stdout, progress and logs on stderr.

Exit codes (documented in the README):
  0 ok · 1 failure · 2 usage error · 3 config/policy error · 4 environment problem
  (port in use, unwritable directory, missing program) · further codes per command.
"""

from __future__ import annotations

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


class HauspostGroup(click.Group):
    """Turns domain errors into one line `Error: …` and their exit code."""

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


def _register_subcommands() -> None:
    # Each command family lives in its own module; add one line per family here.
    from provisioner.cli_server import register as register_server

    register_server(main)
    __import__("provisioner.cli_accounts", fromlist=["register"]).register(main)
    __import__("provisioner.cli_rooms", fromlist=["register"]).register(main)
    __import__("provisioner.cli_announce", fromlist=["register"]).register(main)
    __import__("provisioner.cli_service", fromlist=["register"]).register(main)


_register_subcommands()
