"""`hauspost gdpr export|erase|timeline` and `hauspost hold set|lift|list` (docs/data-protection.md).

Exit codes: 0 ok; 1 a step failed (timeline: for somebody); 2 bad input (export target
exists); 3 unknown person, still employed, on legal hold, already erased; 4 Synapse down.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from provisioner.actor import current_actor
from provisioner.cli import data_dir_option
from provisioner.errors import EXIT_FAILURE
from provisioner.settings import load_settings
from provisioner.store import open_store


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO date-time, got {value!r}",
                                 param_hint="--now") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def sub_data_dir_option(func: Any) -> Any:
    return click.option("-d", "--data-dir", "data_dir", type=click.Path(path_type=Path),
                        default=None, help="Data directory (may also be given before the "
                                           "subcommand).")(func)


def _dir(ctx: click.Context, data_dir: Path | None) -> Path:
    return data_dir or ctx.obj["data_dir"]


@click.group("gdpr")
@data_dir_option
@click.pass_context
def gdpr_group(ctx: click.Context, data_dir: Path) -> None:
    """Data subject rights: access export (Art. 15), erasure (Art. 17), leaver timeline.

    Example: hauspost gdpr export E1042 --out auskunft-E1042.zip
    """
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


@gdpr_group.command("export")
@sub_data_dir_option
@click.pass_context
@click.argument("target", metavar="EMPLOYEE_ID|MXID")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The ZIP to write; must not exist yet.")
def export_command(ctx: click.Context, data_dir: Path | None, target: str, out: Path) -> None:
    """Write one ZIP of everything the company holds about a person (GDPR Art. 15).

    Directory record and history, account and devices, rooms with dates, the events they
    sent (ciphertext for encrypted rooms), uploaded files (metadata), acknowledgements,
    audit rows about them, a readable summary.html and a manifest. Audited.

    Example: hauspost gdpr export E1042 --out auskunft-E1042.zip
    """
    from provisioner.gdpr.export import export_person

    settings = load_settings(_dir(ctx, data_dir))
    store = open_store(settings.store_url)
    try:
        report = asyncio.run(export_person(settings, store, target, out, actor=current_actor()))
    finally:
        store.close()
    click.echo(f"Wrote {report.path} ({report.size} bytes, {len(report.entries)} entries, "
               f"{sum(e.count for e in report.entries if e.name.startswith('messages/'))} "
               f"events) in {report.seconds:.2f} s.")


@gdpr_group.command("erase")
@sub_data_dir_option
@click.pass_context
@click.argument("target", metavar="EMPLOYEE_ID|MXID")
@click.option("--reason", required=True, help="Why, for the audit log (e.g. the request's date).")
@click.option("--dry-run", is_flag=True, help="List what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def erase_command(ctx: click.Context, data_dir: Path | None, target: str, reason: str, dry_run: bool,
                  as_json: bool) -> None:
    """Erase a former employee (GDPR Art. 17): Synapse erases the account (profile gone,
    messages hidden from later joiners); the store keeps every record, the person's
    identifiers replaced by a stable pseudonym. Refused on legal hold. Irreversible.

    Example: hauspost gdpr erase E1042 --reason "request of 2026-12-01" --dry-run
    """
    from provisioner.gdpr.erase import erase_person

    settings = load_settings(_dir(ctx, data_dir))
    store = open_store(settings.store_url)
    try:
        report = asyncio.run(erase_person(settings, store, target, reason=reason,
                                          actor=current_actor(), dry_run=dry_run))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
        return
    head = "Would erase" if dry_run else "Erased"
    click.echo(f"{head} {target} (pseudonym {report.subject}): {report.synapse}; "
               f"{sum(report.rows.values())} value(s) in the store "
               f"{'would be' if dry_run else 'were'} replaced by the pseudonym:")
    for column, count in sorted(report.rows.items()):
        click.echo(f"  {column}: {count}")


@gdpr_group.command("timeline")
@sub_data_dir_option
@click.option("--now", "now_text", default=None, metavar="DATETIME",
              help="Pretend it is this time (to see what a later run will do).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
@click.pass_context
def timeline_command(ctx: click.Context, data_dir: Path | None, now_text: str | None,
                     as_json: bool) -> None:
    """Run the leaver data timeline: keep held people's files protected, erase leavers
    `data_protection.erase_after_days` after offboarding unless on legal hold.

    Example: hauspost gdpr timeline -d /var/lib/hauspost   (daily, from cron)
    """
    from provisioner.gdpr.timeline import run_timeline

    settings = load_settings(_dir(ctx, data_dir))
    store = open_store(settings.store_url)
    try:
        result = asyncio.run(run_timeline(settings, store, now=_when(now_text)))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(f"Erased {len(result.erased)}, withheld by legal hold "
                   f"{len(result.withheld)}, failed {len(result.failed)}; "
                   f"{result.files_protected} file(s) newly protected.")
        for employee_id, error in result.failed:
            click.echo(f"  failed: {employee_id}: {error}", err=True)
    if result.failed:
        ctx.exit(EXIT_FAILURE)


@click.group("hold")
@data_dir_option
@click.pass_context
def hold_group(ctx: click.Context, data_dir: Path) -> None:
    """Legal holds: while one is set, nothing about the person is erased or deleted.

    Example: hauspost hold set E1042 --reason "Az. 3 Ca 123/26"
    """
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


def _change_hold(ctx: click.Context, data_dir: Path | None, employee_id: str, reason: str,
                 *, lift: bool) -> tuple[int, int]:
    """Set or lift the hold, then protect or release the person's files: (hold id, files)."""
    from provisioner.gdpr.holds import lift_hold, set_hold
    from provisioner.gdpr.timeline import protect_user_files

    settings = load_settings(_dir(ctx, data_dir))
    store = open_store(settings.store_url)
    try:
        change = lift_hold if lift else set_hold
        hold = change(store, employee_id, reason=reason, actor=current_actor(),
                      now=datetime.now(UTC))
        files = asyncio.run(protect_user_files(settings, store, employee_id, protect=not lift))
    finally:
        store.close()
    return hold.id, files


@hold_group.command("set")
@sub_data_dir_option
@click.pass_context
@click.argument("employee_id")
@click.option("--reason", required=True, help="Why (case number), for the audit log.")
def hold_set_command(ctx: click.Context, data_dir: Path | None, employee_id: str, reason: str) -> None:
    """Put a person on legal hold: no erasure, and their files are protected from deletion.

    Example: hauspost hold set E1042 --reason "Az. 3 Ca 123/26"
    """
    hold_id, protected = _change_hold(ctx, data_dir, employee_id, reason, lift=False)
    click.echo(f"Legal hold {hold_id} set on {employee_id}; {protected} file(s) protected.")


@hold_group.command("lift")
@sub_data_dir_option
@click.pass_context
@click.argument("employee_id")
@click.option("--reason", required=True, help="Why the hold ends, for the audit log.")
def hold_lift_command(ctx: click.Context, data_dir: Path | None, employee_id: str, reason: str) -> None:
    """Lift a person's legal hold; the timeline continues at its next run.

    Example: hauspost hold lift E1042 --reason "case closed"
    """
    hold_id, released = _change_hold(ctx, data_dir, employee_id, reason, lift=True)
    click.echo(f"Legal hold {hold_id} on {employee_id} lifted; {released} file(s) released.")


@hold_group.command("list")
@sub_data_dir_option
@click.pass_context
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list on stdout.")
def hold_list_command(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """List the legal holds in force.

    Example: hauspost hold list --json
    """
    from provisioner.gdpr.holds import list_holds

    settings = load_settings(_dir(ctx, data_dir))
    store = open_store(settings.store_url)
    try:
        holds = list_holds(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([{"id": h.id, "employee_id": h.employee_id,
                                "set_at": h.set_at.isoformat(), "set_by": h.set_by,
                                "reason": h.reason} for h in holds], indent=2))
        return
    if not holds:
        click.echo("No legal holds.")
    for h in holds:
        click.echo(f"{h.id:>4}  {h.employee_id}  since {h.set_at:%Y-%m-%d}  by {h.set_by}: "
                   f"{h.reason}")
