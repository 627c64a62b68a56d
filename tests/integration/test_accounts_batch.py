"""The batched account path (synapse_modules.accounts_batch) on a real Synapse configured as
`hauspost init --ldap-…` writes it (every policy module, identity included).

Only the service account may use it; every entry is judged on its own; and a sync through
it leaves exactly what a sync through the admin API leaves: the same accounts in Synapse,
the same links, display names, e-mails and audit rows in the store.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from provisioner.homeserver.module_configs import default_modules
from provisioner.homeserver.synapse_process import SynapseStartError
from provisioner.store import repository as repo
from provisioner.sync.run import run_sync
from synapse_modules.accounts_batch import BATCH_PATH
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import SynapseServer, start_synapse
from tests.integration.accounts_env import (
    AccountsEnv,
    ldap_login_settings,
    make_env,
    wait_for_background_updates,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(slapd: SlapdServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[SynapseServer]:
    work = tmp_path_factory.mktemp("batch")
    synapse = start_synapse(work / "synapse", ldap=ldap_login_settings(slapd, work / "keys"),
                            extra_config={"background_updates": {"sleep_enabled": False}})
    try:
        wait_for_background_updates(synapse)
        yield synapse
    finally:
        synapse.stop()


def post_batch(server: SynapseServer, token: str | None,
               accounts: list[dict[str, Any]]) -> Any:
    with server.client(token) as c:
        return c.post(BATCH_PATH, json={"accounts": accounts})


def exists(server: SynapseServer, localpart: str) -> bool:
    with server.admin() as c:
        resp = c.get(f"/_synapse/admin/v2/users/{quote(server.mxid(localpart))}")
        return resp.status_code == 200


def entry(localpart: str, **kw: Any) -> dict[str, Any]:
    return {"localpart": localpart, "display_name": kw.pop("display_name", localpart.title()),
            "email": kw.pop("email", f"{localpart}@hauspost.test"), **kw}


def test_nobody_but_the_service_account_creates_accounts(server: SynapseServer) -> None:
    user = server.create_user()
    other_admin = server.create_user(admin=True)
    lp = server.unique("refused")

    unauthenticated = post_batch(server, None, [entry(lp)])
    as_user = post_batch(server, user.token, [entry(lp)])
    as_other_admin = post_batch(server, other_admin.token, [entry(lp)])
    with server.client(user.token) as c:
        probe = c.get(BATCH_PATH)

    assert unauthenticated.status_code == 401, unauthenticated.text
    assert as_user.status_code == 403, as_user.text
    assert as_other_admin.status_code == 403, as_other_admin.text
    assert as_user.json()["errcode"] == "M_FORBIDDEN"
    assert probe.status_code == 403
    assert not exists(server, lp)


def test_every_entry_is_judged_and_the_rest_created(server: SynapseServer) -> None:
    taken = server.create_user().user_id[1:].partition(":")[0]
    good1, good2, dup = (server.unique("gut"), server.unique("gut"), server.unique("dup"))
    batch = [entry(good1, display_name="Grete Gut"), entry("Bad Name"), entry(dup),
             entry(dup, display_name="Second"), entry(taken), entry(good2, email=None),
             entry(server.unique("mail"), email="not an address"),
             entry(server.unique("name"), display_name=""), "not an object"]

    resp = post_batch(server, server.admin_token, batch)

    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r.get("error") is None for r in results] == [
        True, False, True, False, False, True, False, False, False]
    assert results[0] == {"user_id": server.mxid(good1)}
    assert "lower-case" in results[1]["error"]
    assert results[3]["error"] == "duplicate localpart in this batch"
    assert results[4] == {"user_id": server.mxid(taken), "error": "User ID already taken.",
                          "errcode": "M_USER_IN_USE"}
    assert "email" in results[6]["error"]
    assert "display_name" in results[7]["error"]
    assert results[8]["error"] == "an entry must be an object"
    with server.admin() as c:
        grete = c.get(f"/_synapse/admin/v2/users/{quote(server.mxid(good1))}").json()
        second = c.get(f"/_synapse/admin/v2/users/{quote(server.mxid(good2))}").json()
        duplicate = c.get(f"/_synapse/admin/v2/users/{quote(server.mxid(dup))}").json()
    assert grete["displayname"] == "Grete Gut"
    assert [(t["medium"], t["address"]) for t in grete["threepids"]] == [
        ("email", f"{good1}@hauspost.test")]
    assert second["threepids"] == []
    assert duplicate["displayname"] == dup.title()  # the first entry, not the duplicate
    assert not exists(server, "bad name".replace(" ", ""))


def _normalise(value: Any, prefix: str) -> Any:
    """Replace a company's prefix and IDs so two companies' records compare."""
    text = repr(value).replace(prefix, "PREFIX")
    return re.sub(r"'(?:E)?PREFIX-E?\d+'", "'ID'", text)


ACCOUNT_FIELDS = ("admin", "deactivated", "locked", "shadow_banned", "user_type", "is_guest",
                  "approved", "erased", "appservice_id", "consent_version", "external_ids",
                  "suspended")


def _company(env: AccountsEnv, *, batched: bool) -> dict[str, Any]:
    people = [env.person(n) for n in range(6)]
    env.seed(people)
    outcome = asyncio.run(run_sync(env.settings, env.synapse.admin_token, actor="pytest@test",
                                   progress=False, store=env.store, batched_accounts=batched))
    assert not outcome.result.failures, outcome.result.failures
    accounts = {}
    with env.synapse.admin() as c:
        for p in people:
            data = c.get(f"/_synapse/admin/v2/users/{quote(env.mxid(p))}").json()
            accounts[p.uid] = {
                **{k: data.get(k) for k in ACCOUNT_FIELDS},
                "displayname": data["displayname"],
                "threepids": [(t["medium"], t["address"]) for t in data["threepids"]],
                "has_password": env.login(env.mxid(p), "wrong").json()["errcode"]}
    with env.store.session() as s:
        links = [{k: getattr(lk, k) for k in ("user_id", "employee_id", "display_name",
                                              "email", "active", "hold")}
                 for lk in repo.load_links(s)]
    audit = [(a.actor, a.action, a.target, a.reason, a.details)
             for a in env.audit(run_id=outcome.run_id)]
    return {"writes": outcome.writes, "created": outcome.result.applied["create"],
            "accounts": _normalise(accounts, env.prefix),
            "links": _normalise(sorted(links, key=lambda x: x["user_id"]), env.prefix),
            "audit": _normalise(sorted(audit, key=lambda a: a[2]), env.prefix)}


def test_the_batched_sync_leaves_what_the_admin_api_sync_leaves(
        server: SynapseServer, slapd: SlapdServer, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for admin_env in make_env(server, slapd, tmp_path / "a"):
        by_admin_api = _company(admin_env, batched=False)
    for batch_env in make_env(server, slapd, tmp_path / "b"):
        batched = _company(batch_env, batched=True)

    assert by_admin_api["created"] == batched["created"] == 6
    assert by_admin_api["writes"] == 6  # one PUT per account
    assert batched["writes"] == 1  # one request for all six
    assert batched["accounts"] == by_admin_api["accounts"]
    assert batched["links"] == by_admin_api["links"]
    assert batched["audit"] == by_admin_api["audit"]
    assert "account.create" in batched["audit"]


def test_a_misconfigured_module_stops_synapse(tmp_path: Path) -> None:
    modules = default_modules("hauspost.test", "@hauspost:hauspost.test", None)
    for module in modules:
        if module.module.endswith("AccountsBatch"):
            module.config["provisioner_users"] = []
    with pytest.raises(SynapseStartError) as err:
        start_synapse(tmp_path, modules=modules)
    assert "provisioner_users: expected at least one Matrix ID (the service account)" \
        in str(err.value)
