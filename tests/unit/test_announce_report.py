"""The reach report: exact counts, missing people, departments, CSV, and the SVG chart."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.announcements.report import (
    UnknownAnnouncementError,
    ack_chart_svg,
    build_report,
    render_csv,
    render_html,
    render_text,
)
from provisioner.store import Store, open_store
from provisioner.store.announcement_models import AnnouncementRow, RecipientRow

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    with s.session() as session:
        session.add(AnnouncementRow(
            id=1, created_at=T0, actor="t", sender="@bot:x", target={"targets": ["all"]},
            title="Neue <Regel> & mehr", requires_ack=True, deadline=T0 + timedelta(days=2),
            status="sent", recipients_total=5, delivered_total=4, devices_total=6))
        session.flush()
        rows = [("@a:x", "Anna", "Sales", 2, 1, 2), ("@b:x", "Ben", "Sales", 1, 3, None),
                ("@c:x", "Cara", "IT", 1, None, None), ("@d:x", "Dora", None, 0, None, None),
                ("@e:x", "Emil", "IT", 2, 5, 5)]
        for user, name, dept, devices, seen_h, ack_h in rows:
            session.add(RecipientRow(
                announcement_id=1, user_id=user, employee_id=user, display_name=name,
                department=dept, devices=devices,
                seen_at=T0 + timedelta(hours=seen_h) if seen_h else None,
                acked_at=T0 + timedelta(hours=ack_h) if ack_h else None,
                ack_via="reaction" if ack_h else None))
    yield s
    s.close()


def test_counts_missing_and_departments(store: Store) -> None:
    report = build_report(store, 1)
    assert (report.recipients, report.delivered, report.seen, report.acknowledged) == (5, 4, 3, 2)
    assert report.percent(report.acknowledged) == 40.0
    assert [p.display_name for p in report.missing] == ["Ben", "Cara", "Dora"]
    data = report.to_json()
    assert data["by_department"] == {
        "(none)": {"recipients": 1, "delivered": 0, "seen": 0, "acknowledged": 0},
        "IT": {"recipients": 2, "delivered": 2, "seen": 1, "acknowledged": 1},
        "Sales": {"recipients": 2, "delivered": 2, "seen": 2, "acknowledged": 1}}
    assert [m["user_id"] for m in data["missing"]] == ["@b:x", "@c:x", "@d:x"]
    assert data["acknowledged_percent"] == 40.0 and data["seen_percent"] == 60.0
    text = render_text(report)
    assert "acknowledged  2/5 (40.0 %)" in text and "missing (3):" in text


def test_csv_has_one_row_per_person(store: Store) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(build_report(store, 1)))))
    assert [r["user_id"] for r in rows] == ["@a:x", "@b:x", "@c:x", "@d:x", "@e:x"]
    assert rows[0]["acknowledged_at"] == "2026-11-28T11:00:00+00:00"
    assert rows[3]["delivered"] == "0" and rows[3]["department"] == ""


def test_chart_is_valid_svg_with_one_step_per_acknowledgement(store: Store) -> None:
    svg = ack_chart_svg(build_report(store, 1))
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    ns = "{http://www.w3.org/2000/svg}"
    (line,) = root.iter(f"{ns}polyline")
    points = line.attrib["points"].split()
    assert len(points) == 2 + 2 * 2  # start, two steps of two points, end
    assert any(t.text == "deadline" for t in root.iter(f"{ns}text"))


def test_html_is_self_contained_and_escaped(store: Store) -> None:
    page = render_html(build_report(store, 1))
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert "Neue &lt;Regel&gt; &amp; mehr" in page
    assert "Dora &lt;@d:x&gt; — (none) (not delivered)" in page


def test_unknown_announcement(store: Store) -> None:
    with pytest.raises(UnknownAnnouncementError, match="no announcement with id 9"):
        build_report(store, 9)


def test_chart_of_an_announcement_without_acknowledgements(store: Store) -> None:
    with store.session() as session:
        session.add(AnnouncementRow(
            id=2, created_at=T0, actor="t", sender="@bot:x", target={}, title="FYI",
            requires_ack=False, status="sent", recipients_total=7, delivered_total=7,
            devices_total=9))
    report = build_report(store, 2)
    assert (report.recipients, report.delivered, report.seen, report.acknowledged) == (7, 7, None, None)
    assert "seen          not tracked" in render_text(report)
    ET.fromstring(ack_chart_svg(report))  # noqa: S314 - our own output
