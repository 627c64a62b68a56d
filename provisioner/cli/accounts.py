"""`hauspost plan`, `sync`, `offboard` and `audit`: employees become accounts and leave again.

Exit codes (docs/accounts.md "Exit codes"):
  plan / sync --dry-run: 0 no changes · 10 changes pending · 6 bad directory entries
                         (changes may be pending too) · 5 the guard would refuse the run
  sync:     0 ok · 1 some changes failed · 5 guard refused (nothing changed) ·
            6 bad directory entries skipped, the rest applied · 7 another sync is running
  offboard: 0 done · 1 failed · 3 refused (protected, unknown or foreign account)
  all:      3 config error · 4 environment problem (Synapse or directory unreachable)
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from provisioner.accounts.offboard import OffboardResult, offboard_with_settings
from provisioner.accounts.plan import (
    EXIT_GUARD,
    CreateAccount,
    Deactivate,
    DeactivateUnexplained,
    LinkAccount,
    Plan,
    Reactivate,
    ReleaseHold,
    UpdateDisplayName,
    UpdateEmail,
)
from provisioner.actor import current_actor
from provisioner.cli import data_dir_option
from provisioner.errors import EXIT_FAILURE, EXIT_OK
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.settings import load_settings
from provisioner.store import open_store
from provisioner.store import repository as repo
from provisioner.sync.run import SyncOutcome, run_sync

EXIT_PARTIAL = 6
EXIT_CHANGES_PENDING = 10

_SYMBOL = {CreateAccount: "+", LinkAccount: "=", UpdateDisplayName: "~", UpdateEmail: "~",
           Reactivate: "^", Deactivate: "-", DeactivateUnexplained: "-", ReleaseHold: "."}


def _quiet(ctx: click.Context) -> bool:
    obj = ctx.find_root().obj or {}
    return bool(obj.get("quiet"))


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO date or date-time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def render_plan(plan: Plan, *, title: str) -> str:
    lines = [title]
    if not plan.actions:
        lines.append("  No changes.")
    for action in plan.actions:
        lines.append(f"  {_SYMBOL.get(type(action), '?')} {action.describe()}")
    if plan.problems:
        lines.append(f"Skipped, bad directory entries ({len(plan.problems)}):")
        lines.extend(f"  ! {p}" for p in plan.problems)
    if plan.unexplained:
        lines.append(f"Unexplained accounts ({len(plan.unexplained)}): no employee record, "
                     "service account or bot explains them:")
        lines.extend(f"  ? {user_id}" for user_id in plan.unexplained)
    if plan.protected_skipped:
        lines.append("Protected, never touched: " + ", ".join(plan.protected_skipped))
    lines.extend(f"Note: {n}" for n in plan.notes)
    counts = plan.counts()
    lines.append("Counts: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                 + f"; problems {len(plan.problems)}; managed accounts {plan.managed_active}")
    return "\n".join(lines)


def _plan_exit_code(outcome: SyncOutcome) -> int:
    if outcome.guard_would_trip:
        return EXIT_GUARD
    if outcome.plan.problems:
        return EXIT_PARTIAL
    rooms_pending = outcome.rooms is not None and outcome.rooms.plan.has_changes
    return EXIT_CHANGES_PENDING if outcome.plan.has_changes or rooms_pending else EXIT_OK


def _emit_plan(outcome: SyncOutcome, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2, sort_keys=True))
        return
    click.echo(render_plan(outcome.plan, title="Plan (nothing has been changed):"))
    if outcome.rooms is not None:
        from provisioner.rooms.run import render_room_plan  # plan/sync only: keep offboard fast

        click.echo(render_room_plan(outcome.rooms))
    if outcome.guard_would_trip:
        click.echo(f"Guard: this run would be refused ({len(outcome.plan.deactivations)} "
                   f"deactivations of {outcome.plan.managed_active} managed accounts); "
                   "`sync --force` overrides.")


@click.command("plan")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable plan on stdout.")
@click.option("--at", "at", metavar="DATETIME", default=None,
              help="Plan as if it were this moment (ISO, e.g. 2027-01-01T00:05+01:00): "
                   "shows who a future leave date will offboard.")
@click.pass_context
def plan_command(ctx: click.Context, data_dir: Path, as_json: bool, at: str | None) -> None:
    """Show what `sync` would change, and change nothing.

    Exit code 0: no changes; 10: changes pending; 6: bad directory entries;
    5: the mass-deactivation guard would refuse the run.

    Example: hauspost plan -d /var/lib/hauspost
    """
    settings = load_settings(data_dir)
    now = _parse_at(at)

    async def go() -> SyncOutcome:
        token = await ensure_service_token(settings)
        return await run_sync(settings, token, dry_run=True, now=now, actor=current_actor())

    outcome = asyncio.run(go())
    _emit_plan(outcome, as_json)
    ctx.exit(_plan_exit_code(outcome))


@click.command("sync")
@data_dir_option
@click.option("--dry-run", is_flag=True, help="Only show the plan (same as `hauspost plan`).")
@click.option("--force", is_flag=True,
              help="Apply even if the mass-deactivation guard would refuse the run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
@click.option("--if-changed", is_flag=True,
              help="Start a sync run only when changes are pending (for cron: bad "
                   "directory entries don't stop the rest).")
@click.pass_context
def sync_command(ctx: click.Context, data_dir: Path, dry_run: bool, force: bool,
                 as_json: bool, if_changed: bool) -> None:
    """Bring Matrix accounts in line with the directory: create, rename, deactivate, rehire.

    Prints the plan and the counts; progress goes to stderr (-q silences it). Exit code 0:
    ok; 1: some changes failed; 5: guard refused, nothing changed; 6: bad directory
    entries were skipped and the rest applied; 7: another sync is running.

    With --if-changed and nothing pending, no sync run starts (exit 0, or 6 while bad
    directory entries remain).

    Example: hauspost sync -d /var/lib/hauspost
    """
    settings = load_settings(data_dir)
    quiet = _quiet(ctx)

    async def go() -> SyncOutcome:
        token = await ensure_service_token(settings)
        return await run_sync(settings, token, dry_run=dry_run, force=force,
                              actor=current_actor(), progress=not quiet and not as_json,
                              if_changed=if_changed)

    outcome = asyncio.run(go())
    if outcome.run_id is None and not dry_run:  # --if-changed, and nothing was pending
        problems = len(outcome.plan.problems)
        if not quiet:
            click.echo("No changes pending; no sync run started"
                       + (f" ({problems} bad directory entries: see `hauspost plan`)."
                          if problems else "."), err=True)
        ctx.exit(EXIT_PARTIAL if problems else EXIT_OK)
    if dry_run:
        _emit_plan(outcome, as_json)
        ctx.exit(_plan_exit_code(outcome))
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(render_plan(outcome.plan, title=f"Sync run {outcome.run_id}:"))
        applied = outcome.result.applied_total
        click.echo(f"Applied {applied} of {len(outcome.plan.actions)} changes in "
                   f"{outcome.seconds:.2f} s ({outcome.writes} admin-API writes); "
                   f"{len(outcome.result.failures)} failed.")
        for failure in outcome.result.failures:
            click.echo(f"  failed: {failure.action.describe()}: {failure.error}", err=True)
        if outcome.rooms is not None:
            from provisioner.rooms.run import render_room_plan

            click.echo(render_room_plan(outcome.rooms))
    if outcome.status == "failed":
        ctx.exit(EXIT_FAILURE)
    ctx.exit(EXIT_PARTIAL if outcome.plan.problems else EXIT_OK)


def _render_offboard(result: OffboardResult) -> str:
    who = f" (employee {result.employee_id})" if result.employee_id else ""
    if result.already_deactivated:
        head = f"{result.user_id}{who} was already deactivated; kept deactivated"
    else:
        head = (f"Offboarded {result.user_id}{who}: access ended in "
                f"{result.access_ended_seconds:.3f} s (tokens revoked, devices deleted, "
                "logins refused)")
    rooms = ("left every room" if not result.rooms_remaining
             else f"still in {len(result.rooms_remaining)} room(s) (Synapse is parting "
                  "them in the background)")
    return f"{head}; {rooms}; took {result.total_seconds:.3f} s in total."


@click.command("offboard")
@data_dir_option
@click.argument("target", metavar="EMPLOYEE_ID|MXID")
@click.option("--reason", default="offboarded by hand", show_default=True,
              help="Why, for the audit log.")
@click.option("--erase", is_flag=True,
              help="GDPR erasure: also remove the profile and hide the person's messages "
                   "from anyone joining later. Irreversible. Default: keep messages.")
@click.option("--no-wait", is_flag=True, help="Don't wait until the person has left every room.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def offboard_command(data_dir: Path, target: str, reason: str, erase: bool, no_wait: bool,
                     as_json: bool) -> None:
    """End one person's access at once: tokens, devices, logins (LDAP too), rooms.

    The account stays deactivated even while the directory still lists the person;
    a rehire after the directory has let go reactivates it. Prints how long it took.

    Example: hauspost offboard E1042 --reason "left on 2026-11-30"
    """
    started = time.monotonic()
    settings = load_settings(data_dir)

    result = asyncio.run(offboard_with_settings(
        settings, target, reason=reason, erase=erase, actor=current_actor(),
        wait_for_rooms=not no_wait, started=started))
    if as_json:
        click.echo(json.dumps({
            "user_id": result.user_id, "employee_id": result.employee_id,
            "already_deactivated": result.already_deactivated,
            "access_ended_seconds": round(result.access_ended_seconds, 4),
            "rooms_remaining": list(result.rooms_remaining),
            "devices_deleted_after": result.devices_deleted_after,
            "total_seconds": round(result.total_seconds, 4)}, indent=2, sort_keys=True))
    else:
        click.echo(_render_offboard(result))


_RELATIVE = re.compile(r"^(\d+)([mhdw])$")


def _parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount),
                 "d": timedelta(days=amount), "w": timedelta(weeks=amount)}[unit]
        return (now or datetime.now(UTC)) - delta
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO date/date-time or an age like 30m, 12h, 7d, 2w; got {value!r}",
            param_hint="--since") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _audit_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "at": row.at.isoformat(), "actor": row.actor, "action": row.action,
            "target": row.target, "reason": row.reason, "run_id": row.run_id,
            "details": row.details}


@click.command("audit")
@data_dir_option
@click.option("--since", default=None, metavar="WHEN",
              help="Only entries since an ISO date/date-time or an age (30m, 12h, 7d, 2w).")
@click.option("--actor", default=None, help="Only entries by this actor (user@host).")
@click.option("--action", default=None, help="Only this action, e.g. account.deactivate.")
@click.option("--target", default=None, help="Only entries about this Matrix ID.")
@click.option("--run", "run_id", type=int, default=None, help="Only entries of this run id.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the newest N matching entries.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout.")
def audit_command(data_dir: Path, since: str | None, actor: str | None, action: str | None,
                  target: str | None, run_id: int | None, limit: int | None,
                  as_json: bool) -> None:
    """List the append-only audit log: who changed what, when, why, in which run.

    Example: hauspost audit --since 7d --action account.deactivate
    """
    settings = load_settings(data_dir)
    query = repo.AuditQuery(since=_parse_since(since), actor=actor, action=action,
                            target=target, run_id=run_id, limit=limit)
    store = open_store(settings.store_url)
    try:
        with store.session() as session:
            rows = repo.query_audit(session, query)
            for row in rows:
                if as_json:
                    click.echo(json.dumps(_audit_json(row), sort_keys=True))
                    continue
                run = f"run {row.run_id}" if row.run_id is not None else "-"
                why = f"  ({row.reason})" if row.reason else ""
                click.echo(f"{row.at:%Y-%m-%d %H:%M:%S}Z  {run:<8} {row.actor}  "
                           f"{row.action:<24} {row.target}{why}")
    finally:
        store.close()
