"""Every `hauspost` command has help text, an example, and is documented in the README/docs."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provisioner.cli import main

ROOT = Path(__file__).resolve().parents[2]


def all_commands(group: click.Group = main, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # loads lazily registered commands too
        command = group.get_command(ctx, name)
        assert command is not None, f"hauspost {prefix}{name} cannot be loaded"
        full = f"{prefix}{name}"
        out.append((full, command))
        if isinstance(command, click.Group):
            out.extend(all_commands(command, full + " "))
    return out


def docs_text() -> str:
    parts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(parts)


COMMANDS = all_commands()


def test_there_are_commands() -> None:
    assert {"init", "run", "demo", "plan", "sync", "offboard", "audit", "rooms", "serve",
            "status", "announce", "announcements", "tick"} <= {name for name, _ in COMMANDS}


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_and_example(name: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*name.split(), "-h"])
    assert result.exit_code == 0, result.output
    assert (command.help or "").strip(), f"hauspost {name} has no help text"
    if not isinstance(command, click.Group):
        assert f"Example: hauspost {name}" in (command.help or ""), \
            f"hauspost {name}: help has no 'Example: hauspost {name} …' line"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_documented(name: str, command: click.Command) -> None:
    assert f"hauspost {name}" in docs_text(), f"`hauspost {name}` is not in README.md or docs/"
