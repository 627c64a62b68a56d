"""The console in a real browser: Debian's chromium driven by Playwright, against a real
`hauspost serve` + Synapse + slapd. HR offboards, communications announces and watches the
acknowledgements come in from real E2EE clients, IT reviews and applies a pending plan.

Screenshots go to a temporary directory; with HAUSPOST_SCREENSHOTS=docs they replace the
ones in docs/img/ that docs/console.md shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from nio import AsyncClient
from playwright.async_api import Page
from sqlalchemy import select

from provisioner.store.announcement_models import AnnouncementPostRow
from tests.harness.browser import chromium_page
from tests.harness.e2ee import close_all, e2ee_login, send_content, wait_for_event
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, TestUser
from tests.integration.console_env import Company, console_company

pytestmark = pytest.mark.timeout(600)

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(scope="module")
def company(synapse: SynapseServer, slapd: SlapdServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Company]:
    yield from console_company(synapse, slapd, Path(tmp_path_factory.mktemp("console-ui")))


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("HAUSPOST_SCREENSHOTS") == "docs":
        DOCS_IMG.mkdir(exist_ok=True)
        return DOCS_IMG
    return tmp_path


async def sign_in(page: Page, company: Company, key: str) -> None:
    await page.goto(company.url + "/")
    assert page.url.startswith(company.url + "/login?next=")
    await page.fill("#username", company.people[key].uid)
    await page.fill("#password", TEST_PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_load_state()
    assert await page.locator("#signed-in-as").count() == 1, await page.content()


async def test_hr_offboards_a_leaver_and_the_live_token_dies(company: Company,
                                                             shots: Path) -> None:
    leaver = company.people["leaver"]
    token = company.env.token(leaver)
    assert company.env.whoami(token).status_code == 200
    async with chromium_page(locale="de-DE", viewport=(1100, 800)) as (page, outside):
        dialogs: list[str] = []  # a script that ran would open one (the XSS name's alert)
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await sign_in(page, company, "hr")
        await page.click("nav >> text=Personen")
        await page.fill("#q", "zoe orsted")
        await page.click("#search")
        assert await page.inner_text("#count") == "1 Treffer"
        await page.click("text=Zoë Ørsted")
        assert await page.inner_text("#person-name") == "Zoë Ørsted"
        await page.click("#offboard")
        await page.fill("#reason", "Letzter Arbeitstag 30.11.")
        await page.screenshot(path=str(shots / "console-offboard-confirm.png"))
        await page.click("#offboard-now")
        flash = await page.inner_text("#flash")
        assert re.fullmatch(r"Zugang beendet in \d+ ms\. Aus allen Räumen entfernt\.", flash), flash
        assert "deaktiviert" in await page.inner_text("#account-state")
        assert "account.offboard" in await page.inner_text("#audit")
        await page.screenshot(path=str(shots / "console-offboarded.png"), full_page=True)
        # Readable on a phone: nothing wider than the screen but the (scrollable) tables.
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(company.url + "/people?q=vertrieb")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        assert "<script>alert('x')</script> Böse" in await page.inner_text("#people")
        assert dialogs == []
        await page.screenshot(path=str(shots / "console-phone.png"))
    assert outside == []
    gone = company.env.whoami(token)
    assert gone.status_code == 401 and gone.json()["errcode"] == "M_UNKNOWN_TOKEN"
    proc = company.env.cli("audit", "--json", "--action", "account.offboard")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["actor"], r["target"], r["reason"]) for r in rows] == [
        (f"console:{company.mxid('hr')}", company.env.mxid(leaver), "Letzter Arbeitstag 30.11.")]


async def _clients(company: Company, keys: list[str]) -> list[AsyncClient]:
    users = [TestUser(user_id=company.mxid(k), password=TEST_PASSWORD, token="", device_id="")
             for k in keys]
    return list(await asyncio.gather(*(e2ee_login(company.env.synapse, u,
                                                  company.env.workdir / "clients")
                                       for u in users)))


async def test_comms_announces_to_a_department_and_sees_exact_acknowledgements(
        company: Company, shots: Path) -> None:
    sales = ["plain", "xss", "nomail"]  # Vertrieb, besides the leaver (offboarded or not)
    clients = await _clients(company, sales)
    # The form takes the company's time (Europe/Berlin in this company's hauspost.yaml).
    deadline = (datetime.now(UTC) + timedelta(days=2)).astimezone(ZoneInfo("Europe/Berlin"))
    try:
        async with chromium_page(locale="en-GB") as (page, outside):
            await sign_in(page, company, "comms")
            await page.click("nav >> text=Announcements")
            await page.check("input[value='department:Vertrieb']")
            await page.fill("#body", "# Inventur\n\nAm **Freitag** ist das Lager geschlossen.")
            await page.fill("#ack-by", deadline.strftime("%Y-%m-%dT%H:%M"))
            await page.click("#preview-button")
            assert "<strong>Freitag</strong>" in await page.inner_html("#preview")
            await page.click("#send")
            await page.wait_for_load_state()
            assert await page.locator("#totals").count() == 1, await page.inner_text("main")
            announcement_id = int(page.url.rsplit("/", 1)[1])
            recipients = int(await page.inner_text("#total-recipients"))
            with company.env.store.session() as session:
                (room_id, event_id), = session.execute(
                    select(AnnouncementPostRow.room_id, AnnouncementPostRow.event_id).where(
                        AnnouncementPostRow.announcement_id == announcement_id)).all()
            # Two of the three acknowledge with ✅ once they could read it.
            for client in clients:
                await wait_for_event(client, room_id, lambda e: e.event_id == event_id,
                                     timeout=30)
            for client in clients[:2]:
                await send_content(client, room_id, "m.reaction", {"m.relates_to": {
                    "rel_type": "m.annotation", "event_id": event_id, "key": "✅"}})

            async def counted() -> bool:
                await page.reload()
                return await page.inner_text("#total-acknowledged") == "2"

            for _ in range(60):
                if await counted():
                    break
                await asyncio.sleep(1)
            assert await page.inner_text("#total-acknowledged") == "2"
            row = page.locator("tr[data-department='Vertrieb'] td")
            cells = await row.all_inner_texts()
            assert cells[0] == "Vertrieb" and cells[1] == str(recipients) and cells[4] == "2"
            missing = await page.inner_text("#missing")
            assert "Ana Sánchez" in missing and "Jürgen Müller" not in missing
            await page.screenshot(path=str(shots / "console-reach.png"), full_page=True)
            csv_link = await page.get_attribute("#csv", "href")
            assert csv_link == f"/console/announcements/{announcement_id}.csv"
            # The printable proof opens in the same browser, in its language, and is audited.
            await page.click("#printable")
            await page.wait_for_load_state()
            assert "Ana Sánchez" in await page.inner_text("body")
        assert outside == []
    finally:
        await close_all(*clients)
    comms = f"console:{company.mxid('comms')}"
    rows = company.env.audit(target=f"announcement:{announcement_id}")
    assert [(r.actor, r.action) for r in rows if r.actor == comms] == [
        (comms, "announcement.send"), (comms, "announcement.report")]


async def test_it_reviews_the_pending_plan_and_applies_it(company: Company,
                                                           shots: Path) -> None:
    newcomer = company.env.person(40, cn="Łukasz Nowak", department="Lager")
    company.env.seed([newcomer])
    async with chromium_page(locale="en-GB") as (page, outside):
        await sign_in(page, company, "it")
        await page.click("nav >> text=Sync")
        await page.click("#show-plan")
        plan = await page.inner_text("#plan")
        assert "Łukasz Nowak" in plan and "Abteilung Lager" in plan
        await page.screenshot(path=str(shots / "console-plan.png"), full_page=True)
        await page.click("#apply")
        flash = await page.inner_text("#flash")
        assert re.fullmatch(r"Applied (\d+) of \1 changes, 0 failed\.", flash), flash
        assert "sync · ok" in await page.inner_text("#runs")
    assert outside == []
    assert company.env.account(company.env.mxid(newcomer))["deactivated"] is False
    (run_row,) = [r for r in company.env.audit(action="account.create")
                  if r.target == company.env.mxid(newcomer)]
    assert run_row.actor == f"console:{company.mxid('it')}"
