"""`hauspost --help` and every command's `-h` stay exactly as recorded in `cli_help.txt`.

The help text is part of the interface admins script against and read in the docs: a
refactoring must not change it. After an intended change, regenerate the record with
`.venv/bin/python -m tests.unit.test_cli_help_stable` and review the diff.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provisioner.cli import main

pytestmark = pytest.mark.unit

RECORD = Path(__file__).with_name("cli_help.txt")


def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [prefix]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"hauspost {' '.join((*prefix, name))} cannot be loaded"
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
        else:
            paths.append((*prefix, name))
    return paths


def all_help() -> str:
    runner = CliRunner()
    sections = []
    for path in command_paths():
        # A fixed terminal width: click wraps help to the terminal.
        result = runner.invoke(main, [*path, "--help"], env={"COLUMNS": "200"},
                               prog_name="hauspost")
        assert result.exit_code == 0, result.output
        sections.append(f"==== {' '.join(('hauspost', *path, '--help'))}\n{result.output}")
    return "".join(sections)


def test_help_unchanged() -> None:
    recorded = RECORD.read_text(encoding="utf-8")
    current = all_help()
    diff = "".join(difflib.unified_diff(recorded.splitlines(keepends=True),
                                        current.splitlines(keepends=True),
                                        "cli_help.txt", "current"))
    assert current == recorded, f"the CLI help changed:\n{diff}"


if __name__ == "__main__":
    RECORD.write_text(all_help(), encoding="utf-8")
