"""Only HR makes accounts, names and faces (issue: no login creates an account).

A real memberOf-capable slapd with the usual mess (an entry without employee number, two
entries sharing one, a login the sync rejects, a disabled new hire, a person outside the
allowed group) and a real Synapse exactly as `hauspost init` configures it — with a login
filter deliberately as wide as `user_filter`, so the LDAP bind succeeds for every one of
them and only our module stands between a correct password and a new account.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import ldap3
import pytest

from provisioner.settings import load_settings
from tests.harness.ldap_seed import (
    SeedPerson,
    add_groups,
    start_slapd_with_memberof,
)
from tests.harness.slapd_server import GROUPS_DN
from tests.harness.synapse_server import TEST_PASSWORD, start_synapse
from tests.integration.accounts_env import (
    AccountsEnv,
    ldap_login_settings,
    make_env,
    wait_for_background_updates,
)

pytestmark = pytest.mark.integration

STAFF = "Belegschaft"
LDAP_MODULE = "ldap_auth_provider.LdapAuthProviderModule"
WIDE_FILTER = "(objectClass=inetOrgPerson)"


def widen_login_filter(config: dict[str, Any]) -> None:
    """A login filter as wide as an admin might write it by hand: every entry may bind."""
    for entry in config["modules"]:
        if entry["module"] == LDAP_MODULE:
            entry["config"]["filter"] = WIDE_FILTER


def person(uid: str, number: str | None, cn: str, **extra: list[str]) -> SeedPerson:
    return SeedPerson(uid=uid, cn=cn, mail=None, employee_number=number, extra=extra)


ACTIVE = person("anna.schmidt", "E100", "Anna Schmidt")
NO_NUMBER = person("bernd.ohne", None, "Bernd Ohne")
TWIN_A = person("carla.zwilling", "E200", "Carla Zwilling")
TWIN_B = person("conrad.zwilling", "E200", "Conrad Zwilling")
BAD_LOGIN = person("dora+extern", "E300", "Dora Plus")
DISABLED_HIRE = person("emil.neu", "E400", "Emil Neu", employeeType=["disabled"])
OUTSIDER = person("fritz.fremd", "E500", "Fritz Fremd")
REFUSED = [NO_NUMBER, TWIN_A, TWIN_B, BAD_LOGIN, DISABLED_HIRE, OUTSIDER]


def admin_status(env: AccountsEnv, user_id: str) -> int:
    with env.synapse.admin() as c:
        return c.get(f"/_synapse/admin/v2/users/{quote(user_id)}").status_code


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountsEnv]:
    work = tmp_path_factory.mktemp("identity")
    slapd = start_slapd_with_memberof(work / "slapd")
    try:
        # The login module's filter is as wide as the user filter (see widen_login_filter):
        # the LDAP bind succeeds for every entry below. Only the identity module refuses.
        synapse = start_synapse(work / "synapse", ldap=ldap_login_settings(slapd, work / "keys"),
                                edit=widen_login_filter,
                                extra_config={"background_updates": {"sleep_enabled": False}})
        try:
            wait_for_background_updates(synapse)
            (work / "env").mkdir()
            for env in make_env(synapse, slapd, work / "env", ldap={
                    "group_mode": "member_of", "groups_base_dn": GROUPS_DN,
                    "allowed_groups": [STAFF]}):
                everyone = [ACTIVE, *REFUSED]
                env.seed(everyone)
                conn = slapd.connection()
                add_groups(conn, {STAFF: [p.uid for p in everyone if p is not OUTSIDER]},
                           people_dn=env.ou)
                conn.unbind()
                yield env
        finally:
            synapse.stop()
    finally:
        slapd.stop()


def test_the_sync_creates_only_the_active_employee(company: AccountsEnv) -> None:
    company.sync()
    with company.synapse.admin() as c:
        users = c.get("/_synapse/admin/v2/users", params={"limit": 1000}).json()["users"]
    assert {u["name"] for u in users} - {company.synapse.admin_user_id} == {
        company.synapse.mxid("anna.schmidt")}


@pytest.mark.parametrize("who", REFUSED, ids=[p.uid for p in REFUSED])
def test_a_correct_ldap_password_makes_no_account(company: AccountsEnv, who: SeedPerson) -> None:
    company.sync()
    # The bind itself succeeds: the wide filter admits them, the password is right.
    server = ldap3.Server(company.slapd.uri, get_info=ldap3.NONE)
    assert ldap3.Connection(server, who.dn(company.ou), TEST_PASSWORD).bind()
    user_id = company.synapse.mxid(who.uid)

    resp = company.synapse.login(who.uid)

    assert resp.status_code == 403, resp.text
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert admin_status(company, user_id) == 404


def test_the_active_employee_lands_in_the_synced_account(company: AccountsEnv) -> None:
    company.sync()
    user_id = company.synapse.mxid("anna.schmidt")
    assert admin_status(company, user_id) == 200  # made by the sync, before any login

    resp = company.synapse.login("anna.schmidt")

    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == user_id


def test_without_the_module_the_same_login_creates_an_account(
        company: AccountsEnv, tmp_path: Path) -> None:
    """The control: Synapse with the LDAP login alone makes the account the module refuses."""
    from provisioner.homeserver.module_configs import ldap_login

    settings = load_settings(company.workdir)
    assert settings.ldap is not None
    bare = start_synapse(tmp_path / "bare", ldap=settings.ldap, modules=[ldap_login(settings.ldap)],
                         edit=widen_login_filter)
    try:
        resp = bare.login(NO_NUMBER.uid)
        assert resp.status_code == 200, resp.text
        assert resp.json()["user_id"] == bare.mxid(NO_NUMBER.uid)
    finally:
        bare.stop()
