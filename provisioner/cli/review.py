"""`hauspost review`: an access review (ISO/IEC 27001 A.5.18), stored and audited.

Exit codes: 0 ok; 3 config error; 4 Synapse or the directory unreachable.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from pathlib import Path

import click

from provisioner.actor import current_actor
from provisioner.cli import data_dir_option
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.review.collect import AccessReview, collect_review, review_csv_rows, store_review
from provisioner.settings import load_settings
from provisioner.store import open_store


def render_review(review: AccessReview) -> str:
    lines = [f"Access review {review.id} at {review.at.isoformat(timespec='seconds')} "
             f"by {review.actor}",
             f"Accounts: {review.accounts_active} active, {review.accounts_deactivated} "
             "deactivated",
             f"Unexplained accounts ({len(review.unexplained)}): "
             + (", ".join(review.unexplained) or "none"),
             f"Server admins ({len(review.admins)}): " + (", ".join(review.admins) or "none"),
             "Tokens issued by admins to act as somebody: " + (
                 "not available" if review.admin_tokens is None else
                 ", ".join(f"{t['acts_as']} by {t['issued_by']}" for t in review.admin_tokens)
                 or "none"),
             f"Managed rooms and spaces ({len(review.managed)}):"]
    for room in review.managed:
        lines.append(f"  {room.key}: {room.joined} joined, {len(room.mandatory)} by policy, "
                     f"{len(room.chosen)} chosen, {len(room.missing)} missing")
        if room.chosen:
            lines.append("    chosen: " + ", ".join(room.chosen))
    lines.append(f"Other rooms: {len(review.unmanaged)}")
    return "\n".join(lines)


@click.command("review")
@data_dir_option
@click.option("--csv", "as_csv", is_flag=True, help="One row per person and room on stdout.")
@click.option("--json", "as_json", is_flag=True, help="The whole review as JSON on stdout.")
def review_command(data_dir: Path, as_csv: bool, as_json: bool) -> None:
    """Review who can see what: per room and space who is in by policy and who by choice,
    accounts no employee record explains, server admins. Stored (the console shows it)
    and audited. Changes nothing in Synapse.

    Example: hauspost review --csv > review-2026-12.csv
    """
    if as_csv and as_json:
        raise click.UsageError("give either --csv or --json, not both")
    settings = load_settings(data_dir)
    store = open_store(settings.store_url)

    async def go() -> AccessReview:
        token = await ensure_service_token(settings)
        async with SynapseAdmin(settings.homeserver_url, token) as admin:
            return await collect_review(settings, store, admin, actor=current_actor())

    try:
        review = asyncio.run(go())
        review_id = store_review(store, review)
    finally:
        store.close()
    review = AccessReview.from_json(review.to_json(), review_id=review_id)
    if as_csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(review_csv_rows(review))
    elif as_json:
        click.echo(json.dumps({"id": review_id, **review.to_json()}, indent=2, sort_keys=True,
                              ensure_ascii=False))
    else:
        click.echo(render_review(review))
