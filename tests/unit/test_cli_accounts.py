"""The account commands: help text with an example, documented in docs/accounts.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provisioner.accounts.plan import Account as SynapseAccount
from provisioner.accounts.plan import Link, PlanPolicy, build_plan
from provisioner.cli import main
from provisioner.cli.accounts import _parse_since, render_plan
from provisioner.employee import DirectoryRead, Employee, SourceProblem

DOCS = Path(__file__).resolve().parents[2] / "docs" / "accounts.md"
COMMANDS = ("plan", "sync", "offboard", "audit")


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_an_example_and_the_docs_show_it(name: str) -> None:
    result = CliRunner().invoke(main, [name, "-h"])
    assert result.exit_code == 0
    assert "Example: hauspost " + name in result.output
    docs = DOCS.read_text(encoding="utf-8")
    assert f"## `hauspost {name}`" in docs
    assert f"$ hauspost {name} " in docs


def test_exit_codes_are_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for code in ("| 0 |", "| 1 |", "| 3 |", "| 4 |", "| 5 |", "| 6 |", "| 7 |", "| 10 |"):
        assert code in docs


def test_render_plan_lists_every_action_problem_and_count() -> None:
    s = "corp.test"
    directory = DirectoryRead(
        employees=(Employee("1", "anna", "Anna"), Employee("2", "bob", "Bobby")),
        problems=(SourceProblem("hr.csv:7", "not UTF-8", employee_id="9"),))
    plan = build_plan(directory, [Link("2", f"@bob:{s}")],
                      [SynapseAccount(f"@bob:{s}", "Bob")], PlanPolicy(server_name=s),
                      datetime(2026, 1, 1, tzinfo=UTC))
    text = render_plan(plan, title="Plan:")
    assert text.splitlines() == [
        "Plan:",
        "  + create @anna:corp.test (Anna) for employee 1",
        "  ~ rename @bob:corp.test: 'Bob' -> 'Bobby'",
        "Skipped, bad directory entries (1):",
        "  ! hr.csv:7: not UTF-8",
        "Counts: create 1, link 0, set_display_name 1, set_email 0, reactivate 0, "
        "deactivate 0, release_hold 0; problems 1; managed accounts 1",
    ]


def test_since_accepts_ages_and_iso_dates() -> None:
    now = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    assert _parse_since("7d", now=now) == datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    assert _parse_since("30m", now=now) == datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    assert _parse_since("2w", now=now) == now - timedelta(weeks=2)
    assert _parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(click.BadParameter, match="an age like 30m"):
        _parse_since("last tuesday")
