"""`hauspost offboard` against a real Synapse with LDAP login and a real slapd."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from tests.harness.ldap_seed import SeedPerson, modify_person
from tests.harness.synapse_server import TestUser
from tests.integration.accounts_env import (  # noqa: F401 - fixtures by name
    AccountsEnv,
    env_fixture,
    ldap_synapse_fixture,
)

pytestmark = pytest.mark.timeout(600)


def _user(env: AccountsEnv, person: SeedPerson) -> TestUser:
    resp = env.login(env.mxid(person))
    assert resp.status_code == 200, resp.text
    data = resp.json()
    return TestUser(user_id=data["user_id"], password="", token=data["access_token"],
                    device_id=data["device_id"])


def _joined_rooms(env: AccountsEnv, user_id: str) -> list[str]:
    with env.synapse.admin() as c:
        rooms: list[str] = c.get(f"/_synapse/admin/v1/users/{quote(user_id)}/joined_rooms"
                                 ).json()["joined_rooms"]
    return rooms


def _seed_and_sync(env: AccountsEnv, n: int = 12) -> list[SeedPerson]:
    people = [env.person(i) for i in range(n)]
    env.seed(people)
    assert env.sync().result.applied == {"create": n}
    return people


def test_offboard_ends_sessions_and_memberships_at_once(env: AccountsEnv) -> None:
    people = _seed_and_sync(env)
    anna, bob = people[0], people[1]
    phone, laptop = _user(env, anna), _user(env, anna)
    host = _user(env, bob)
    rooms = []
    for name in ("Team", "Project"):
        room_id = env.synapse.create_room(host, name=name, invite=[env.mxid(anna)])
        assert env.synapse.join(phone, room_id).status_code == 200
        rooms.append(room_id)
    assert sorted(_joined_rooms(env, env.mxid(anna))) == sorted(rooms)

    result = env.cli("offboard", anna.employee_number or "", "--reason", "left 2026-11-30")
    assert result.returncode == 0, result.stderr
    assert re.search(rf"Offboarded {re.escape(env.mxid(anna))} \(employee "
                     rf"{re.escape(anna.employee_number or '')}\): access ended in "
                     r"\d+\.\d{3} s", result.stdout), result.stdout
    assert re.search(r"left every room; took \d+\.\d{3} s in total\.", result.stdout)

    for device in (phone, laptop):
        resp = env.whoami(device.token)
        assert resp.status_code == 401
        assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert _joined_rooms(env, env.mxid(anna)) == []
    for room_id in rooms:
        membership = [e["content"]["membership"] for e in env.synapse.room_state(room_id)
                      if e["type"] == "m.room.member" and e["state_key"] == env.mxid(anna)]
        assert membership == ["leave"]
    # The LDAP password is still right, but the account is closed.
    resp = env.login(env.mxid(anna))
    assert resp.status_code == 403 and resp.json()["errcode"] == "M_USER_DEACTIVATED"
    # Bob is untouched.
    assert env.whoami(host.token).status_code == 200

    [row] = env.audit(action="account.offboard")
    assert (row.target, row.reason, row.actor, row.run_id) == (
        env.mxid(anna), "left 2026-11-30", "cli-test@test", None)
    assert row.details["employee_id"] == anna.employee_number
    assert row.details["erase"] is False


def test_sync_does_not_bring_back_an_offboarded_person(env: AccountsEnv) -> None:
    people = _seed_and_sync(env)
    anna = people[0]
    assert env.cli("offboard", env.mxid(anna)).returncode == 0

    # LDAP still lists Anna as active: the next syncs must not reactivate her.
    for _ in range(2):
        outcome = env.sync()
        assert outcome.plan.actions == ()
        assert outcome.writes == 0
        assert any("offboarded by hand" in n for n in outcome.plan.notes)
    assert env.account(quote(env.mxid(anna)))["deactivated"] is True
    assert env.login(env.mxid(anna)).json()["errcode"] == "M_USER_DEACTIVATED"

    # HR catches up (disabled in LDAP): the hold is released ...
    conn = env.slapd.connection()
    modify_person(conn, anna.uid, {"employeeType": ["disabled"]}, env.ou)
    conn.unbind()
    released = env.sync()
    assert [(a.kind, a.user_id) for a in released.plan.actions] == [
        ("release_hold", env.mxid(anna))]
    assert released.writes == 0

    # ... so a later rehire reactivates the same account.
    conn = env.slapd.connection()
    modify_person(conn, anna.uid, {"employeeType": []}, env.ou)
    conn.unbind()
    rehire = env.sync()
    assert [(a.kind, a.user_id) for a in rehire.plan.actions] == [
        ("reactivate", env.mxid(anna))]
    assert env.login(env.mxid(anna)).status_code == 200


def test_offboard_refuses_protected_unknown_and_foreign_accounts(env: AccountsEnv) -> None:
    _seed_and_sync(env, 2)
    admin = env.synapse.create_user(env.synapse.unique("itadmin"), admin=True)
    cases = {
        env.synapse.admin_user_id: "protected account",
        admin.user_id: "Synapse server admin",
        "E-does-not-exist": "no account is linked to employee 'E-does-not-exist'",
        f"@nobody-{env.prefix}:{env.synapse.server_name}": "does not exist",
        "@someone:elsewhere.example": "is not an account of hauspost.test",
    }
    for target, message in cases.items():
        result = env.cli("offboard", target)
        assert result.returncode == 3, (target, result.stdout, result.stderr)
        assert message in result.stderr, (target, result.stderr)
    assert env.whoami(env.synapse.admin_token).status_code == 200
    assert env.whoami(admin.token).status_code == 200
    assert env.audit(action="account.offboard") == []


def test_offboard_with_erase_removes_the_profile(env: AccountsEnv) -> None:
    people = _seed_and_sync(env, 2)
    anna = people[0]
    token = _user(env, anna).token
    result = env.cli("offboard", env.mxid(anna), "--erase", "--json", "--reason", "GDPR")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["user_id"] == env.mxid(anna)
    assert data["rooms_remaining"] == []
    assert data["access_ended_seconds"] <= data["total_seconds"]
    account = env.account(quote(env.mxid(anna)))
    assert account["deactivated"] is True
    assert account["erased"] is True
    assert account["displayname"] is None
    assert env.whoami(token).json()["errcode"] == "M_UNKNOWN_TOKEN"
    [row] = env.audit(action="account.offboard")
    assert row.details["erase"] is True and row.reason == "GDPR"


def test_offboard_of_an_already_deactivated_account_says_so(env: AccountsEnv) -> None:
    people = _seed_and_sync(env, 2)
    assert env.cli("offboard", env.mxid(people[0])).returncode == 0
    again = env.cli("offboard", env.mxid(people[0]))
    assert again.returncode == 0
    assert "was already deactivated" in again.stdout
    assert len(env.audit(action="account.offboard")) == 2
