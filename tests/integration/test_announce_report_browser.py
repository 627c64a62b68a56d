"""The reach report as proof, in a real browser: `hauspost announcements report ID --html
--language de|en` opened in Debian's chromium (Playwright), with exact per-person rows, the
footer's SHA-256 equal to that of `--csv`, nothing fetched from anywhere, and print CSS.

The store is seeded as a week of a real announcement would leave it (sent Monday, deadline
Friday noon, reminders, manager summaries). Screenshots go to a temporary directory; with
HAUSPOST_SCREENSHOTS=docs they replace the ones docs/announcements.md shows.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import AnnouncementRow, NoticeRow, RecipientRow
from tests.harness.browser import chromium_page

pytestmark = pytest.mark.timeout(300)

HAUSPOST = str(Path(sys.executable).parent / "hauspost")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SENT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)        # Mo., 30. Nov. 2026, 09:00 MEZ
DEADLINE = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)    # Fr., 4. Dez. 2026, 12:00 MEZ

#: name, department, manager (index), devices, seen / acknowledged (hours after sending), via
PEOPLE: list[tuple[str, str, int | None, int, float | None, float | None, str | None]] = [
    ("Anna Becker", "Vertrieb", None, 2, 0.2, 0.3, "reaction"),
    ("Bernd Jäger", "Vertrieb", 0, 1, 1.5, 1.6, "reaction"),
    ("Carla Özdemir", "Vertrieb", 0, 1, 26.0, None, None),
    ("Dieter Krause", "Vertrieb", 0, 1, 50.0, 75.5, "reply"),
    ("Elif Şahin", "Produktion", None, 1, 3.0, 3.1, "reaction"),
    ("Frank Müller", "Produktion", 4, 1, None, None, None),
    ("Gül Yılmaz", "Produktion", 4, 2, 8.0, 8.2, "reaction"),
    ("Hannes Wolf", "Produktion", 4, 0, None, None, None),
    ("Ines Brandt", "IT", None, 3, 0.1, 0.1, "reaction"),
    ("Jonas Richter", "IT", 8, 1, 22.0, 22.3, "reaction"),
]
MISSING_AT_24H = (2, 3, 5, 7)       # reminded 24 h before the deadline
MISSING_AT_DEADLINE = (2, 5, 7)     # reminded at the deadline; their managers summarised
FAILED = 7                          # never logged in: the reminder failed


def _user(i: int) -> str:
    return f"@p{i:02d}:firma.test"


def _seed(store: Store) -> None:
    with store.session() as session:
        session.add(AnnouncementRow(
            id=1, created_at=SENT, actor="kommunikation@firma.test", sender="@hauspost-bot:x",
            target={"targets": ["all"]}, title="Neue Arbeitszeitregelung ab 1. Januar",
            requires_ack=True, deadline=DEADLINE, status="sent", recipients_total=len(PEOPLE),
            delivered_total=9, devices_total=13))
        session.flush()
        for i, (name, dept, manager, devices, seen_h, ack_h, via) in enumerate(PEOPLE):
            session.add(RecipientRow(
                announcement_id=1, user_id=_user(i), employee_id=f"E{i:02d}", display_name=name,
                department=dept, manager_user_id=None if manager is None else _user(manager),
                devices=devices, ack_via=via,
                seen_at=None if seen_h is None else SENT + timedelta(hours=seen_h),
                acked_at=None if ack_h is None else SENT + timedelta(hours=ack_h)))
        stages = [("reminder-24h", DEADLINE - timedelta(hours=24), MISSING_AT_24H),
                  ("reminder-0h", DEADLINE, MISSING_AT_DEADLINE)]
        for stage, at, who in stages:
            for n, i in enumerate(who):
                session.add(NoticeRow(
                    announcement_id=1, user_id=_user(i), stage=stage, claimed_at=at,
                    sent_at=None if i == FAILED else at + timedelta(seconds=2 + n),
                    error="M_UNKNOWN: no device to send to" if i == FAILED else None))
        for n, head in enumerate((0, 4)):
            session.add(NoticeRow(announcement_id=1, user_id=_user(head), stage="manager-summary",
                                  claimed_at=DEADLINE, sent_at=DEADLINE + timedelta(seconds=9 + n)))


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A hauspost.yaml in Europe/Berlin (enough for `announcements report`) and its store."""
    doc = {"server_name": "firma.test", "homeserver": {"url": "http://127.0.0.1:1"},
           "store": {"url": f"sqlite:///{tmp_path / 'hauspost.db'}"},
           "directory": {"sources": ["hr_csv"], "time_zone": "Europe/Berlin",
                         "hr_csv": {"path": "employees.csv", "columns": {
                             "employee_id": "id", "localpart": "login", "display_name": "name"}}}}
    (tmp_path / "hauspost.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    store = open_store(f"sqlite:///{tmp_path / 'hauspost.db'}")
    try:
        _seed(store)
    finally:
        store.close()
    yield tmp_path


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("HAUSPOST_SCREENSHOTS") == "docs":
        DOCS_IMG.mkdir(exist_ok=True)
        return DOCS_IMG
    return tmp_path


def _cli(data_dir: Path, *args: str) -> str:
    proc = subprocess.run([HAUSPOST, "announcements", "report", "1", "-d", str(data_dir), *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "HAUSPOST_ACTOR": "betriebsrat@firma.test"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


ROWS_DE = [
    ["Anna Becker", "Vertrieb", "", "ja (2 Geräte)", "30. Nov. 2026, 09:12 MEZ",
     "30. Nov. 2026, 09:18 MEZ", "Reaktion", "0"],
    ["Bernd Jäger", "Vertrieb", "Anna Becker", "ja (1 Gerät)", "30. Nov. 2026, 10:30 MEZ",
     "30. Nov. 2026, 10:36 MEZ", "Reaktion", "0"],
    ["Carla Özdemir", "Vertrieb", "Anna Becker", "ja (1 Gerät)", "1. Dez. 2026, 11:00 MEZ",
     "", "", "2"],
    ["Dieter Krause", "Vertrieb", "Anna Becker", "ja (1 Gerät)", "2. Dez. 2026, 11:00 MEZ",
     "3. Dez. 2026, 12:30 MEZ", "Antwort „ok“", "1"],
    ["Elif Şahin", "Produktion", "", "ja (1 Gerät)", "30. Nov. 2026, 12:00 MEZ",
     "30. Nov. 2026, 12:06 MEZ", "Reaktion", "0"],
    ["Frank Müller", "Produktion", "Elif Şahin", "ja (1 Gerät)", "", "", "", "2"],
    ["Gül Yılmaz", "Produktion", "Elif Şahin", "ja (2 Geräte)", "30. Nov. 2026, 17:00 MEZ",
     "30. Nov. 2026, 17:12 MEZ", "Reaktion", "0"],
    ["Hannes Wolf", "Produktion", "Elif Şahin", "nein", "", "", "", "0"],
    ["Ines Brandt", "IT", "", "ja (3 Geräte)", "30. Nov. 2026, 09:06 MEZ",
     "30. Nov. 2026, 09:06 MEZ", "Reaktion", "0"],
    ["Jonas Richter", "IT", "Ines Brandt", "ja (1 Gerät)", "1. Dez. 2026, 07:00 MEZ",
     "1. Dez. 2026, 07:18 MEZ", "Reaktion", "0"],
]
NOTICES_DE = [
    ["Erinnerung (24 h vor der Frist)", "3 Personen", "Do., 3. Dez. 2026, 12:00 MEZ"],
    ["Erinnerung (zur Frist)", "2 Personen", "Fr., 4. Dez. 2026, 12:00 MEZ"],
    ["Erinnerung (24 h vor der Frist)", "Hannes Wolf",
     "fehlgeschlagen: M_UNKNOWN: no device to send to"],
    ["Erinnerung (zur Frist)", "Hannes Wolf", "fehlgeschlagen: M_UNKNOWN: no device to send to"],
    ["Zusammenfassung an Vorgesetzte", "Anna Becker", "Fr., 4. Dez. 2026, 12:00 MEZ"],
    ["Zusammenfassung an Vorgesetzte", "Elif Şahin", "Fr., 4. Dez. 2026, 12:00 MEZ"],
]
# The same rows in English: dates, "yes (n devices)", "reaction"/"reply".
ROW_EN_2 = ["Bernd Jäger", "Vertrieb", "Anna Becker", "yes (1 device)",
            "30 Nov 2026, 10:30 CET", "30 Nov 2026, 10:36 CET", "reaction", "0"]
ROW_EN_4 = ["Dieter Krause", "Vertrieb", "Anna Becker", "yes (1 device)",
            "2 Dec 2026, 11:00 CET", "3 Dec 2026, 12:30 CET", "reply “ok”", "1"]

_CELLS = "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))"


async def test_report_in_german_and_english_in_chromium(data_dir: Path, shots: Path) -> None:
    csv_text = _cli(data_dir, "--csv")
    digest = hashlib.sha256(csv_text.encode("utf-8")).hexdigest()
    assert len(csv_text.splitlines()) == 1 + len(PEOPLE)
    pages = {}
    for language in ("de", "en"):
        target = data_dir / f"report-{language}.html"
        _cli(data_dir, "--html", str(target), "--language", language)
        pages[language] = target.read_text(encoding="utf-8")

    # Each report is in the audit log with the CSV's hash.
    store = open_store(f"sqlite:///{data_dir / 'hauspost.db'}")
    try:
        with store.session() as session:
            audit = repo.query_audit(session, repo.AuditQuery(action="announcement.report"))
            assert [(a.actor, a.target, a.reason, a.details["csv_sha256"],
                     a.details["language"]) for a in audit] == [
                ("betriebsrat@firma.test", "announcement:1", f"reach report ({kind})", digest,
                 language) for kind, language in (("csv", "de"), ("html", "de"), ("html", "en"))]
    finally:
        store.close()

    for language, locale in (("de", "de-DE"), ("en", "en-GB")):
        async with chromium_page(locale=locale, viewport=(1100, 900)) as (page, outside):
            await page.set_content(pages[language], wait_until="load")
            assert await page.get_attribute("html", "lang") == language
            rows = await page.locator("table.people tbody tr").evaluate_all(_CELLS)
            notices = await page.locator("table.notices tbody tr").evaluate_all(_CELLS)
            assert await page.inner_text("#csv-sha256") == digest
            deadline = await page.inner_text("#deadline")
            box = await page.locator("svg").bounding_box()
            assert box is not None and box["width"] >= 600
            marks = await page.locator("svg text.mark").evaluate_all(
                "marks => marks.map(m => m.textContent)")
            await page.screenshot(path=str(shots / f"announcement-report-{language}.png"),
                                  full_page=True)
            # Printing: the print CSS applies (table heads repeat on every page), one A4 PDF.
            await page.emulate_media(media="print")
            assert await page.evaluate(
                "getComputedStyle(document.querySelector('table.people thead')).display"
            ) == "table-header-group"
            pdf = await page.pdf(format="A4", print_background=False)
            assert pdf.startswith(b"%PDF")
            assert outside == []
        if language == "de":
            assert rows == ROWS_DE
            assert notices == NOTICES_DE
            assert deadline == "Fr., 4. Dez. 2026, 12:00 MEZ — abgelaufen"
            assert marks == ["1. Dez.", "2. Dez.", "3. Dez.", "4. Dez."]
        else:
            assert (rows[1], rows[3]) == (ROW_EN_2, ROW_EN_4)
            assert [r[0] for r in rows] == [r[0] for r in ROWS_DE]
            assert notices[0] == ["reminder (24 h before the deadline)", "3 people",
                                  "Thu 3 Dec 2026, 12:00 CET"]
            assert deadline == "Fri 4 Dec 2026, 12:00 CET — passed"
            assert marks == ["1 Dec", "2 Dec", "3 Dec", "4 Dec"]
