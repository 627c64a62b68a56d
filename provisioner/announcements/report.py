"""Reach of one announcement, as proof: who was reached, saw and acknowledged it, when and
how, which reminders and manager summaries went out, as of a stated moment.

One model (`Report`), four renderings: text, JSON, CSV (one row per person) and a
self-contained, printable HTML page with an inline SVG chart — no script, no CDN, nothing
fetched when HR opens or prints the file. Times are company time with the zone's name;
the HTML carries the SHA-256 of the CSV so a copy can be checked later
(`hauspost announcements report ID --csv | sha256sum`), and `record_report` writes it
into the audit log.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from provisioner.announcements.chart import ChartData, draw
from provisioner.announcements.local_time import format_local
from provisioner.announcements.messages import text
from provisioner.announcements.sending_state import Progress, progress
from provisioner.errors import HauspostError
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import AnnouncementRow, NoticeRow, RecipientRow
from provisioner.store.models import AccountRow


class UnknownAnnouncementError(HauspostError):
    exit_code = 3


@dataclass(frozen=True)
class PersonReach:
    user_id: str
    display_name: str
    department: str | None
    devices: int
    seen_at: datetime | None
    acked_at: datetime | None
    ack_via: str | None
    #: The manager's name at sending time (their Matrix ID if no name is known).
    manager: str | None = None
    manager_user_id: str | None = None
    #: Reminders that reached the person (sent, not failed).
    reminders_sent: int = 0

    @property
    def delivered(self) -> bool:
        return self.devices > 0


@dataclass(frozen=True)
class NoticeReach:
    """One reminder or manager summary the bot claimed for this announcement."""

    user_id: str
    name: str
    stage: str
    claimed_at: datetime
    sent_at: datetime | None
    error: str | None

    @property
    def is_summary(self) -> bool:
        return self.stage == MANAGER_STAGE


@dataclass(frozen=True)
class DepartmentReach:
    recipients: int = 0
    delivered: int = 0
    seen: int = 0
    acknowledged: int = 0


@dataclass(frozen=True)
class Report:
    announcement_id: int
    title: str
    created_at: datetime
    deadline: datetime | None
    requires_ack: bool
    recipients: int
    delivered: int
    seen: int | None
    acknowledged: int | None
    people: tuple[PersonReach, ...] = ()
    departments: dict[str, DepartmentReach] = field(default_factory=dict)
    purged: bool = False
    #: The moment the report describes (the store was read then).
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: Company time zone: every time in every rendering is shown in it.
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    notices: tuple[NoticeReach, ...] = ()
    #: sent | interrupted | failed | sending (provisioner.announcements.sending_state).
    status: str = "sent"
    #: The rooms it was to be posted in, and those where its post is recorded.
    rooms: tuple[str, ...] = ()
    posted_in: tuple[str, ...] = ()

    def status_text(self, language: str = "en") -> str:
        """How far an unfinished sending got and what to do; empty once it was sent."""
        return Progress(self.status, self.rooms, self.posted_in).describe(
            self.announcement_id, language)

    @property
    def deadline_passed(self) -> bool | None:
        return None if self.deadline is None else self.as_of >= self.deadline

    def local(self, dt: datetime) -> datetime:
        return dt.astimezone(self.time_zone)

    def csv_sha256(self) -> str:
        """SHA-256 of `render_csv(self)` as UTF-8: what `--csv | sha256sum` prints."""
        return hashlib.sha256(render_csv(self).encode("utf-8")).hexdigest()

    @property
    def missing(self) -> list[PersonReach]:
        return [p for p in self.people if p.acked_at is None]

    def percent(self, value: int | None) -> float | None:
        if value is None or not self.recipients:
            return None
        return round(100.0 * value / self.recipients, 1)

    def ack_times(self) -> list[datetime]:
        return sorted(p.acked_at for p in self.people if p.acked_at is not None)

    def to_json(self) -> dict[str, Any]:
        def iso(dt: datetime | None) -> str | None:
            return None if dt is None else self.local(dt).isoformat()

        return {
            "id": self.announcement_id, "title": self.title,
            "as_of": iso(self.as_of), "time_zone": self.time_zone.key,
            "created_at": iso(self.created_at), "deadline": iso(self.deadline),
            "deadline_passed": self.deadline_passed,
            "requires_ack": self.requires_ack, "recipients": self.recipients,
            "delivered": self.delivered, "seen": self.seen, "acknowledged": self.acknowledged,
            "seen_percent": self.percent(self.seen),
            "acknowledged_percent": self.percent(self.acknowledged),
            "purged": self.purged,
            "status": self.status, "rooms": list(self.rooms),
            "posted_in": list(self.posted_in),
            "missing": [{"user_id": p.user_id, "name": p.display_name,
                         "department": p.department, "delivered": p.delivered,
                         "seen": p.seen_at is not None} for p in self.missing],
            "by_department": {d: vars(r) for d, r in sorted(self.departments.items())},
            "people": [{"user_id": p.user_id, "name": p.display_name,
                        "department": p.department, "manager": p.manager,
                        "manager_user_id": p.manager_user_id, "delivered": p.delivered,
                        "devices": p.devices, "seen_at": iso(p.seen_at),
                        "acknowledged_at": iso(p.acked_at), "acknowledged_via": p.ack_via,
                        "reminders_sent": p.reminders_sent} for p in self.people],
            "notices": [{"user_id": n.user_id, "name": n.name, "stage": n.stage,
                         "sent_at": iso(n.sent_at), "error": n.error} for n in self.notices],
            "csv_sha256": self.csv_sha256(),
        }


NO_DEPARTMENT = "(none)"
MANAGER_STAGE = "manager-summary"


def build_report(store: Store, announcement_id: int, *, as_of: datetime | None = None,
                 time_zone: ZoneInfo | None = None) -> Report:
    """The report as of now (or `as_of`), with times for `time_zone` (default UTC)."""
    as_of = as_of or datetime.now(UTC)
    tz = time_zone or ZoneInfo("UTC")
    with store.session() as session:
        ann = session.get(AnnouncementRow, announcement_id)
        if ann is None:
            raise UnknownAnnouncementError(f"no announcement with id {announcement_id} "
                                           "(`hauspost announcements` lists them)")
        rows = session.execute(
            select(RecipientRow.user_id, RecipientRow.display_name, RecipientRow.department,
                   RecipientRow.devices, RecipientRow.seen_at, RecipientRow.acked_at,
                   RecipientRow.ack_via, RecipientRow.manager_user_id)
            .where(RecipientRow.announcement_id == announcement_id)
            .order_by(RecipientRow.display_name, RecipientRow.user_id)).all()
        notice_rows = session.execute(
            select(NoticeRow.user_id, NoticeRow.stage, NoticeRow.claimed_at, NoticeRow.sent_at,
                   NoticeRow.error)
            .where(NoticeRow.announcement_id == announcement_id)
            .order_by(NoticeRow.id)).all()
        sending = progress(session, ann)
        names = {r.user_id: r.display_name for r in rows}
        unknown = {r.manager_user_id for r in rows if r.manager_user_id} - set(names)
        if unknown:
            names.update({u: n for u, n in session.execute(
                select(AccountRow.user_id, AccountRow.display_name)
                .where(AccountRow.user_id.in_(unknown))) if n})
    notices = tuple(NoticeReach(user_id=n.user_id, name=names.get(n.user_id, n.user_id),
                                stage=n.stage, claimed_at=n.claimed_at, sent_at=n.sent_at,
                                error=n.error) for n in notice_rows)
    reminded: dict[str, int] = {}
    for n in notices:
        if not n.is_summary and n.sent_at is not None:
            reminded[n.user_id] = reminded.get(n.user_id, 0) + 1
    people = tuple(PersonReach(
        user_id=r.user_id, display_name=r.display_name, department=r.department,
        devices=r.devices, seen_at=r.seen_at, acked_at=r.acked_at, ack_via=r.ack_via,
        manager=names.get(r.manager_user_id, r.manager_user_id) if r.manager_user_id else None,
        manager_user_id=r.manager_user_id, reminders_sent=reminded.get(r.user_id, 0))
        for r in rows)
    base: dict[str, Any] = {"announcement_id": ann.id, "title": ann.title,
                            "created_at": ann.created_at, "deadline": ann.deadline,
                            "requires_ack": ann.requires_ack, "as_of": as_of, "time_zone": tz,
                            "status": sending.status, "rooms": sending.rooms,
                            "posted_in": sending.posted}
    if not ann.requires_ack:
        return Report(**base, recipients=ann.recipients_total, delivered=ann.delivered_total,
                      seen=None, acknowledged=None)
    if ann.purged_at is not None and ann.final_counts is not None:
        counts = ann.final_counts
        return Report(**base, recipients=int(counts["recipients"]),
                      delivered=int(counts["delivered"]), seen=int(counts["seen"]),
                      acknowledged=int(counts["acknowledged"]), purged=True)
    departments: dict[str, dict[str, int]] = {}
    for p in people:
        d = departments.setdefault(p.department or NO_DEPARTMENT,
                                   {"recipients": 0, "delivered": 0, "seen": 0,
                                    "acknowledged": 0})
        d["recipients"] += 1
        d["delivered"] += p.delivered
        d["seen"] += p.seen_at is not None
        d["acknowledged"] += p.acked_at is not None
    return Report(**base, recipients=len(people),
                  delivered=sum(p.delivered for p in people),
                  seen=sum(p.seen_at is not None for p in people),
                  acknowledged=sum(p.acked_at is not None for p in people), people=people,
                  departments={k: DepartmentReach(**v) for k, v in departments.items()},
                  notices=notices)


def record_report(store: Store, report: Report, *, actor: str, formats: Sequence[str],
                  language: str) -> str:
    """Audit that this report was produced (`announcement.report`) with the SHA-256 of its
    CSV, so a copy handed to a works council can be checked against the log later."""
    digest = report.csv_sha256()
    with store.session() as session:
        repo.append_audit(session, actor=actor, action="announcement.report",
                          target=f"announcement:{report.announcement_id}",
                          now=datetime.now(UTC),
                          reason=f"reach report ({', '.join(formats)})",
                          details={"csv_sha256": digest, "as_of": report.as_of.isoformat(),
                                   "time_zone": report.time_zone.key, "language": language,
                                   "recipients": report.recipients,
                                   "acknowledged": report.acknowledged})
    return digest


def _pct(report: Report, value: int | None) -> str:
    pct = report.percent(value)
    return "not tracked" if value is None else f"{value}/{report.recipients} ({pct} %)"


def render_text(report: Report) -> str:
    def when(dt: datetime) -> str:
        return format_local(dt, report.time_zone, "en")

    deadline = ""
    if report.deadline is not None:
        state = "passed" if report.deadline_passed else "not yet passed"
        deadline = f", acknowledge by {when(report.deadline)} ({state})"
    lines = [f"Announcement {report.announcement_id}: {report.title}",
             f"  as of {when(report.as_of)} ({report.time_zone.key})",
             f"  sent {when(report.created_at)}{deadline}",
             *([f"  status        {report.status_text()}"] if report.status != "sent" else []),
             f"  delivered     {report.delivered}/{report.recipients}",
             f"  seen          {_pct(report, report.seen)}",
             f"  acknowledged  {_pct(report, report.acknowledged)}"]
    if report.purged:
        lines.append("  per-person data deleted after the retention period; counts only")
    if report.requires_ack and not report.purged:
        missing = report.missing
        lines.append(f"  missing ({len(missing)}):")
        lines.extend(f"    {p.display_name} <{p.user_id}> [{p.department or NO_DEPARTMENT}]"
                     for p in missing)
        lines.append("  by department:")
        for dept, r in sorted(report.departments.items()):
            lines.append(f"    {dept}: {r.acknowledged}/{r.recipients} acknowledged, "
                         f"{r.seen} seen, {r.delivered} delivered")
        sent = [n for n in report.notices if n.sent_at is not None]
        lines.append(f"  reminders sent: {sum(not n.is_summary for n in sent)}, "
                     f"manager summaries sent: {sum(n.is_summary for n in sent)}, "
                     f"failed: {sum(n.error is not None for n in report.notices)}")
    return "\n".join(lines)


_Text = Callable[..., str]
_When = Callable[[datetime | None], str]

CSV_COLUMNS = ["user_id", "name", "department", "manager", "delivered", "devices", "seen_at",
               "acknowledged_at", "acknowledged_via", "reminders_sent"]


def render_csv(report: Report) -> str:
    """One row per person; times as ISO 8601 in company time. Deterministic for a given
    state of the store (no "as of" inside), so its SHA-256 identifies that state."""
    def iso(dt: datetime | None) -> str:
        return "" if dt is None else report.local(dt).isoformat()

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in report.people:
        writer.writerow([p.user_id, p.display_name, p.department or "", p.manager or "",
                         int(p.delivered), p.devices, iso(p.seen_at), iso(p.acked_at),
                         p.ack_via or "", p.reminders_sent])
    return out.getvalue()


# --- HTML -------------------------------------------------------------------------------


def ack_chart_svg(report: Report, language: str = "en") -> str:
    """Cumulative acknowledgements over time (a step line), local time marks, the deadline
    as a red rule and the report's "as of" as a blue one."""
    times = report.ack_times()
    end = max([report.created_at, *times[-1:], *([report.deadline] if report.deadline else [])])
    return draw(ChartData(start=report.created_at, end=end, total=report.recipients,
                          ack_times=times, deadline=report.deadline, as_of=report.as_of,
                          time_zone=report.time_zone, language=language))


_CSS = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#111}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #bbb;padding:3px 7px;text-align:left;vertical-align:top}"
    "th{background:#f2f2f2}td.n{text-align:right}table.people{font-size:.9em}"
    "dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 1em}"
    "dl.facts dt{font-weight:bold}dl.facts dd{margin:0}"
    ".passed{color:#cf222e;font-weight:bold}"
    "footer{margin-top:2em;border-top:1px solid #bbb;padding-top:.5em;font-size:.85em}"
    "code{word-break:break-all}"
    "@page{size:A4;margin:14mm}"
    "@media print{body{max-width:none;margin:0;padding:0;font-size:9.5pt}"
    "thead{display:table-header-group}tr,li{break-inside:avoid}"
    "h2{break-after:avoid}svg{max-width:100%;height:auto}th{background:none}}"
)


def render_html(report: Report, language: str = "en") -> str:
    """The report as one printable HTML page in `language` ("de" or "en")."""
    e = html.escape

    def t(key: str, **values: object) -> str:
        return e(text(key, language, **values))

    def when(dt: datetime | None) -> str:
        return "" if dt is None else e(format_local(dt, report.time_zone, language))

    def pct(value: int | None) -> str:
        if value is None:
            return t("not_tracked")
        shown = f"{report.percent(value)}".replace(".", "," if language == "de" else ".")
        return f"{value}/{report.recipients} ({shown} %)"

    if report.deadline is None:
        deadline = t("no_deadline")
    elif report.deadline_passed:
        deadline = f'{when(report.deadline)} — <span class="passed">{t("deadline_passed")}</span>'
    else:
        deadline = f"{when(report.deadline)} — {t('deadline_open')}"
    facts = "".join(f"<dt>{t(k)}</dt><dd{a}>{v}</dd>" for k, a, v in [
        ("as_of", ' id="as-of"', when(report.as_of)),
        ("time_zone", "", e(report.time_zone.key)),
        ("sent", "", when(report.created_at)),
        *([("status", ' id="status" class="passed"', e(report.status_text(language)))]
          if report.status != "sent" else []),
        ("deadline", ' id="deadline"', deadline),
        ("recipients", "", str(report.recipients)),
        ("delivered", "", f"{report.delivered}/{report.recipients}"),
        ("seen", "", pct(report.seen)),
        ("acknowledged", "", pct(report.acknowledged))])
    parts = ["<!DOCTYPE html>\n", f'<html lang="{e(language)}"><head><meta charset="utf-8">',
             f"<title>{t('report_title', id=report.announcement_id)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{e(report.title)}</h1>",
             f"<p>{t('report_title', id=report.announcement_id)}</p>",
             f'<dl class="facts">{facts}</dl>',
             f"<h2>{t('chart_title')}</h2>{ack_chart_svg(report, language)}"]
    if report.purged:
        parts.append(f"<p>{t('purged')}</p>")
    elif not report.requires_ack:
        parts.append(f"<p>{t('nothing_per_person')}</p>")
    else:
        parts.extend(_departments_html(report, t))
        parts.extend(_people_html(report, t, language))
        parts.extend(_notices_html(report, t, when))
    command = f"hauspost announcements report {report.announcement_id} --csv"
    parts.append(f"<footer><p>{t('footer_hash')}: <code id=\"csv-sha256\">"
                 f"{report.csv_sha256()}</code></p>"
                 # The catalogue's own text holds no markup: only the command is escaped.
                 f"<p>{text('footer_check', language, command=f'<code>{e(command)}</code>')}"
                 "</p></footer>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _departments_html(report: Report, t: _Text) -> list[str]:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(d) if d != NO_DEPARTMENT else t('no_department')}</td>"
        f'<td class="n">{r.recipients}</td><td class="n">{r.delivered}</td>'
        f'<td class="n">{r.seen}</td><td class="n">{r.acknowledged}</td></tr>'
        for d, r in sorted(report.departments.items()))
    head = "".join(f"<th>{t(k)}</th>" for k in
                   ("department", "recipients", "delivered", "seen", "acknowledged"))
    missing = "".join(
        f"<li>{e(p.display_name)} &lt;{e(p.user_id)}&gt; — "
        f"{e(p.department) if p.department else t('no_department')}"
        f"{'' if p.delivered else ' ' + t('not_delivered')}</li>" for p in report.missing)
    return [f"<h2>{t('by_department')}</h2>",
            f'<table class="departments"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>",
            f"<h2>{t('missing', count=len(report.missing))}</h2><ul class=\"missing\">"
            f"{missing}</ul>"]


def _people_html(report: Report, t: _Text, language: str) -> list[str]:
    """One row per person; dates without the weekday so the table fits an A4 page."""
    e = html.escape

    def when(dt: datetime | None) -> str:
        return "" if dt is None else e(format_local(dt, report.time_zone, language,
                                                     weekday=False))

    def delivered(p: PersonReach) -> str:
        if not p.delivered:
            return t("no")
        return (t("yes_devices_one") if p.devices == 1
                else t("yes_devices_many", count=p.devices))

    def via(p: PersonReach) -> str:
        return t(f"via_{p.ack_via}") if p.ack_via in ("reaction", "reply") else ""

    head = "".join(f"<th>{t(k)}</th>" for k in (
        "name", "department", "manager", "delivered", "seen_at", "acknowledged_at", "via",
        "reminders_sent"))
    rows = "".join(
        f'<tr data-user="{e(p.user_id)}"><td>{e(p.display_name)}</td>'
        f"<td>{e(p.department or '')}</td><td>{e(p.manager or '')}</td>"
        f"<td>{delivered(p)}</td><td>{when(p.seen_at)}</td><td>{when(p.acked_at)}</td>"
        f'<td>{via(p)}</td><td class="n">{p.reminders_sent}</td></tr>' for p in report.people)
    return [f"<h2>{t('per_person')}</h2>",
            f'<table class="people"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>']


def _stage(notice: NoticeReach, t: _Text) -> str:
    if notice.is_summary:
        return t("stage_summary")
    hours = notice.stage.removeprefix("reminder-").removesuffix("h")
    if hours == "0":
        return t("stage_reminder_at_deadline")
    return t("stage_reminder", hours=hours)


def _notices_html(report: Report, t: _Text, when: _When) -> list[str]:
    """Manager summaries one by one; reminders per stage (count, first and last send), so
    a report for 5,000 people stays printable; failures one by one."""
    e = html.escape
    if not report.notices:
        return [f"<h2>{t('notices')}</h2><p>{t('no_notices')}</p>"]
    rows: list[str] = []
    by_stage: dict[str, list[NoticeReach]] = {}
    for n in report.notices:
        if not n.is_summary and n.sent_at is not None:
            by_stage.setdefault(n.stage, []).append(n)
    for group in sorted(by_stage.values(), key=lambda g: min(
            n.sent_at or n.claimed_at for n in g)):
        times = sorted(n.sent_at for n in group if n.sent_at is not None)
        first, last = when(times[0]), when(times[-1])
        span = first if first == last else f"{first} – {last}"
        rows.append(f'<tr class="reminders"><td>{_stage(group[0], t)}</td>'
                    f"<td>{t('people_one') if len(group) == 1 else t('people_many', count=len(group))}"
                    f"</td><td>{span}</td></tr>")
    for n in report.notices:
        if n.sent_at is not None and not n.is_summary:
            continue
        state = (when(n.sent_at) if n.sent_at is not None
                 else t("notice_failed", error=n.error) if n.error else t("notice_pending"))
        rows.append(f'<tr class="notice"><td>{_stage(n, t)}</td><td>{e(n.name)}</td>'
                    f"<td>{state}</td></tr>")
    head = "".join(f"<th>{t(k)}</th>" for k in ("what", "to", "sent"))
    return [f"<h2>{t('notices')}</h2>",
            f'<table class="notices"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"]
