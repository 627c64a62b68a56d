"""Two things at the same moment are serialised or refused, never interleaved into a wrong
state (issue "Holds under attack", item 6): two `hauspost sync` processes started together,
and a `hauspost offboard` while a sync of 120 people is running. Real slapd, Synapse and
command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.harness.ldap_seed import rename_person
from tests.integration.accounts_env import (  # noqa: F401 - fixtures by name
    AccountsEnv,
    env_fixture,
    ldap_synapse_fixture,
)

pytestmark = pytest.mark.integration

HAUSPOST = str(Path(sys.executable).parent / "hauspost")


def spawn(env: AccountsEnv, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([HAUSPOST, "-q", args[0], "-d", str(env.workdir), *args[1:]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HAUSPOST_ACTOR": f"{args[0]}@test"})


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=300)
    return proc.returncode, err


def active_accounts(env: AccountsEnv) -> set[str]:
    with env.synapse.admin() as c:
        users = c.get("/_synapse/admin/v2/users",
                      params={"limit": 10000, "name": env.prefix}).json()["users"]
    return {u["name"] for u in users if not u["deactivated"]}


def test_two_syncs_at_once_one_runs_one_is_refused(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(40)]
    env.seed(people)

    first, second = spawn(env, "sync"), spawn(env, "sync")
    results = sorted([finish(first), finish(second)])

    codes = [code for code, _ in results]
    assert codes in ([0, 7], [0, 0]), results  # refused, or the second found nothing to do
    if codes == [0, 7]:
        assert "another sync run is in progress" in results[1][1]
    creates = env.audit(action="account.create")
    assert sorted(r.target for r in creates) == sorted(env.mxid(p) for p in people)
    assert active_accounts(env) == {env.mxid(p) for p in people}
    assert env.cli("plan").returncode == 0  # nothing left over, nothing doubled


def test_an_offboarding_during_a_sync_sticks(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(120)]
    env.seed(people)
    assert env.cli("sync", "-q").returncode == 0
    leaver = people[77]
    # Renames for everyone: the second sync has work on every account, the leaver's too.
    conn = env.slapd.connection()
    try:
        for person in people:
            rename_person(conn, person.uid, f"{person.cn} (neu)", env.ou)
    finally:
        conn.unbind()

    sync = spawn(env, "sync")
    offboarded = subprocess.run([HAUSPOST, "offboard", "-d", str(env.workdir),
                                 env.mxid(leaver), "--reason", "fristlos", "--no-wait"],
                                capture_output=True, text=True, timeout=120, check=False,
                                env={**os.environ, "HAUSPOST_ACTOR": "hr@test"})
    sync_code, sync_err = finish(sync)

    assert offboarded.returncode == 0, offboarded.stderr
    assert sync_code in (0, 1), sync_err  # 1: the rename of the leaver may fail; never more
    with env.synapse.admin() as c:
        assert c.get(f"/_synapse/admin/v2/users/{quote(env.mxid(leaver))}"
                     ).json()["deactivated"] is True
    assert active_accounts(env) == {env.mxid(p) for p in people} - {env.mxid(leaver)}
    # The hand-made offboarding holds: the next sync does not bring the leaver back.
    again = env.cli("sync", "-q")
    assert again.returncode == 0, again.stderr
    assert env.mxid(leaver) not in active_accounts(env)
    assert [r.target for r in env.audit(action="account.offboard")] == [env.mxid(leaver)]
    assert env.audit(action="account.reactivate") == []
