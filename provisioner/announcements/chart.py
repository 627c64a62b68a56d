"""The reach report's chart: cumulative acknowledgements over time as an inline SVG.

Drawn here, not by a chart library: no script, no fonts or CDN, and it prints. Time marks
are in company time, at steps a reader counts in (hours, days), aligned to the local clock.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from provisioner.announcements.local_time import format_day, zone_abbreviation
from provisioner.announcements.messages import text

W, H, PAD = 640, 270, 44
_STEPS = [timedelta(minutes=m) for m in (15, 30, 60, 120, 180, 360, 720)] + [
    timedelta(days=d) for d in (1, 2, 7, 14, 28)]
MAX_MARKS = 8


@dataclass(frozen=True)
class ChartData:
    start: datetime
    end: datetime
    total: int
    ack_times: Sequence[datetime]
    deadline: datetime | None
    as_of: datetime | None
    time_zone: ZoneInfo
    language: str


def time_marks(start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    """Marks at a round local step (15 min … 4 weeks), at most MAX_MARKS, inside [start, end]."""
    span = end - start
    step = next((s for s in _STEPS if span / s <= MAX_MARKS), _STEPS[-1])
    local = start.astimezone(tz).replace(tzinfo=None)
    if step >= timedelta(days=1):
        first = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        minutes = int(step.total_seconds() // 60)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        done = (local - midnight).total_seconds() // 60
        first = midnight + timedelta(minutes=(done // minutes) * minutes)
    marks: list[datetime] = []
    wall = first
    while len(marks) < 4 * MAX_MARKS:
        at = wall.replace(tzinfo=tz)
        if at > end:
            break
        if at >= start:
            marks.append(at)
        wall += step
    return marks


def draw(data: ChartData) -> str:
    span = max((data.end - data.start).total_seconds(), 1.0)
    total = max(data.total, 1)
    language, tz = data.language, data.time_zone

    def x(t: datetime) -> float:
        return PAD + (W - 2 * PAD) * (t - data.start).total_seconds() / span

    def y(n: float) -> float:
        return H - PAD - (H - 2 * PAD) * n / total

    times = sorted(data.ack_times)
    line_end = data.end
    if data.as_of is not None and data.start <= data.as_of < data.end:
        line_end = max([data.as_of, *times[-1:]])
    points = [f"{x(data.start):.1f},{y(0):.1f}"]
    for i, t in enumerate(times, start=1):
        points.append(f"{x(t):.1f},{y(i - 1):.1f}")
        points.append(f"{x(t):.1f},{y(i):.1f}")
    points.append(f"{x(line_end):.1f},{y(len(times)):.1f}")
    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" role="img" aria-label="{e(text("chart_title", language))}">',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#444"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>']
    for n in sorted({0, total // 2, total}):
        parts.append(f'<line x1="{PAD}" y1="{y(n):.1f}" x2="{W - PAD}" y2="{y(n):.1f}" '
                     'stroke="#ddd" stroke-dasharray="4 4"/>')
        parts.append(f'<text x="{PAD - 6}" y="{y(n) + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{n}</text>')
    marks = time_marks(data.start, data.end, tz)
    daily = len(marks) > 1 and marks[1] - marks[0] >= timedelta(days=1)
    last_day = None
    for mark in marks:
        mx = x(mark)
        local = mark.astimezone(tz)
        parts.append(f'<line class="mark" x1="{mx:.1f}" y1="{H - PAD}" x2="{mx:.1f}" '
                     f'y2="{H - PAD + 4}" stroke="#444"/>')
        label = format_day(mark, tz, language) if daily else f"{local:%H:%M}"
        parts.append(f'<text class="mark" x="{mx:.1f}" y="{H - PAD + 16}" text-anchor="middle" '
                     f'font-size="10">{e(label)}</text>')
        if not daily and local.date() != last_day:
            parts.append(f'<text x="{mx:.1f}" y="{H - PAD + 29}" text-anchor="middle" '
                         f'font-size="10" fill="#555">{e(format_day(mark, tz, language))}</text>')
            last_day = local.date()
    parts.append(f'<text x="{W - PAD}" y="{H - 4}" text-anchor="end" font-size="10" '
                 f'fill="#555">{e(zone_abbreviation(data.end.astimezone(tz), language))}</text>')
    parts.append(f'<polyline fill="none" stroke="#1a7f37" stroke-width="2" '
                 f'points="{" ".join(points)}"/>')
    if data.deadline is not None:
        parts.append(_rule(x(data.deadline), "#cf222e", text("chart_deadline", language)))
    if data.as_of is not None and data.start <= data.as_of <= data.end:
        parts.append(_rule(x(data.as_of), "#0969da", text("chart_as_of", language), below=True))
    parts.append("</svg>")
    return "".join(parts)


def _rule(at: float, colour: str, label: str, below: bool = False) -> str:
    y_text = PAD + 12 if below else PAD - 6
    anchor = "end" if below else "middle"
    dx = -4 if below else 0
    return (f'<line x1="{at:.1f}" y1="{PAD}" x2="{at:.1f}" y2="{H - PAD}" stroke="{colour}" '
            f'stroke-dasharray="6 3"/><text x="{at + dx:.1f}" y="{y_text}" '
            f'text-anchor="{anchor}" font-size="11" fill="{colour}">{html.escape(label)}</text>')
