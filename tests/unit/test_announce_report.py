"""The reach report: exact counts, missing people, departments, CSV, and the SVG chart."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from provisioner.announcements.report import (
    UnknownAnnouncementError,
    ack_chart_svg,
    build_report,
    record_report,
    render_csv,
    render_html,
    render_text,
)
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import AnnouncementRow, NoticeRow, RecipientRow

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
AS_OF = T0 + timedelta(days=3)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    with s.session() as session:
        session.add(AnnouncementRow(
            id=1, created_at=T0, actor="t", sender="@bot:x", target={"targets": ["all"]},
            title="Neue <Regel> & mehr", requires_ack=True, deadline=T0 + timedelta(days=2),
            status="sent", recipients_total=5, delivered_total=4, devices_total=6))
        session.flush()
        rows = [("@a:x", "Anna", "Sales", 2, 1, 2, None), ("@b:x", "Ben", "Sales", 1, 3, None, "@a:x"),
                ("@c:x", "Cara", "IT", 1, None, None, "@e:x"),
                ("@d:x", "Dora", None, 0, None, None, "@z:x"), ("@e:x", "Emil", "IT", 2, 5, 5, None)]
        for user, name, dept, devices, seen_h, ack_h, manager in rows:
            session.add(RecipientRow(
                announcement_id=1, user_id=user, employee_id=user, display_name=name,
                department=dept, devices=devices, manager_user_id=manager,
                seen_at=T0 + timedelta(hours=seen_h) if seen_h else None,
                acked_at=T0 + timedelta(hours=ack_h) if ack_h else None,
                ack_via=("reaction" if ack_h == 2 else "reply") if ack_h else None))
        # Zoe manages Dora but got no announcement: her name comes from the account links.
        repo.insert_link(session, employee_id="Z", user_id="@z:x", now=T0, run_id=None,
                         display_name="Zoe Boss", email=None)
        # Reminders 24 h before the deadline (one failed), a summary after it.
        for user, error in (("@b:x", None), ("@c:x", None), ("@d:x", "M_FORBIDDEN")):
            session.add(NoticeRow(announcement_id=1, user_id=user, stage="reminder-24h",
                                  claimed_at=T0 + timedelta(hours=24),
                                  sent_at=None if error else T0 + timedelta(hours=24, seconds=3),
                                  error=error))
        session.add(NoticeRow(announcement_id=1, user_id="@z:x", stage="manager-summary",
                              claimed_at=T0 + timedelta(hours=49),
                              sent_at=T0 + timedelta(hours=49, seconds=2)))
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


def _table_rows(page: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table class="{table}">.*?<tbody>(.*?)</tbody>', page)
    assert body is not None
    return [[re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1))]


def test_people_carry_manager_and_reminders_and_notices_are_listed(store: Store) -> None:
    report = build_report(store, 1, as_of=AS_OF, time_zone=BERLIN)
    assert [(p.display_name, p.manager, p.reminders_sent) for p in report.people] == [
        ("Anna", None, 0), ("Ben", "Anna", 1), ("Cara", "Emil", 1), ("Dora", "Zoe Boss", 0),
        ("Emil", None, 0)]
    assert [(n.name, n.stage, n.error) for n in report.notices] == [
        ("Ben", "reminder-24h", None), ("Cara", "reminder-24h", None),
        ("Dora", "reminder-24h", "M_FORBIDDEN"), ("Zoe Boss", "manager-summary", None)]
    assert report.deadline_passed is True
    assert build_report(store, 1, as_of=T0 + timedelta(days=1)).deadline_passed is False
    data = report.to_json()
    assert (data["as_of"], data["time_zone"], data["deadline"], data["deadline_passed"]) == (
        "2026-12-01T10:00:00+01:00", "Europe/Berlin", "2026-11-30T10:00:00+01:00", True)
    assert data["people"][4] == {
        "user_id": "@e:x", "name": "Emil", "department": "IT", "manager": None,
        "manager_user_id": None, "delivered": True, "devices": 2,
        "seen_at": "2026-11-28T15:00:00+01:00", "acknowledged_at": "2026-11-28T15:00:00+01:00",
        "acknowledged_via": "reply", "reminders_sent": 0}
    assert data["notices"][3] == {"user_id": "@z:x", "name": "Zoe Boss",
                                  "stage": "manager-summary",
                                  "sent_at": "2026-11-30T11:00:02+01:00", "error": None}
    assert data["csv_sha256"] == report.csv_sha256()


def test_csv_in_company_time_and_its_hash(store: Store) -> None:
    report = build_report(store, 1, as_of=AS_OF, time_zone=BERLIN)
    csv_text = render_csv(report)
    assert csv_text.splitlines() == [
        "user_id,name,department,manager,delivered,devices,seen_at,acknowledged_at,"
        "acknowledged_via,reminders_sent",
        "@a:x,Anna,Sales,,1,2,2026-11-28T11:00:00+01:00,2026-11-28T12:00:00+01:00,reaction,0",
        "@b:x,Ben,Sales,Anna,1,1,2026-11-28T13:00:00+01:00,,,1",
        "@c:x,Cara,IT,Emil,1,1,,,,1",
        "@d:x,Dora,,Zoe Boss,0,0,,,,0",
        "@e:x,Emil,IT,,1,2,2026-11-28T15:00:00+01:00,2026-11-28T15:00:00+01:00,reply,0"]
    digest = hashlib.sha256(csv_text.encode("utf-8")).hexdigest()
    assert report.csv_sha256() == digest
    # The CSV does not depend on the moment of the report: the same state, the same hash.
    assert build_report(store, 1, as_of=AS_OF + timedelta(days=5),
                        time_zone=BERLIN).csv_sha256() == digest
    for language in ("de", "en"):
        assert f'<code id="csv-sha256">{digest}</code>' in render_html(report, language)


def test_html_in_german(store: Store) -> None:
    page = render_html(build_report(store, 1, as_of=AS_OF, time_zone=BERLIN), "de")
    assert page.startswith('<!DOCTYPE html>\n<html lang="de">')
    assert '<dd id="as-of">Di., 1. Dez. 2026, 10:00 MEZ</dd>' in page
    assert ('<dd id="deadline">Mo., 30. Nov. 2026, 10:00 MEZ — '
            '<span class="passed">abgelaufen</span></dd>') in page
    assert "<dt>Bestätigt</dt><dd>2/5 (40,0 %)</dd>" in page
    assert _table_rows(page, "people") == [
        ["Anna", "Sales", "", "ja (2 Geräte)", "28. Nov. 2026, 11:00 MEZ",
         "28. Nov. 2026, 12:00 MEZ", "Reaktion", "0"],
        ["Ben", "Sales", "Anna", "ja (1 Gerät)", "28. Nov. 2026, 13:00 MEZ", "", "", "1"],
        ["Cara", "IT", "Emil", "ja (1 Gerät)", "", "", "", "1"],
        ["Dora", "", "Zoe Boss", "nein", "", "", "", "0"],
        ["Emil", "IT", "", "ja (2 Geräte)", "28. Nov. 2026, 15:00 MEZ",
         "28. Nov. 2026, 15:00 MEZ", "Antwort „ok“", "0"]]
    assert _table_rows(page, "notices") == [
        ["Erinnerung (24 h vor der Frist)", "2 Personen", "So., 29. Nov. 2026, 10:00 MEZ"],
        ["Erinnerung (24 h vor der Frist)", "Dora", "fehlgeschlagen: M_FORBIDDEN"],
        ["Zusammenfassung an Vorgesetzte", "Zoe Boss", "Mo., 30. Nov. 2026, 11:00 MEZ"]]
    assert "Dora &lt;@d:x&gt; — (keine) (nicht zugestellt)" in page
    assert "@page{size:A4" in page and "@media print" in page


def test_html_in_english(store: Store) -> None:
    page = render_html(build_report(store, 1, as_of=T0 + timedelta(days=1), time_zone=BERLIN))
    assert '<html lang="en">' in page
    assert '<dd id="deadline">Mon 30 Nov 2026, 10:00 CET — not yet passed</dd>' in page
    assert _table_rows(page, "people")[1] == [
        "Ben", "Sales", "Anna", "yes (1 device)", "28 Nov 2026, 13:00 CET", "", "", "1"]
    assert _table_rows(page, "notices")[0] == [
        "reminder (24 h before the deadline)", "2 people", "Sun 29 Nov 2026, 10:00 CET"]


def test_chart_has_local_time_marks_and_as_of(store: Store) -> None:
    """Sent Sat 10:00 MEZ, deadline Mon 10:00: six-hourly marks on the local clock, a date
    under each new day, the zone's name, the deadline and "as of" rules."""
    svg = ack_chart_svg(build_report(store, 1, as_of=T0 + timedelta(days=1), time_zone=BERLIN),
                        "de")
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(f"{ns}text")]
    marks = [t.text for t in root.iter(f"{ns}text") if t.attrib.get("class") == "mark"]
    assert marks == ["12:00", "18:00", "00:00", "06:00", "12:00", "18:00", "00:00", "06:00"]
    assert [t for t in texts if t and "Nov." in t] == ["28. Nov.", "29. Nov.", "30. Nov."]
    assert {"MEZ", "Frist", "Stand"} <= set(texts)


def test_record_report_writes_the_hash_into_the_audit_log(store: Store) -> None:
    report = build_report(store, 1, as_of=AS_OF, time_zone=BERLIN)
    before = datetime.now(UTC)
    digest = record_report(store, report, actor="hr@x", formats=["html", "csv"], language="de")
    assert digest == hashlib.sha256(render_csv(report).encode()).hexdigest()
    with store.session() as session:
        (row,) = repo.query_audit(session, repo.AuditQuery(action="announcement.report"))
        assert (row.actor, row.target, row.reason) == ("hr@x", "announcement:1",
                                                       "reach report (html, csv)")
        assert row.details == {"csv_sha256": digest, "as_of": "2026-12-01T09:00:00+00:00",
                               "time_zone": "Europe/Berlin", "language": "de",
                               "recipients": 5, "acknowledged": 2}
        assert row.at >= before


def test_chart_right_after_sending_without_acknowledgements(store: Store) -> None:
    with store.session() as session:
        session.add(AnnouncementRow(
            id=3, created_at=T0, actor="t", sender="@bot:x", target={}, title="Neu",
            requires_ack=True, deadline=T0 + timedelta(hours=3), status="sent",
            recipients_total=0, delivered_total=0, devices_total=0))
    report = build_report(store, 3, as_of=T0 + timedelta(minutes=5), time_zone=BERLIN)
    root = ET.fromstring(ack_chart_svg(report))  # noqa: S314 - our own output
    ns = "{http://www.w3.org/2000/svg}"
    (line,) = root.iter(f"{ns}polyline")
    assert len(line.attrib["points"].split()) == 2  # from sending to "as of", flat at 0
    marks = [t.text for t in root.iter(f"{ns}text") if t.attrib.get("class") == "mark"]
    assert marks == ["10:00", "10:30", "11:00", "11:30", "12:00", "12:30", "13:00"]
