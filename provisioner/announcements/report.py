"""Reach of one announcement: delivered, seen, acknowledged, who is missing, by department.

Text, JSON, CSV and a self-contained HTML page whose chart (acknowledgements over time) is
an inline SVG drawn here: no script, no CDN, nothing fetched when HR opens the file.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from provisioner.errors import HauspostError
from provisioner.store import Store
from provisioner.store.announcement_models import AnnouncementRow, RecipientRow


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

    @property
    def delivered(self) -> bool:
        return self.devices > 0


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
        return {
            "id": self.announcement_id, "title": self.title,
            "created_at": self.created_at.isoformat(),
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "requires_ack": self.requires_ack, "recipients": self.recipients,
            "delivered": self.delivered, "seen": self.seen, "acknowledged": self.acknowledged,
            "seen_percent": self.percent(self.seen),
            "acknowledged_percent": self.percent(self.acknowledged),
            "purged": self.purged,
            "missing": [{"user_id": p.user_id, "name": p.display_name,
                         "department": p.department, "delivered": p.delivered,
                         "seen": p.seen_at is not None} for p in self.missing],
            "by_department": {d: vars(r) for d, r in sorted(self.departments.items())},
        }


NO_DEPARTMENT = "(none)"


def build_report(store: Store, announcement_id: int) -> Report:
    with store.session() as session:
        ann = session.get(AnnouncementRow, announcement_id)
        if ann is None:
            raise UnknownAnnouncementError(f"no announcement with id {announcement_id} "
                                           "(`hauspost announcements` lists them)")
        rows = session.execute(
            select(RecipientRow.user_id, RecipientRow.display_name, RecipientRow.department,
                   RecipientRow.devices, RecipientRow.seen_at, RecipientRow.acked_at,
                   RecipientRow.ack_via)
            .where(RecipientRow.announcement_id == announcement_id)
            .order_by(RecipientRow.display_name, RecipientRow.user_id)).all()
    people = tuple(PersonReach(*r) for r in rows)
    base: dict[str, Any] = {"announcement_id": ann.id, "title": ann.title,
                            "created_at": ann.created_at, "deadline": ann.deadline,
                            "requires_ack": ann.requires_ack}
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
                  departments={k: DepartmentReach(**v) for k, v in departments.items()})


def _pct(report: Report, value: int | None) -> str:
    pct = report.percent(value)
    return "not tracked" if value is None else f"{value}/{report.recipients} ({pct} %)"


def render_text(report: Report) -> str:
    lines = [f"Announcement {report.announcement_id}: {report.title}",
             f"  sent {report.created_at.isoformat(timespec='minutes')}"
             + (f", acknowledge by {report.deadline.isoformat(timespec='minutes')}"
                if report.deadline else ""),
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
    return "\n".join(lines)


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["user_id", "name", "department", "delivered", "devices", "seen_at",
                     "acknowledged_at", "acknowledged_via"])
    for p in report.people:
        writer.writerow([p.user_id, p.display_name, p.department or "", int(p.delivered),
                         p.devices, p.seen_at.isoformat() if p.seen_at else "",
                         p.acked_at.isoformat() if p.acked_at else "", p.ack_via or ""])
    return out.getvalue()


# --- HTML with an inline SVG chart -------------------------------------------------------

_W, _H, _PAD = 640, 260, 40


def ack_chart_svg(report: Report) -> str:
    """Cumulative acknowledgements over time (a step line), the deadline as a red rule."""
    times = report.ack_times()
    total = max(report.recipients, 1)
    start = report.created_at
    end_candidates = [start, *(times[-1:]), *([report.deadline] if report.deadline else [])]
    end = max(end_candidates)
    span = max((end - start).total_seconds(), 1.0)

    def x(t: datetime) -> float:
        return _PAD + (_W - 2 * _PAD) * (t - start).total_seconds() / span

    def y(n: int) -> float:
        return _H - _PAD - (_H - 2 * _PAD) * n / total

    points = [f"{x(start):.1f},{y(0):.1f}"]
    for i, t in enumerate(times, start=1):
        points.append(f"{x(t):.1f},{y(i - 1):.1f}")
        points.append(f"{x(t):.1f},{y(i):.1f}")
    points.append(f"{x(end):.1f},{y(len(times)):.1f}")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
             f'viewBox="0 0 {_W} {_H}" role="img" aria-label="Acknowledgements over time">',
             f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" '
             'stroke="#444"/>',
             f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#444"/>',
             f'<line x1="{_PAD}" y1="{y(total):.1f}" x2="{_W - _PAD}" y2="{y(total):.1f}" '
             'stroke="#bbb" stroke-dasharray="4 4"/>',
             f'<text x="{_PAD - 6}" y="{y(total) + 4:.1f}" text-anchor="end" '
             f'font-size="11">{total}</text>',
             f'<text x="{_PAD - 6}" y="{y(0) + 4:.1f}" text-anchor="end" font-size="11">0</text>',
             f'<polyline fill="none" stroke="#1a7f37" stroke-width="2" '
             f'points="{" ".join(points)}"/>',
             f'<text x="{_PAD}" y="{_H - 12}" font-size="11">'
             f'{html.escape(start.strftime("%Y-%m-%d %H:%M"))}</text>',
             f'<text x="{_W - _PAD}" y="{_H - 12}" text-anchor="end" font-size="11">'
             f'{html.escape(end.strftime("%Y-%m-%d %H:%M"))} UTC</text>']
    if report.deadline is not None:
        dx = x(report.deadline)
        parts.append(f'<line x1="{dx:.1f}" y1="{_PAD}" x2="{dx:.1f}" y2="{_H - _PAD}" '
                     'stroke="#cf222e" stroke-dasharray="6 3"/>')
        parts.append(f'<text x="{dx:.1f}" y="{_PAD - 6}" text-anchor="middle" '
                     'font-size="11" fill="#cf222e">deadline</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(d)}</td><td>{r.recipients}</td><td>{r.delivered}</td><td>{r.seen}</td>"
        f"<td>{r.acknowledged}</td></tr>" for d, r in sorted(report.departments.items()))
    missing = "".join(
        f"<li>{e(p.display_name)} &lt;{e(p.user_id)}&gt; — {e(p.department or NO_DEPARTMENT)}"
        f"{'' if p.delivered else ' (not delivered)'}</li>" for p in report.missing)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Reach of announcement {report.announcement_id}</title>"
        "<style>body{font-family:sans-serif;max-width:760px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "</style></head><body>"
        f"<h1>{e(report.title)}</h1>"
        f"<p>Announcement {report.announcement_id}, sent "
        f"{e(report.created_at.isoformat(timespec='minutes'))}"
        + (f", acknowledge by {e(report.deadline.isoformat(timespec='minutes'))}"
           if report.deadline else "") + "</p>"
        f"<ul><li>Delivered: {report.delivered}/{report.recipients}</li>"
        f"<li>Seen: {e(_pct(report, report.seen))}</li>"
        f"<li>Acknowledged: {e(_pct(report, report.acknowledged))}</li></ul>"
        f"<h2>Acknowledgements over time</h2>{ack_chart_svg(report)}"
        f"<h2>By department</h2><table><tr><th>Department</th><th>Recipients</th>"
        f"<th>Delivered</th><th>Seen</th><th>Acknowledged</th></tr>{rows}</table>"
        f"<h2>Missing ({len(report.missing)})</h2><ul>{missing}</ul>"
        "</body></html>\n")
