"""Access review against real Synapse, slapd and `hauspost serve`: a hand-made account is
unexplained, a member who joined on their own is "chosen", admins are listed; the console
page, its CSV and `hauspost review` say the same, each audited."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer
from tests.integration.console_env import Company, console_company, csrf_of

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def company(synapse: SynapseServer, slapd: SlapdServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Company]:
    yield from console_company(synapse, slapd, Path(tmp_path_factory.mktemp("review")))


def test_review_shows_unexplained_accounts_chosen_members_and_admins(company: Company) -> None:
    env = company.env
    handmade = env.synapse.mxid(f"{env.prefix}-handmade")
    with env.synapse.admin() as admin:
        admin.put(f"/_synapse/admin/v2/users/{quote(handmade)}",
                  json={"password": TEST_PASSWORD}).raise_for_status()
        sales_room = env.room_id("department/Vertrieb")
        # Ilse (IT) joins the sales room although no rule puts her there.
        admin.post(f"/_synapse/admin/v1/join/{quote(sales_room)}",
                   json={"user_id": company.mxid("it")}).raise_for_status()
        # An admin obtains a token to act as Jürgen ("login as").
        admin.post(f"/_synapse/admin/v1/users/{quote(company.mxid('plain'))}/login",
                   json={}).raise_for_status()

    auditor, signed_in = company.sign_in("auditor")
    hr, _ = company.sign_in("hr")
    with closing(auditor), closing(hr):
        assert signed_in.status_code == 303
        assert hr.get("/console/review").status_code == 403
        page = auditor.get("/console/review")
        assert "Last review: never" in page.text
        ran = auditor.post("/console/review", data={"csrf": csrf_of(page.text)})
        assert ran.status_code == 303
        page = auditor.get("/console/review")
        assert handmade in page.text
        assert env.synapse.admin_user_id in page.text
        exported = auditor.get("/console/review.csv")
    assert exported.status_code == 200
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["section", "room_id", "room_key", "room_name", "user_id", "name", "why"]
    sales = [r for r in rows if r[0] == "room" and r[2] == "department/Vertrieb"]
    assert ["room", sales_room, "department/Vertrieb", "Abteilung Vertrieb",
            company.mxid("it"), "Ilse Öztürk", "chosen"] in sales
    mandatory = {r[4] for r in sales if r[6].startswith("mandatory")}
    assert mandatory == {company.mxid(k) for k in ("plain", "leaver", "xss", "nomail")}
    assert ["unexplained_account", "", "", "", handmade, "",
            "no employee record explains it"] in rows
    assert [r[4] for r in rows if r[0] == "server_admin"] == [env.synapse.admin_user_id]
    # (The session Synapse is shared: only this company's people count here.)
    issued = [r for r in rows if r[0] == "admin_issued_token" and r[4].startswith(f"@{env.prefix}")]
    assert [(r[4], r[5]) for r in issued] == [(company.mxid("plain"), "Jürgen Müller")]
    assert issued[0][6].endswith(f"issued by {env.synapse.admin_user_id}")
    # A non-admin's token gets nothing from the module's listing.
    with env.synapse.client(env.token(company.people["hr"])) as client:
        denied = client.get("/_synapse/client/hauspost/admin_tokens")
    assert denied.status_code == 403 and denied.json()["errcode"] == "M_FORBIDDEN"

    # The command line gives the same review (a second one, stored and audited too).
    proc = env.cli("review", "--json")
    assert proc.returncode == 0, proc.stderr
    review = json.loads(proc.stdout)
    assert handmade in review["unexplained"]
    (room,) = [r for r in review["managed"] if r["key"] == "department/Vertrieb"]
    assert room["chosen"] == [company.mxid("it")] and room["missing"] == []
    assert [t["acts_as"] for t in review["admin_tokens"]
            if t["acts_as"].startswith(f"@{env.prefix}")] == [company.mxid("plain")]
    actors = [r.actor for r in env.audit(action="review.run")]
    assert actors == [f"console:{company.mxid('auditor')}", "cli-test@test"]
