"""Console access control, tried as an attacker would: against a real `hauspost serve`, a
real Synapse (the password check) and a real slapd (the roles), over plain HTTP."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.harness.ldap_seed import delete_person
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import SynapseServer
from tests.integration.console_env import Company, console_company, csrf_of
from tests.integration.service_env import wait_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def company(synapse: SynapseServer, slapd: SlapdServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Company]:
    yield from console_company(synapse, slapd, Path(tmp_path_factory.mktemp("console")))


def test_hr_signs_in_with_the_company_password_and_leaves_no_device(company: Company) -> None:
    client, response = company.sign_in("hr")
    assert response.status_code == 303, response.text
    assert response.headers["Location"] == "/console/"
    home = client.get("/console/")
    assert home.status_code == 200
    assert "Hanna Schäfer" in home.text and '<span id="roles">hr</span>' in home.text
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    with company.env.synapse.admin() as admin:
        devices = admin.get(f"/_synapse/admin/v2/users/{company.mxid('hr')}/devices").json()
    assert [d for d in devices["devices"]
            if d.get("display_name") == "Hauspost console sign-in"] == []


PAGES = ["/console/", "/console/people", "/console/people/E1", "/console/sync",
         "/console/sync/plan", "/console/announcements", "/console/announcements/1",
         "/console/announcements/1.csv"]
ACTIONS = ["/console/people/{leaver}/offboard", "/console/people/{leaver}/rehire",
           "/console/sync/apply", "/console/announcements", "/console/announcements/1/resume",
           "/console/logout"]


def _actions(company: Company) -> list[str]:
    return [a.format(leaver=company.employee_id("leaver")) for a in ACTIONS]


def _audit_count(company: Company) -> int:
    return len(company.env.audit())


def _account_active(company: Company, key: str) -> bool:
    return not company.env.account(company.mxid(key))["deactivated"]


def test_without_a_session_every_page_asks_to_sign_in_and_every_action_is_refused(
        company: Company) -> None:
    before = _audit_count(company)
    with company.browser_client() as client:
        for page in PAGES:
            response = client.get(page)
            assert response.status_code == 303, page
            assert response.headers["Location"].startswith("/console/login?next=/console/"), page
        for action in _actions(company):
            response = client.post(action, data={"reason": "x", "confirm": "yes",
                                                 "csrf": "guess"})
            assert response.status_code == 403, action
        # A made-up session id is no session either.
        client.cookies.set("hauspost_console", "A" * 43, path="/console")
        assert client.get("/console/people").status_code == 303
    assert _account_active(company, "leaver")
    assert [r for r in company.env.audit()[before:] if r.actor.startswith("console:")] == []


def test_an_employee_without_a_console_role_is_refused(company: Company) -> None:
    client, response = company.sign_in("plain")
    assert response.status_code == 403
    assert "no console role" in response.text
    assert client.get("/console/people").status_code == 303  # still not signed in
    # A wrong password gets the same answer as an unknown account.
    _, wrong = company.sign_in("hr", password="not the password")
    _, unknown = company.sign_in_as_login("nobody-here", "whatever")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong username or password." in wrong.text and "Wrong username" in unknown.text


def test_each_role_reaches_only_its_own_pages_and_actions(company: Company) -> None:
    leaver = company.employee_id("leaver")
    before = _audit_count(company)
    hr, _ = company.sign_in("hr")
    it, _ = company.sign_in("it")
    comms, _ = company.sign_in("comms")
    auditor, _ = company.sign_in("auditor")
    try:
        # HR: people yes; sync, announcing no.
        assert hr.get("/console/people").status_code == 200
        assert hr.get("/console/sync").status_code == 403
        page = hr.get("/console/")
        assert hr.post("/console/sync/apply", data={"csrf": csrf_of(page.text),
                                                    "fingerprint": "x"}).status_code == 403
        assert hr.post("/console/announcements", data={
            "csrf": csrf_of(page.text), "targets": "all", "body": "hi",
            "do": "send"}).status_code == 403
        # IT: sync and people yes; offboarding is HR's decision.
        assert it.get("/console/sync").status_code == 200
        page = it.get(f"/console/people/{leaver}")
        assert page.status_code == 200 and 'id="offboard"' not in page.text
        assert it.post(f"/console/people/{leaver}/offboard", data={
            "csrf": csrf_of(page.text), "reason": "it tries", "confirm": "yes"}
        ).status_code == 403
        # Comms: announcements yes; people and sync no.
        assert comms.get("/console/announcements").status_code == 200
        assert comms.get("/console/people").status_code == 403
        assert comms.get("/console/sync").status_code == 403
        # Auditor: reach pages yes, sending no.
        page = auditor.get("/console/announcements")
        assert page.status_code == 200 and 'id="compose"' not in page.text
        assert auditor.post("/console/announcements", data={
            "csrf": csrf_of(page.text), "targets": "all", "body": "hi", "do": "send"}
        ).status_code == 403
        assert auditor.get("/console/people").status_code == 403
    finally:
        for client in (hr, it, comms, auditor):
            client.close()
    assert _account_active(company, "leaver")
    rows = company.env.audit()[before:]
    # (The service's own announcement tick may audit its bot; nothing by a console user.)
    assert {r.action for r in rows if r.actor.startswith("console:")} == {"console.sign_in"}
    assert [r for r in rows if r.target in (company.mxid("leaver"), leaver)] == []


def test_a_missing_or_wrong_csrf_token_or_a_foreign_origin_changes_nothing(
        company: Company) -> None:
    leaver = company.employee_id("leaver")
    before = _audit_count(company)
    hr, _ = company.sign_in("hr")
    with closing(hr):
        page = hr.get(f"/console/people/{leaver}")
        token = csrf_of(page.text)
        form = {"reason": "left", "confirm": "yes"}
        assert hr.post(f"/console/people/{leaver}/offboard", data=form).status_code == 403
        assert hr.post(f"/console/people/{leaver}/offboard",
                       data={**form, "csrf": token[:-2] + "xx"}).status_code == 403
        foreign = hr.post(f"/console/people/{leaver}/offboard", data={**form, "csrf": token},
                          headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert "expired" in foreign.text
        # Another user's token is no good either.
        it, _ = company.sign_in("it")
        with closing(it):
            other = csrf_of(it.get("/console/").text)
        assert hr.post(f"/console/people/{leaver}/offboard",
                       data={**form, "csrf": other}).status_code == 403
    assert _account_active(company, "leaver")
    rows = company.env.audit()[before:]
    assert [r.action for r in rows if r.actor.startswith("console:")] == ["console.sign_in"] * 2
    assert [r for r in rows if r.target in (company.mxid("leaver"), leaver)] == []


def test_a_copied_cookie_stops_working_at_sign_out(company: Company) -> None:
    hr, _ = company.sign_in("hr")
    stolen = hr.cookies.get("hauspost_console")
    assert stolen
    page = hr.get("/console/")
    assert hr.post("/console/logout", data={"csrf": csrf_of(page.text)}).status_code == 303
    with company.browser_client() as thief:
        thief.cookies.set("hauspost_console", stolen, path="/console")
        response = thief.get("/console/people")
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/console/login")
    hr.close()
    rows = company.env.audit(actor=f"console:{company.mxid('hr')}", action="console.sign_out")
    assert len(rows) >= 1


def test_pages_forbid_framing_and_outside_resources(company: Company) -> None:
    hr, _ = company.sign_in("hr")
    with closing(hr):
        response = hr.get("/console/people")
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
        assert "http://" not in response.text and "https://" not in response.text
        css = hr.get("/console/static/console.css")
        assert css.status_code == 200 and "url(" not in css.text and "@import" not in css.text
        # The login page's `next` never leads outside the console.
        form = hr.get("/console/login?next=//evil.example/x")
        assert form.status_code == 303 and form.headers["Location"] == "/console/"


def test_script_in_a_display_name_is_shown_as_text(company: Company) -> None:
    hr, _ = company.sign_in("hr")
    with closing(hr):
        found = hr.get("/console/people", params={"q": "Böse"})
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Böse" in found.text
        assert "<script>" not in found.text
        page = hr.get(f"/console/people/{company.employee_id('xss')}")
        assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_search_finds_umlauts_accents_and_non_latin_names(company: Company) -> None:
    hr, _ = company.sign_in("hr")
    with closing(hr):
        def names(query: str) -> list[str]:
            page = hr.get("/console/people", params={"q": query}).text
            return re.findall(r'<a href="/console/people/[^"]+">([^<]+)</a>', page)

        assert names("muller") == ["Jürgen Müller"]
        assert names("MÜLLER") == ["Jürgen Müller"]
        assert names("orsted") == names("zoe") == names("ØRSTED") == ["Zoë Ørsted"]
        assert names("李") == ["李 明"]
        assert names("vertrieb ana") == ["Ana Sánchez"]
        assert company.employee_id("li") in hr.get(
            "/console/people", params={"q": company.employee_id("li")}).text


def test_guessing_a_password_is_stopped_after_five_tries(company: Company) -> None:
    for _ in range(5):
        _, response = company.sign_in("nomail", password="guess")
        assert response.status_code == 401
    _, blocked = company.sign_in("nomail")  # even the right password now waits
    assert blocked.status_code == 429
    assert "Too many attempts. Try again in 15 minutes." in blocked.text
    # Others behind the same address still get in (an office shares one NAT address).
    client, other = company.sign_in("auditor")
    client.close()
    assert other.status_code == 303


def test_an_offboarded_admin_is_out_of_the_console_at_once(company: Company) -> None:
    it2, signed_in = company.sign_in("it2")
    assert signed_in.status_code == 303
    assert it2.get("/console/sync").status_code == 200
    hr, _ = company.sign_in("hr")
    with closing(hr), closing(it2):
        target = company.employee_id("it2")
        page = hr.get(f"/console/people/{target}?confirm=offboard")
        assert 'id="offboard-confirm"' in page.text
        done = hr.post(f"/console/people/{target}/offboard", data={
            "csrf": csrf_of(page.text), "reason": "Vertrag beendet", "confirm": "yes"})
        assert done.status_code == 303
        result = hr.get(done.headers["Location"])
        assert re.search(r"Access ended in \d+ ms\.", result.text), result.text
        response = it2.get("/console/sync")
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/console/login")
        again = it2.post("/console/sync/apply", data={"csrf": "x"})
        assert again.status_code == 403
    assert company.env.account(company.mxid("it2"))["deactivated"] is True
    (row,) = company.env.audit(action="account.offboard", target=company.mxid("it2"))
    assert row.actor == f"console:{company.mxid('hr')}" and row.reason == "Vertrag beendet"


def test_hr_rehires_a_person_offboarded_by_mistake(company: Company) -> None:
    target = company.employee_id("li")
    hr, _ = company.sign_in("hr")
    with closing(hr):
        page = hr.get(f"/console/people/{target}?confirm=offboard")
        hr.post(f"/console/people/{target}/offboard", data={
            "csrf": csrf_of(page.text), "reason": "Verwechslung", "confirm": "yes"})
        assert company.env.account(company.mxid("li"))["deactivated"] is True
        page = hr.get(f"/console/people/{target}")
        assert 'id="rehire"' in page.text and "offboarded by hand" in page.text
        done = hr.post(f"/console/people/{target}/rehire", data={
            "csrf": csrf_of(page.text), "reason": "Offboarding war ein Versehen"})
        assert done.status_code == 303
        flash = hr.get(done.headers["Location"]).text
        assert re.search(r"Hold lifted; job \d+ reactivates the account\.", flash)
        wait_for(lambda: not company.env.account(company.mxid("li"))["deactivated"],
                 timeout=60, what="the reconcile job to reactivate the account")
        # A second rehire has nothing to lift.
        page = hr.get(f"/console/people/{target}")
        assert 'id="rehire"' not in page.text
        again = hr.post(f"/console/people/{target}/rehire", data={"csrf": csrf_of(page.text)})
        assert "is not held by an offboarding" in hr.get(again.headers["Location"]).text
    li = company.mxid("li")
    # The worker writes its audit row right after Synapse confirmed the reactivation.
    (reactivated,) = wait_for(lambda: company.env.audit(target=li, action="account.reactivate"),
                              timeout=30, what="the reactivation's audit row")
    assert reactivated.actor == f"console:{company.mxid('hr')}"  # the job keeps its actor
    rows = [(r.actor, r.action) for r in company.env.audit(target=li)]
    hr_actor = f"console:{company.mxid('hr')}"
    assert (hr_actor, "account.offboard") in rows and (hr_actor, "account.rehire") in rows
    assert company.env.login(li).status_code == 200


def test_comms_attaches_a_file_within_the_media_policy_and_a_program_is_refused(
        company: Company) -> None:
    from provisioner.store.announcement_models import AnnouncementPostRow, AnnouncementRow

    def announcements() -> list[int]:
        with company.env.store.session() as s:
            return list(s.scalars(select(AnnouncementRow.id)))

    before = announcements()
    comms, _ = company.sign_in("comms")
    with closing(comms):
        page = comms.get("/console/announcements")
        assert 'id="attachment"' in page.text and "at most 50 MB" in page.text
        form = {"csrf": csrf_of(page.text), "targets": "department:Recht",
                "body": "Neue Datenschutzrichtlinie im Anhang", "do": "send"}
        refused = comms.post("/console/announcements", data=form, files={
            "attachment": ("setup.exe", b"MZ\x90\x00harmless", "application/octet-stream")})
        assert refused.status_code == 400
        assert "attachment setup.exe: files of type application/" in refused.text
        assert announcements() == before
        sent = comms.post("/console/announcements", data=form, files={
            "attachment": ("Richtlinie.pdf", b"%PDF-1.4\n%hauspost\n", "application/pdf")})
        assert sent.status_code == 303, sent.text[:2000]
    (new,) = [a for a in announcements() if a not in before]
    with company.env.store.session() as s:
        kinds = sorted(s.scalars(select(AnnouncementPostRow.kind).where(
            AnnouncementPostRow.announcement_id == new)))
    assert kinds == ["attachment", "text"]


def _encrypted_events(company: Company, room_id: str) -> list[str]:
    with company.env.synapse.admin() as admin:
        chunk = admin.get(f"/_synapse/admin/v1/rooms/{room_id}/messages",
                          params={"dir": "b", "limit": 1000}).json()["chunk"]
    return [e["event_id"] for e in chunk if e["type"] == "m.room.encrypted"]


def test_comms_sees_an_interrupted_announcement_and_finishes_it_without_a_second_post(
        company: Company) -> None:
    """An announcement whose `announce` died after its post reached Synapse (here: its
    post row and status taken back in the store, its lock naming a process that is gone)
    is shown as interrupted; sending it again is refused (409); the auditor may not finish
    it, comms does: the post is found in the room, recorded, and nothing posted again."""
    from provisioner.announcements.sending_state import lock_name
    from provisioner.store.announcement_models import AnnouncementPostRow, AnnouncementRow
    from provisioner.store.models import RunLockRow

    comms, _ = company.sign_in("comms")
    auditor, _ = company.sign_in("auditor")
    with closing(comms), closing(auditor):
        page = comms.get("/console/announcements")
        form = {"csrf": csrf_of(page.text), "targets": "department:Recht",
                "body": f"Umzug ins neue Büro {company.env.prefix}", "do": "send"}
        sent = comms.post("/console/announcements", data=form)
        assert sent.status_code == 303, sent.text[:2000]
        announcement_id = int(sent.headers["Location"].rsplit("/", 1)[1])
        with company.env.store.session() as s:
            (post,) = s.scalars(select(AnnouncementPostRow).where(
                AnnouncementPostRow.announcement_id == announcement_id)).all()
            event_id, room_id = post.event_id, post.room_id
        posted_before = _encrypted_events(company, room_id)
        assert event_id in posted_before
        with company.env.store.session() as s:
            post = s.get(AnnouncementPostRow, post.id)
            s.delete(post)
            s.get(AnnouncementRow, announcement_id).status = "sending"  # type: ignore[union-attr]
            s.add(RunLockRow(name=lock_name(announcement_id), holder="console:comms",
                             host=socket.gethostname(), pid=2 ** 22 + 17,
                             acquired_at=datetime.now(UTC)))
        listing = comms.get("/console/announcements")
        assert ('<td class="status-interrupted">interrupted</td>' in listing.text), listing.text
        again = comms.post("/console/announcements", data={**form,
                                                           "csrf": csrf_of(listing.text)})
        assert again.status_code == 409
        assert f"hauspost announce --resume {announcement_id}" in again.text
        reach = auditor.get(f"/console/announcements/{announcement_id}")
        assert 'id="unfinished"' in reach.text and "interrupted while sending" in reach.text
        assert 'id="resume"' not in reach.text
        assert auditor.post(f"/console/announcements/{announcement_id}/resume",
                            data={"csrf": csrf_of(reach.text)}).status_code == 403
        reach = comms.get(f"/console/announcements/{announcement_id}")
        assert 'id="resume"' in reach.text
        done = comms.post(f"/console/announcements/{announcement_id}/resume",
                          data={"csrf": csrf_of(reach.text)})
        assert done.status_code == 303, done.text[:2000]
        assert 'id="unfinished"' not in comms.get(done.headers["Location"]).text
    with company.env.store.session() as s:
        row = s.get(AnnouncementRow, announcement_id)
        assert row is not None and row.status == "sent"
        posts = [(p.room_id, p.event_id) for p in s.scalars(select(AnnouncementPostRow).where(
            AnnouncementPostRow.announcement_id == announcement_id))]
    assert posts == [(room_id, event_id)]
    assert _encrypted_events(company, room_id) == posted_before  # nothing posted again
    (resumed,) = [r for r in company.env.audit(action="announcement.resume")
                  if r.target == f"announcement:{announcement_id}"]
    assert resumed.actor.startswith("console:")
    assert [f["event_id"] for f in resumed.details["found"]] == [event_id]


def test_sync_apply_holds_to_the_reviewed_plan_and_the_guard(company: Company) -> None:
    """Runs last in this module: it takes two people out of the directory."""
    from provisioner.store.models import RunRow

    def runs() -> int:
        with company.env.store.session() as s:
            return len(list(s.scalars(select(RunRow.id))))

    conn = company.env.slapd.connection()
    try:
        for key in ("plain", "nomail"):
            delete_person(conn, company.people[key].uid, company.env.ou)
    finally:
        conn.unbind()
    it, _ = company.sign_in("it")
    with closing(it):
        plan = it.get("/console/sync/plan")
        assert plan.status_code == 200
        fingerprint = re.search(r'name="fingerprint" value="([0-9a-f]{64})"', plan.text)
        assert fingerprint is not None
        assert "deactivate 2" in plan.text  # the guard trips: 2 of 10 is over 10 %
        before = runs()
        stale = it.post("/console/sync/apply", data={
            "csrf": csrf_of(plan.text), "fingerprint": "0" * 64, "confirmation": "deactivate 2"})
        assert "The plan changed since you reviewed it" in stale.text
        wrong = it.post("/console/sync/apply", data={
            "csrf": csrf_of(plan.text), "fingerprint": fingerprint.group(1),
            "confirmation": "deactivate all"})
        assert "the mass-deactivation guard tripped" in wrong.text
        assert runs() == before
        assert not company.env.account(company.mxid("plain"))["deactivated"]
        forced = it.post("/console/sync/apply", data={
            "csrf": csrf_of(plan.text), "fingerprint": fingerprint.group(1),
            "confirmation": "deactivate 2"})
        assert forced.status_code == 303
    assert company.env.account(company.mxid("plain"))["deactivated"] is True
    assert company.env.account(company.mxid("nomail"))["deactivated"] is True
    (run,) = [r for r in company.env.audit(action="account.deactivate")
              if r.target == company.mxid("plain")]
    assert run.actor == f"console:{company.mxid('it')}"
