"""`hauspost announce [--resume ID]`, `hauspost announcements [report]` and `hauspost tick`.

Exit codes (docs/announcements.md): 0 ok · 1 failure · 2 bad input (unknown target,
deadline in the past, empty body, attachment refused: nothing sent) · 3 config error,
unknown announcement or nothing to resume · 4 environment problem · 7 the announcement is
being sent right now · 8 the same announcement did not finish sending: resume it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select

from provisioner.actor import current_actor
from provisioner.announcements.compose import (
    AnnouncementInputError,
    Attachment,
    read_attachment,
)
from provisioner.announcements.config import load_announcement_config
from provisioner.announcements.local_time import parse_company_time
from provisioner.announcements.media_limits import load_media_limits
from provisioner.announcements.messages import LANGUAGES, CompanyLocale
from provisioner.announcements.report import (
    build_report,
    record_report,
    render_csv,
    render_html,
    render_text,
)
from provisioner.announcements.resume import describe, resume_with_settings
from provisioner.announcements.send import announce_with_settings, company_locale
from provisioner.announcements.sending_state import progress, statuses
from provisioner.announcements.tick import TickResult, run_tick
from provisioner.cli import data_dir_option
from provisioner.settings import Settings, load_settings
from provisioner.store import open_store
from provisioner.store.announcement_models import AnnouncementRow


def _locale(settings: Settings) -> CompanyLocale:
    return company_locale(settings, load_announcement_config(settings.data_dir))


def _parse_when(value: str | None, option: str, tz: ZoneInfo) -> datetime | None:
    """None stays None; without an offset the value is company time."""
    return None if value is None else parse_company_time(value, tz, option)


def _body(body: str | None, body_file: Path | None) -> str:
    if body is not None and body_file is not None:
        raise AnnouncementInputError("give either --body or --body-file, not both")
    if body_file is not None:
        if str(body_file) == "-":
            return sys.stdin.read()
        try:
            return body_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AnnouncementInputError(f"--body-file {body_file}: {exc}") from None
    return body or ""


@click.command("announce")
@data_dir_option
@click.option("--to", "targets", multiple=True, metavar="TARGET",
              help="all, department:NAME, location:NAME, group:NAME or person:ID "
                   "(repeat for a union).")
@click.option("--body", default=None, help="The announcement in Markdown.")
@click.option("--body-file", type=click.Path(path_type=Path), default=None,
              help="Read the Markdown body from a file ('-' for stdin).")
@click.option("--attach", type=click.Path(path_type=Path), default=None,
              help="One attachment, encrypted; the media policy's size and type limits apply.")
@click.option("--ack-by", default=None, metavar="DATETIME",
              help="Require acknowledgement by this ISO date-time; without an offset it is "
                   "company time (directory.time_zone), e.g. 2026-12-01T12:00.")
@click.option("--room", default=None, metavar="ROOM_ID",
              help="Post into this room (the bot must be able to post there) instead of the "
                   "org policy's read-only room or a new one.")
@click.option("--resume", "resume_id", type=int, default=None, metavar="ID",
              help="Finish announcement ID, whose sending was interrupted or failed: posts "
                   "already in its rooms are recorded, only missing ones are posted.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def announce_command(data_dir: Path, targets: Sequence[str], body: str | None,
                     body_file: Path | None, attach: Path | None, ack_by: str | None,
                     room: str | None, resume_id: int | None, as_json: bool) -> None:
    """Send an end-to-end encrypted announcement as the Hauspost bot.

    Everything is checked before anything is sent: unknown targets, a deadline in the past,
    an empty body or a refused attachment stop with exit code 2. An announcement whose
    sending did not finish is finished with --resume ID (the same announcement sent again
    is refused with exit code 8); options given with it must match the announcement.

    Example: hauspost announce --to department:Sales --ack-by 2026-12-01T12:00
    --body-file news.md
    """
    settings = load_settings(data_dir)
    now = datetime.now(UTC)
    deadline = _parse_when(ack_by, "--ack-by", _locale(settings).time_zone)
    attachment: Attachment | None = None
    if attach is not None:
        attachment = read_attachment(attach, load_media_limits(settings.homeserver_config))
    if resume_id is not None:
        if room is not None:
            raise click.UsageError("--room cannot be given with --resume: the announcement "
                                   "keeps the rooms it was sent to")
        finished = asyncio.run(resume_with_settings(
            settings, resume_id, actor=current_actor(), now=now, targets=targets,
            body=_body(body, body_file) or None, ack_by=deadline, attachment=attachment))
        click.echo(json.dumps(finished.to_json(), indent=2, sort_keys=True) if as_json
                   else describe(finished))
        return
    result = asyncio.run(announce_with_settings(
        settings, targets=targets, body=_body(body, body_file),
        ack_by=deadline, attachment=attachment, room=room,
        actor=current_actor(), now=now))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return
    click.echo(f"Announcement {result.announcement_id} sent to {result.recipients} people in "
               f"{len(result.rooms)} room(s): {result.delivered} reached on {result.devices} "
               f"devices in {result.seconds:.2f} s.")
    if result.not_joined:
        click.echo("Could not be put into the room: " + ", ".join(result.not_joined), err=True)


@click.group("announcements", invoke_without_command=True)
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list on stdout.")
@click.pass_context
def announcements_group(ctx: click.Context, data_dir: Path, as_json: bool) -> None:
    """List announcements (newest first); `announcements report ID` shows one's reach.

    Example: hauspost announcements -d /var/lib/hauspost
    """
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(data_dir)
    store = open_store(settings.store_url)
    try:
        with store.session() as session:
            rows = session.scalars(select(AnnouncementRow)
                                   .order_by(AnnouncementRow.id.desc())).all()
            shown = statuses(session, [(r.id, r.status) for r in rows])
            unfinished = {r.id: progress(session, r, shown[r.id]) for r in rows
                          if r.status != "sent"}
            listed = [{"id": r.id, "created_at": r.created_at.isoformat(), "title": r.title,
                       "targets": r.target.get("targets", []), "status": shown[r.id],
                       "recipients": r.recipients_total, "delivered": r.delivered_total,
                       "deadline": r.deadline.isoformat() if r.deadline else None,
                       **({"rooms": list(unfinished[r.id].rooms),
                           "posted_in": list(unfinished[r.id].posted),
                           "note": unfinished[r.id].describe(r.id)}
                          if r.id in unfinished else {})}
                      for r in rows]
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    if not listed:
        click.echo("No announcements yet.")
    for a in listed:
        ack = f", acknowledge by {a['deadline']}" if a["deadline"] else ""
        click.echo(f"{a['id']:>5}  {a['created_at'][:16]}  {a['status']:<7} "
                   f"{a['delivered']}/{a['recipients']} reached{ack}  "
                   f"[{', '.join(a['targets'])}] {a['title']}")
        if a.get("note"):
            click.echo(f"{'':>7}{a['note']}")


@announcements_group.command("report")
@click.argument("announcement_id", type=int)
@click.option("-d", "--data-dir", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Data directory (may also be given before `report`).")
@click.option("--csv", "as_csv", is_flag=True, help="One row per person on stdout.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@click.option("--html", "html_file", type=click.Path(path_type=Path), default=None,
              help="Also write a printable HTML report (chart, per-person rows, reminders, "
                   "SHA-256 of the CSV).")
@click.option("--language", type=click.Choice(LANGUAGES), default=None,
              help="Language of the HTML report (default: announcements.yaml's language).")
@click.pass_context
def report_command(ctx: click.Context, announcement_id: int, data_dir: Path | None,
                   as_csv: bool, as_json: bool, html_file: Path | None,
                   language: str | None) -> None:
    """Reach of one announcement as of now: delivered, seen, acknowledged, by whom and when.

    Times are company time. Writing --html, --csv or --json is audited
    (announcement.report) with the SHA-256 of the per-person CSV.

    Example: hauspost announcements report 12 --html reach-12.html --language de
    """
    if as_csv and as_json:
        raise click.UsageError("choose one of --csv and --json")
    settings = load_settings(data_dir or ctx.obj["data_dir"])
    locale = _locale(settings)
    language = language or locale.language
    store = open_store(settings.store_url)
    try:
        report = build_report(store, announcement_id, time_zone=locale.time_zone)
        if html_file is not None:
            html_file.write_text(render_html(report, language), encoding="utf-8")
        formats = [name for name, wanted in (("html", html_file is not None),
                                             ("csv", as_csv), ("json", as_json)) if wanted]
        if formats:
            record_report(store, report, actor=current_actor(), formats=formats,
                          language=language)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    elif as_csv:
        click.echo(render_csv(report), nl=False)
    else:
        click.echo(render_text(report))


@click.command("tick")
@data_dir_option
@click.option("--now", "now_text", default=None, metavar="DATETIME",
              help="Decide what is due as if it were this moment (ISO date-time, company time "
                   "without an offset); what is recorded keeps the real time.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def tick_command(data_dir: Path, now_text: str | None, as_json: bool) -> None:
    """Record acknowledgements, send due reminders and manager summaries, apply retention.

    Run it from cron or a systemd timer, e.g. every 15 minutes.

    Example: hauspost tick -d /var/lib/hauspost
    """
    settings = load_settings(data_dir)
    now = _parse_when(now_text, "--now", _locale(settings).time_zone) or datetime.now(UTC)
    result: TickResult = asyncio.run(run_tick(settings, now))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return
    click.echo(f"Tick at {now.isoformat(timespec='minutes')}: {len(result.reminders)} "
               f"reminder(s), {len(result.summaries)} manager summary(ies), "
               f"{len(result.failed)} failed, {len(result.purged_announcements)} "
               "announcement(s) past retention purged, room keys sent to "
               f"{len(result.room_keys)} device(s) added after sending.")
