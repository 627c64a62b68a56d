"""SCIM 2.0 against the real service process (`python -m provisioner serve`) and a real
Synapse: RFC compliance (scim2-tester), Okta/Entra-style provisioning and offboarding,
authentication, bad input, groups."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from scim2_client import BaseSyncSCIMClient
from scim2_tester import Status, check_server

from provisioner.directory.scim_groups import groups_by_employee
from provisioner.settings import load_settings
from provisioner.store import open_store
from provisioner.store.service_models import ScimResourceRow
from tests.harness.synapse_server import SynapseServer, start_synapse
from tests.integration.service_env import (
    ERROR_SCHEMA,
    GROUP_SCHEMA,
    INITIAL_PASSWORD,
    PATCH_SCHEMA,
    ServiceProcess,
    audit_rows,
    configure_service,
    scim_user,
    settle,
    start_service,
    status_json,
    store_counts,
    wait_for,
)

#: scim2-tester results that are not a failure.
PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE, Status.SKIPPED}
#: Check title -> why its failure is expected. Empty: every check passes.
EXPLAINED_FAILURES: dict[str, str] = {}


class HttpxScimClient(BaseSyncSCIMClient):
    """scim2-client over plain httpx (its bundled engine wants the separate httpx2 package)."""

    def __init__(self, client: httpx.Client, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url, **kwargs)


class Env:
    def __init__(self, synapse: SynapseServer, service: ServiceProcess) -> None:
        self.synapse = synapse
        self.service = service
        self.data_dir = service.data_dir

    def mxid(self, localpart: str) -> str:
        return self.synapse.mxid(localpart)

    def create(self, user_name: str, **kwargs: Any) -> dict[str, Any]:
        with self.service.scim() as c:
            resp = c.post("/Users", json=scim_user(user_name, **kwargs))
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def login_token(self, user_id: str) -> str:
        """Wait until the account the service creates accepts the initial password."""
        resp = wait_for(lambda: (r := self.synapse.login(user_id, INITIAL_PASSWORD)).status_code
                        == 200 and r, timeout=30, what=f"{user_id} can log in")
        return str(resp.json()["access_token"])

    def whoami(self, token: str) -> httpx.Response:
        with self.synapse.client(token) as c:
            return c.get("/_matrix/client/v3/account/whoami")

    def joined_rooms(self, user_id: str) -> list[str]:
        with self.synapse.admin() as c:
            resp = c.get(f"/_synapse/admin/v1/users/{user_id}/joined_rooms")
        return list(resp.json().get("joined_rooms", []))

    def account(self, user_id: str) -> dict[str, Any]:
        with self.synapse.admin() as c:
            data: dict[str, Any] = c.get(f"/_synapse/admin/v2/users/{user_id}").json()
        return data

    def drained(self) -> dict[str, Any]:
        status: dict[str, Any] = wait_for(
            lambda: (s := status_json(self.data_dir))["counts"]["pending"] == 0 and s,
            timeout=180, interval=1.0, what="the job queue to drain")
        return status


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("scim")
    # No policy modules: these tests are about accounts; the modules are tested on their own.
    synapse = start_synapse(workdir, modules=[])
    try:
        service = start_service(workdir, configure_service(workdir, tick=600))
        try:
            yield Env(synapse, service)
        finally:
            assert service.stop() == 0, service.log()
    finally:
        synapse.stop()


def okta_deactivate() -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]}


# --- compliance --------------------------------------------------------------------------


def test_scim2_tester_finds_no_unexplained_failure(env: Env) -> None:
    with httpx.Client(base_url=env.service.url + "/scim/v2", timeout=30,
                      headers={"Authorization": f"Bearer {env.service.config.token}"}) as http:
        results = check_server(HttpxScimClient(http))
    counts = collections.Counter(r.status.name for r in results)
    print(f"scim2-tester: {len(results)} checks: {dict(sorted(counts.items()))}")
    failures = [(r.title, r.resource_type, r.reason) for r in results
                if r.status not in PASSING and r.title not in EXPLAINED_FAILURES]
    assert failures == []
    assert len(results) > 100  # the whole suite ran: discovery, CRUD on Users and Groups
    # Every user the tester created and deleted became an account and was offboarded again,
    # and no queued change failed.
    status = env.drained()
    assert status["counts"]["failed"] == 0, status["open"]


# --- Okta / Entra ID provisioning --------------------------------------------------------


def test_okta_patch_active_false_ends_access_and_leaves_every_room(env: Env) -> None:
    created = env.create("okta.leaver@example.com", external_id="OK-1", display_name="Okta Leaver",
                         email="okta.leaver@example.com")
    user_id = env.mxid("okta.leaver")
    token = env.login_token(user_id)
    colleague = env.synapse.create_user()
    rooms = [env.synapse.create_room(colleague, preset="public_chat") for _ in range(2)]
    for room in rooms:
        with env.synapse.client(token) as c:
            assert c.post(f"/_matrix/client/v3/join/{room}", json={}).status_code == 200
    assert sorted(env.joined_rooms(user_id)) == sorted(rooms)

    with env.service.scim() as c:
        resp = c.patch(f"/Users/{created['id']}", json=okta_deactivate())
    assert resp.status_code == 200, resp.text
    assert (resp.json()["id"], resp.json()["active"]) == (created["id"], False)

    rejected = wait_for(lambda: (r := env.whoami(token)).status_code == 401 and r, timeout=10,
                        interval=0.02, what="the token to be rejected")
    assert rejected.json()["errcode"] == "M_UNKNOWN_TOKEN"
    wait_for(lambda: env.joined_rooms(user_id) == [], timeout=30, what="leaving every room")
    # Deactivation also removed the local password, so the old one no longer logs in.
    login = env.synapse.login(user_id, INITIAL_PASSWORD)
    assert (login.status_code, login.json()["errcode"]) == (403, "M_FORBIDDEN")

    # A disabled user is still there for the client, with active: false.
    with env.service.scim() as c:
        got = c.get(f"/Users/{created['id']}")
    assert got.status_code == 200
    assert (got.json()["userName"], got.json()["active"]) == ("okta.leaver@example.com", False)

    offboards = audit_rows(env.data_dir, action="account.offboard", target=user_id)
    assert [(r["actor"], r["reason"]) for r in offboards] == [
        ("scim:okta-test", "set inactive by the SCIM client")]
    created_rows = audit_rows(env.data_dir, action="account.create", target=user_id)
    assert [r["actor"] for r in created_rows] == ["scim:okta-test"]


def test_patch_with_path_and_delete_both_offboard(env: Env) -> None:
    first = env.create("path.leaver", external_id="OK-2")
    second = env.create("deleted.leaver", external_id="OK-3")
    tokens = {name: env.login_token(env.mxid(name)) for name in ("path.leaver", "deleted.leaver")}
    with env.service.scim() as c:
        patched = c.patch(f"/Users/{first['id']}", json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "replace", "path": "active", "value": False}]})
        deleted = c.delete(f"/Users/{second['id']}")
        assert c.get(f"/Users/{second['id']}").status_code == 404
    assert (patched.status_code, patched.json()["active"], deleted.status_code) == (200, False, 204)
    for name, token in tokens.items():
        wait_for(lambda t=token: env.whoami(t).status_code == 401, timeout=10,
                 what=f"{name}'s token to be rejected")
        assert env.account(env.mxid(name))["deactivated"] is True
    reasons = {r["target"]: r["reason"] for r in audit_rows(env.data_dir, action="account.offboard")}
    assert reasons[env.mxid("path.leaver")] == "set inactive by the SCIM client"
    assert reasons[env.mxid("deleted.leaver")] == "deleted by the SCIM client"


def test_put_and_patch_change_the_display_name_through_the_apply_path(env: Env) -> None:
    created = env.create("renamed", external_id="OK-4", display_name="Before Rename")
    user_id = env.mxid("renamed")
    env.login_token(user_id)
    body = scim_user("renamed", external_id="OK-4", display_name="After Put")
    with env.service.scim() as c:
        assert c.put(f"/Users/{created['id']}", json=body).status_code == 200
    wait_for(lambda: env.account(user_id)["displayname"] == "After Put", timeout=20,
             what="the PUT display name in Synapse")
    with env.service.scim() as c:
        resp = c.patch(f"/Users/{created['id']}", json={"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "replace", "path": "displayName", "value": "After Patch"}]})
    assert (resp.status_code, resp.json()["displayName"]) == (200, "After Patch")
    wait_for(lambda: env.account(user_id)["displayname"] == "After Patch", timeout=20,
             what="the PATCH display name in Synapse")
    renames = audit_rows(env.data_dir, action="account.set_display_name", target=user_id)
    assert [(r["actor"], r["details"]["new"]) for r in renames] == [
        ("scim:okta-test", "After Put"), ("scim:okta-test", "After Patch")]


def test_filters_and_paging(env: Env) -> None:
    for i in range(3):
        env.create(f"pager{i}@example.com", external_id=f"PG-{i}")
    with env.service.scim() as c:
        by_name = c.get("/Users", params={"filter": 'userName eq "PAGER1@example.com"'}).json()
        by_external = c.get("/Users", params={"filter": 'externalId eq "PG-2"'}).json()
        pages = [c.get("/Users", params={"filter": 'userName sw "pager"', "startIndex": start,
                                         "count": 2}).json() for start in (1, 3)]
    # userName compares case-insensitively (RFC 7643 caseExact false); externalId exactly.
    assert [u["userName"] for u in by_name["Resources"]] == ["pager1@example.com"]
    assert [u["externalId"] for u in by_external["Resources"]] == ["PG-2"]
    assert [(p["totalResults"], p["startIndex"], p["itemsPerPage"]) for p in pages] == [
        (3, 1, 2), (3, 3, 1)]
    names = sorted(u["userName"] for p in pages for u in p["Resources"])
    assert names == ["pager0@example.com", "pager1@example.com", "pager2@example.com"]


def test_duplicates_are_refused_with_409(env: Env) -> None:
    env.create("dupe@example.com", external_id="DU-1")
    before = store_counts(env.data_dir)[1]
    with env.service.scim() as c:
        same_name = c.post("/Users", json=scim_user("DUPE@example.com", external_id="DU-2"))
        same_mxid = c.post("/Users", json=scim_user("dupe@other.example", external_id="DU-3"))
        same_employee = c.post("/Users", json=scim_user("dupe2", external_id="DU-1"))
    for resp in (same_name, same_mxid, same_employee):
        assert resp.status_code == 409, resp.text
        assert resp.json()["schemas"] == [ERROR_SCHEMA]
        assert resp.json()["scimType"] == "uniqueness"
    assert store_counts(env.data_dir)[1] == before  # nothing queued


# --- authentication and bad input --------------------------------------------------------


def _store_snapshot(env: Env) -> tuple[int, int, int]:
    settle(env.data_dir)  # the account changes of earlier requests are applied (and audited)
    with env.service.scim() as c:
        users = c.get("/Users", params={"count": 0}).json()["totalResults"]
    return (users, *store_counts(env.data_dir))


@pytest.mark.parametrize(("token", "scheme"), [(None, "Bearer"), ("wrong-token", "Bearer"),
                                               ("default", "Basic")],
                         ids=["missing", "wrong", "right-token-wrong-scheme"])
def test_missing_or_wrong_token_is_401_and_changes_nothing(env: Env, token: str | None,
                                                           scheme: str) -> None:
    victim = env.create(f"victim.{scheme.lower()}.{'none' if token is None else len(token)}",
                        external_id=f"BT-{scheme}-{token}")
    before = _store_snapshot(env)
    with env.service.scim(token=token, scheme=scheme) as c:
        answers = [c.get("/Users"), c.get(f"/Users/{victim['id']}"), c.get("/Schemas"),
                   c.post("/Users", json=scim_user("intruder", external_id="X-1")),
                   c.patch(f"/Users/{victim['id']}", json=okta_deactivate()),
                   c.put(f"/Users/{victim['id']}", json=scim_user("renamed.by.intruder")),
                   c.delete(f"/Users/{victim['id']}")]
    for resp in answers:
        assert resp.status_code == 401, resp.text
        assert resp.json()["schemas"] == [ERROR_SCHEMA]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert _store_snapshot(env) == before
    with env.service.scim() as c:
        still = c.get(f"/Users/{victim['id']}").json()
    assert (still["userName"], still["active"]) == (victim["userName"], True)
    assert "SCIM" in env.service.log() and "refused" in env.service.log()


HOSTILE_FILTERS = [
    'userName eq "x" or ((((',
    'userName eq "x"; DROP TABLE accounts; --',
    "userName eq x) or (1 eq 1",
    "(" * 300 + 'userName eq "x"' + ")" * 300,
    'userName eq "' + "a" * 20000,
    "userName[",
    'emails[type eq "work" and value co "@"',
    "\u0000userName eq \"x\"",
]


@pytest.mark.parametrize("hostile", HOSTILE_FILTERS, ids=range(len(HOSTILE_FILTERS)))
def test_hostile_filter_is_400_with_a_scim_error(env: Env, hostile: str) -> None:
    with env.service.scim() as c:
        resp = c.get("/Users", params={"filter": hostile})
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["schemas"] == [ERROR_SCHEMA]
    assert resp.json()["scimType"] == "invalidFilter"


def test_malformed_json_and_unknown_attributes_are_400(env: Env) -> None:
    created = env.create("kept.as.is", external_id="KA-1")
    before = _store_snapshot(env)
    with env.service.scim() as c:
        broken = c.post("/Users", content=b'{"schemas": [', headers={})
        unknown = c.post("/Users", json={**scim_user("newbie"), "favouriteColour": "red"})
        unknown_patch = c.patch(f"/Users/{created['id']}", json={
            "schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"isBoss": True}}]})
        bad_name = c.post("/Users", json=scim_user("not a login!"))
        protected = c.post("/Users", json=scim_user("hauspost", external_id="SVC"))
    expected = {"broken": (broken, "invalidSyntax"), "unknown": (unknown, "invalidSyntax"),
                "unknown_patch": (unknown_patch, "invalidValue"),
                "bad_name": (bad_name, "invalidValue"), "protected": (protected, "invalidValue")}
    got = {name: (resp.status_code, resp.json()["schemas"], resp.json().get("scimType"))
           for name, (resp, _) in expected.items()}
    assert got == {name: (400, [ERROR_SCHEMA], scim_type)
                   for name, (_, scim_type) in expected.items()}
    assert _store_snapshot(env) == before


def test_passwords_sent_by_the_client_are_never_stored(env: Env) -> None:
    body = {**scim_user("with.password", external_id="PW-1"), "password": "hunter2-from-okta"}
    with env.service.scim() as c:
        resp = c.post("/Users", json=body)
    assert resp.status_code == 201 and "password" not in resp.json()
    store = open_store(load_settings(env.data_dir).store_url)
    try:
        with store.session() as session:
            row = session.get(ScimResourceRow, resp.json()["id"])
            assert row is not None
            assert "password" not in row.body and "hunter2" not in str(row.body)
    finally:
        store.close()


# --- groups ------------------------------------------------------------------------------


def test_group_member_patch_feeds_employee_groups(env: Env) -> None:
    ann = env.create("ann.group", external_id="GR-1")
    ben = env.create("ben.group", external_id="GR-2")
    with env.service.scim() as c:
        group = c.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Sales Berlin",
                                        "members": [{"value": ann["id"]}]})
        assert group.status_code == 201, group.text
        gid = group.json()["id"]
        added = c.patch(f"/Groups/{gid}", json={"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": ben["id"]}]}]})
        removed = c.patch(f"/Groups/{gid}", json={"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'}]})
        final = c.get(f"/Groups/{gid}").json()
    assert (added.status_code, removed.status_code) == (200, 200)
    assert [m["value"] for m in final["members"]] == [ben["id"]]
    store = open_store(load_settings(env.data_dir).store_url)
    try:
        with store.session() as session:
            groups = groups_by_employee(session)
    finally:
        store.close()
    assert groups.get("GR-2") == frozenset({"Sales Berlin"})
    assert "GR-1" not in groups
    changes = [(r["details"]["members_added"], r["details"]["members_removed"])
               for r in audit_rows(env.data_dir, action="scim.group.update")
               if r["details"]["scim_id"] == gid]
    assert changes == [([ben["id"]], []), ([], [ann["id"]])]


def test_service_log_holds_no_token_and_no_filter_values(env: Env) -> None:
    log = env.service.log()
    assert env.service.config.token not in log
    assert "pager1@example.com" not in log.lower()
    assert "hunter2" not in log
