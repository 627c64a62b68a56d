"""`hauspost sync` against a real slapd and a real Synapse with LDAP login.

Each test seeds its own OU and has its own store; the Synapse (LDAP login on, as
`hauspost init --ldap-…` configures it) is shared by the module.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from provisioner.accounts.plan import MassDeactivationError
from provisioner.store.run_lock import run_lock
from tests.harness.ldap_seed import delete_person, modify_person, rename_person
from tests.integration.accounts_env import (  # noqa: F401 - fixtures by name
    AccountsEnv,
    env_fixture,
    ldap_synapse_fixture,
)

pytestmark = pytest.mark.timeout(600)


def _login_refused(env: AccountsEnv, user_id: str,
                  errcode: str = "M_USER_DEACTIVATED") -> None:
    """Still in LDAP: the password is right, the account is deactivated. Gone from LDAP:
    the directory knows no such person, and there is no local password either."""
    resp = env.login(user_id)
    assert resp.status_code == 403, resp.text
    assert resp.json()["errcode"] == errcode


def test_fifty_employees_become_accounts_and_log_in_with_ldap(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(50)]
    env.seed(people)

    outcome = env.sync()
    assert outcome.result.failures == []
    assert outcome.plan.problems == ()
    assert outcome.result.applied == {"create": 50}
    assert outcome.writes == 50

    for p in people:
        data = env.account(quote(env.mxid(p)))
        assert data["displayname"] == p.cn
        assert data["deactivated"] is False
        assert [t["address"] for t in data["threepids"]] == [p.mail]
        # No local password: only the directory password gets in, through the LDAP module.
        resp = env.login(env.mxid(p))
        assert resp.status_code == 200, resp.text
        assert resp.json()["user_id"] == env.mxid(p)
    assert env.login(env.mxid(people[0]), "wrong password").status_code == 403

    created = env.audit(run_id=outcome.run_id)
    assert sorted(r.target for r in created) == sorted(env.mxid(p) for p in people)
    assert {r.action for r in created} == {"account.create"}
    assert {r.actor for r in created} == {"pytest@test"}

    # The second run changes nothing: no admin-API writes, no audit rows.
    again = env.sync()
    assert again.plan.actions == ()
    assert again.writes == 0
    assert env.audit(run_id=again.run_id) == []
    assert again.run_id is not None and again.run_id != outcome.run_id


def test_rename_keeps_the_matrix_id(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(3)]
    env.seed(people)
    env.sync()
    anna = people[0]
    token = env.login(env.mxid(anna)).json()["access_token"]
    conn = env.slapd.connection()
    rename_person(conn, anna.uid, "Anna Renamed-Weber", env.ou)
    conn.unbind()

    outcome = env.sync()
    assert [(a.kind, a.user_id) for a in outcome.plan.actions] == [
        ("set_display_name", env.mxid(anna))]
    assert env.account(quote(env.mxid(anna)))["displayname"] == "Anna Renamed-Weber"
    # The same account, the same session: nothing about the identity changed.
    assert env.whoami(token).json()["user_id"] == env.mxid(anna)
    with env.synapse.admin() as c:
        users = c.get("/_synapse/admin/v2/users", params={"name": anna.uid}).json()["users"]
    assert [u["name"] for u in users] == [env.mxid(anna)]
    [row] = env.audit(run_id=outcome.run_id)
    assert (row.action, row.details["old"], row.details["new"]) == (
        "account.set_display_name", anna.cn, "Anna Renamed-Weber")


def test_disabled_and_removed_are_deactivated_and_rehire_reactivates(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(20)]
    env.seed(people)
    env.sync()
    disabled, removed = people[3], people[4]
    tokens = {p.uid: env.login(env.mxid(p)).json()["access_token"] for p in (disabled, removed)}

    conn = env.slapd.connection()
    modify_person(conn, disabled.uid, {"employeeType": ["disabled"]}, env.ou)
    delete_person(conn, removed.uid, env.ou)
    conn.unbind()

    outcome = env.sync()
    assert sorted((a.kind, a.user_id, a.reason.value) for a in outcome.plan.deactivations) == \
        sorted([("deactivate", env.mxid(disabled), "disabled"),
                ("deactivate", env.mxid(removed), "removed")])
    assert len(outcome.plan.actions) == 2
    for p in (disabled, removed):
        resp = env.whoami(tokens[p.uid])
        assert resp.status_code == 401
        assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"
        assert env.account(quote(env.mxid(p)))["deactivated"] is True
    _login_refused(env, env.mxid(disabled))
    _login_refused(env, env.mxid(removed), "M_FORBIDDEN")
    reasons = {r.target: r.reason for r in env.audit(run_id=outcome.run_id)}
    assert reasons == {env.mxid(disabled): "disabled in the directory",
                       env.mxid(removed): "no longer in the directory"}

    # Rehire: enabled again, and re-added (same employee number) after removal.
    conn = env.slapd.connection()
    modify_person(conn, disabled.uid, {"employeeType": []}, env.ou)
    conn.unbind()
    env.seed([removed])
    rehire = env.sync()
    assert sorted((a.kind, a.user_id) for a in rehire.plan.actions) == sorted(
        [("reactivate", env.mxid(disabled)), ("reactivate", env.mxid(removed))])
    for p in (disabled, removed):
        data = env.account(quote(env.mxid(p)))
        assert data["deactivated"] is False
        assert data["displayname"] == p.cn
        assert [t["address"] for t in data["threepids"]] == [p.mail]
        resp = env.login(env.mxid(p))
        assert resp.status_code == 200, resp.text
        assert resp.json()["user_id"] == env.mxid(p)
    assert env.sync().writes == 0


def _hr_env(env: AccountsEnv, rows: list[tuple[str, str]]) -> None:
    csv = env.workdir / "hr.csv"
    csv.write_text("Personalnummer;Austritt\n" + "".join(f"{e};{d}\n" for e, d in rows),
                   encoding="utf-8")
    from provisioner.directory.config import parse_directory
    from provisioner.validation import Section
    from tests.integration.accounts_env import with_settings

    directory = parse_directory(Section({
        "sources": ["ldap", "hr_csv"], "time_zone": "Europe/Berlin",
        "hr_csv": {"path": str(csv), "columns": {"employee_id": "Personalnummer",
                                                 "leave_date": "Austritt"}},
    }, file="test.yaml", path="directory"), env.workdir, has_ldap=True)
    with_settings(env, directory=directory)


def test_hr_leaver_is_offboarded_at_the_end_of_the_leave_date(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(12)]
    env.seed(people)
    leaver = people[5]
    _hr_env(env, [(leaver.employee_number or "", "2031-03-31")])
    before = datetime(2031, 3, 31, 21, 59, tzinfo=UTC)  # 23:59 in Berlin: last working day
    after = datetime(2031, 3, 31, 22, 0, tzinfo=UTC)  # midnight in Berlin

    first = env.sync(now=before)
    assert first.result.applied == {"create": 12}
    token = env.login(env.mxid(leaver)).json()["access_token"]
    assert env.sync(now=before).plan.actions == ()
    assert env.whoami(token).status_code == 200

    outcome = env.sync(now=after)
    assert [(a.kind, a.user_id, a.reason.value) for a in outcome.plan.deactivations] == [
        ("deactivate", env.mxid(leaver), "left")]
    assert len(outcome.plan.actions) == 1
    assert env.whoami(token).json()["errcode"] == "M_UNKNOWN_TOKEN"
    _login_refused(env, env.mxid(leaver))


def _active_count(env: AccountsEnv, people: list) -> int:  # type: ignore[type-arg]
    return sum(1 for p in people if not env.account(quote(env.mxid(p)))["deactivated"])


def test_guard_trips_on_an_empty_directory_and_force_overrides(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(10)]
    env.seed(people)
    env.sync()
    conn = env.slapd.connection()
    for p in people:
        delete_person(conn, p.uid, env.ou)
    conn.unbind()

    with pytest.raises(MassDeactivationError, match="the directory returned no employees"):
        env.sync()
    result = env.cli("sync")
    assert result.returncode == 5, result.stderr
    assert "refusing to deactivate 10 of 10 managed accounts" in result.stderr
    assert _active_count(env, people) == 10
    refused = env.audit(action="sync.guard_refused")
    assert len(refused) == 2 and refused[0].details == {"deactivations": 10,
                                                        "managed_active": 10}

    plan = env.cli("plan")
    assert plan.returncode == 5
    assert "would be refused" in plan.stdout

    forced = env.cli("sync", "--force", "-q")
    assert forced.returncode == 0, forced.stderr
    assert _active_count(env, people) == 0
    assert [r.action for r in env.audit(action="sync.guard_overridden")] == [
        "sync.guard_overridden"]


def test_guard_trips_on_a_thirty_percent_drop(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(20)]
    env.seed(people)
    env.sync()
    gone = people[:6]
    conn = env.slapd.connection()
    for p in gone:
        delete_person(conn, p.uid, env.ou)
    conn.unbind()

    with pytest.raises(MassDeactivationError) as exc_info:
        env.sync()
    assert exc_info.value.count == 6
    assert "refusing to deactivate 6 of 20 managed accounts (30%" in str(exc_info.value)
    assert _active_count(env, people) == 20
    assert env.audit(action="account.deactivate") == []

    outcome = env.sync(force=True)
    assert outcome.result.applied == {"deactivate": 6}
    assert _active_count(env, gone) == 0
    assert _active_count(env, people[6:]) == 14


def test_bad_entries_are_reported_and_the_rest_proceeds(env: AccountsEnv) -> None:
    good = [env.person(i) for i in range(3)]
    injected = env.person(10, uid=f"{env.prefix}*)(uid=*\\")
    no_number = env.person(11, employee_number=None)
    env.seed([*good, injected, no_number])
    conn = env.slapd.connection()
    from tests.harness.ldap_seed import add_ou, add_people
    sub = add_ou(conn, "dup", env.ou)
    dup = env.person(12, uid=good[0].uid)  # same login, another entry
    add_people(conn, [dup], sub)
    conn.unbind()

    result = env.cli("sync", "--json")
    assert result.returncode == 6, result.stderr
    data = json.loads(result.stdout)
    created = sorted(a["user_id"] for a in data["plan"]["actions"] if a["action"] == "create")
    # good[0] shares its login with another entry: neither copy gets the account.
    assert created == sorted(env.mxid(p) for p in good[1:])
    problems = {p["location"]: p["message"] for p in data["plan"]["problems"]}
    # Located by its (escaped) DN, with what is wrong.
    [bad_login] = [loc for loc in problems if loc.startswith(f"uid={env.prefix}*)(uid")]
    assert bad_login.endswith(env.ou)
    assert "contains characters not allowed in a Matrix ID" in problems[bad_login]
    assert any(f"uid={no_number.uid}" in loc for loc in problems), json.dumps(problems, indent=1)
    assert sum("duplicate login" in m for m in problems.values()) == 2, problems
    assert data["applied"] == {"create": 2}
    # The odd login matched nothing it shouldn't: no account for it, nobody else touched.
    with env.synapse.admin() as c:
        names = [u["name"] for u in c.get("/_synapse/admin/v2/users",
                                          params={"name": env.prefix, "limit": 100}
                                          ).json()["users"]]
    assert sorted(names) == created
    # A wildcard that matches exactly one person, with that person's right password, does
    # not log anyone in or create an account (matrix-synapse-ldap3 puts the login into its
    # search filter unescaped; Synapse then refuses the '*' localpart).
    wildcard = env.login(f"@{good[2].uid}*:{env.synapse.server_name}")
    assert wildcard.status_code in (400, 403), wildcard.text
    assert "access_token" not in wildcard.json()
    with env.synapse.admin() as c:
        assert c.get(f"/_synapse/admin/v2/users/{quote('@' + good[2].uid + '*:')}"
                     f"{env.synapse.server_name}").status_code in (400, 404)


def test_plan_exit_codes_and_json(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(2)]
    env.seed(people)
    pending = env.cli("plan", "--json")
    assert pending.returncode == 10, pending.stderr
    data = json.loads(pending.stdout)
    assert data["plan"]["counts"]["create"] == 2 and data["synapse_writes"] == 0
    assert env.audit() == []  # a plan writes nothing

    human = env.cli("plan")
    assert human.returncode == 10
    assert f"+ create {env.mxid(people[0])} ({people[0].cn}" in human.stdout
    assert "Counts: create 2" in human.stdout

    dry = env.cli("sync", "--dry-run")
    assert dry.returncode == 10
    assert env.audit() == []

    done = env.cli("sync", "-q")
    assert done.returncode == 0, done.stderr
    assert "Applied 2 of 2 changes" in done.stdout
    clean = env.cli("plan")
    assert clean.returncode == 0
    assert "No changes." in clean.stdout


def test_second_concurrent_sync_is_refused(env: AccountsEnv) -> None:
    env.seed([env.person(0)])
    with run_lock(env.store, "sync", holder="someone-else@ops"):
        result = env.cli("sync")
    assert result.returncode == 7
    assert "another sync run is in progress: someone-else@ops" in result.stderr
    assert env.audit() == []
    assert env.cli("sync", "-q").returncode == 0


def test_audit_command_filters_and_json(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(2)]
    env.seed(people)
    assert env.cli("sync", "-q").returncode == 0
    lines = env.cli("audit", "--json", "--action", "account.create").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted(r["target"] for r in rows) == sorted(env.mxid(p) for p in people)
    assert {r["actor"] for r in rows} == {"cli-test@test"}
    target = env.cli("audit", "--target", env.mxid(people[0]))
    assert target.returncode == 0
    assert target.stdout.count("account.create") == 1
    assert env.cli("audit", "--actor", "nobody").stdout == ""
    assert env.cli("audit", "--since", "1h", "--run", str(rows[0]["run_id"])
                   ).stdout.count("account.create") == 2
    bad = env.cli("audit", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_demo_mode_without_ldap_gives_the_initial_password(env: AccountsEnv) -> None:
    """HR export as the only source and a local initial password (demo / no-LDAP mode)."""
    from provisioner.directory.config import parse_directory
    from provisioner.sync.config import SyncSettings
    from provisioner.validation import Section
    from tests.integration.accounts_env import with_settings

    login = f"{env.prefix}-hr"
    csv = env.workdir / "staff.csv"
    csv.write_text(f"\ufeffid,login,name\n{env.prefix}-H1,{login},Hanna HR\n", encoding="utf-8")
    password_file = env.workdir / "initial_password"
    password_file.write_text("demo-initial-secret\n", encoding="utf-8")
    directory = parse_directory(Section({
        "sources": ["hr_csv"], "time_zone": "Europe/Berlin",
        "hr_csv": {"path": str(csv), "columns": {"employee_id": "id", "localpart": "login",
                                                 "display_name": "name"}},
    }, file="test.yaml", path="directory"), env.workdir, has_ldap=False)
    with_settings(env, directory=directory,
                  sync=SyncSettings(initial_password_file=password_file))

    outcome = env.sync()
    assert [(a.kind, a.user_id) for a in outcome.plan.actions] == [
        ("create", env.synapse.mxid(login))]
    [row] = env.audit(run_id=outcome.run_id)
    assert row.details["local_password"] is True
    resp = env.login(env.synapse.mxid(login), "demo-initial-secret")
    assert resp.status_code == 200, resp.text
    assert env.login(env.synapse.mxid(login), "wrong").status_code == 403
