"""Accounts nobody explains, and the cron recipe that keeps syncing while the directory has
bad entries (issue "Only HR makes accounts"). Real slapd, real Synapse with LDAP login, the
real `hauspost` command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from tests.harness.ldap_seed import rename_person
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import SynapseServer
from tests.integration.accounts_env import (  # noqa: F401 - fixtures by name
    AccountsEnv,
    env_fixture,
    ldap_synapse_fixture,
    make_env,
    start_ldap_synapse,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(name="own")
def own_fixture(slapd: SlapdServer, tmp_path: Path) -> Iterator[AccountsEnv]:
    """A Synapse of this test's own: every account in it is this test's."""
    server = start_ldap_synapse(tmp_path / "own", slapd)
    (tmp_path / "env").mkdir()
    try:
        yield from make_env(server, slapd, tmp_path / "env")
    finally:
        server.stop()


def set_unexplained(env: AccountsEnv, rule: str) -> None:
    path = env.workdir / "hauspost.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["directory"]["unexplained"] = rule
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")


def deactivated(server: SynapseServer, user_id: str) -> bool:
    with server.admin() as c:
        return bool(c.get(f"/_synapse/admin/v2/users/{quote(user_id)}").json()["deactivated"])


def test_an_account_made_by_hand_is_reported_then_deactivated(own: AccountsEnv) -> None:
    own.seed([own.person(i) for i in range(10)])
    own.sync()
    handmade = own.synapse.create_user("handgemacht", displayname="Hand Gemacht")

    planned = own.cli("plan", "--json")
    assert planned.returncode == 0, planned.stderr  # reporting changes nothing
    assert json.loads(planned.stdout)["plan"]["unexplained"] == [handmade.user_id]

    set_unexplained(own, "deactivate")
    synced = own.cli("sync")

    assert synced.returncode == 0, synced.stderr
    assert f"- deactivate {handmade.user_id} (unexplained:" in synced.stdout
    assert deactivated(own.synapse, handmade.user_id)
    assert own.whoami(handmade.token).json()["errcode"] == "M_UNKNOWN_TOKEN"
    [row] = own.audit(action="account.deactivate")
    assert (row.target, row.actor, row.reason, row.details["unexplained"]) == (
        handmade.user_id, "cli-test@test",
        "no employee record, service account or bot explains this account", True)
    # The service account and the employees' accounts were never candidates.
    again = own.cli("plan", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["plan"]["unexplained"] == []


def test_thirty_percent_unexplained_trips_the_guard(own: AccountsEnv) -> None:
    own.seed([own.person(i) for i in range(10)])
    own.sync()
    handmade = [own.synapse.create_user(f"hand{i}") for i in range(3)]
    set_unexplained(own, "deactivate")

    synced = own.cli("sync")

    assert synced.returncode == 5, synced.stdout + synced.stderr
    assert not any(deactivated(own.synapse, u.user_id) for u in handmade)
    assert [r.action for r in own.audit(action="sync.guard_refused")] == ["sync.guard_refused"]


def cron_recipe() -> str:
    """The command line docs/accounts.md tells admins to put into cron, as written there."""
    text = (REPO / "docs" / "accounts.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- cron-recipe -->\n```sh\n(.+)\n```", text)
    assert match is not None, "docs/accounts.md lost its cron recipe"
    return match.group(1)


def test_the_cron_recipe_syncs_a_rename_while_a_bad_entry_stays(env: AccountsEnv) -> None:
    people = [env.person(i) for i in range(4)]
    broken = env.person(9, employee_number=None)  # no employee number: reported, skipped
    env.seed([*people, broken])
    env.sync()
    conn = env.slapd.connection()
    rename_person(conn, people[1].uid, "Jürgen Weiß-Öztürk", env.ou)
    conn.unbind()
    line = cron_recipe().replace("/var/lib/hauspost", str(env.workdir))
    bin_dir = str(Path(sys.executable).parent)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                              timeout=300, check=False,
                              env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                   "HAUSPOST_ACTOR": "cron@test"})

    first = run()
    assert first.returncode == 6, first.stdout + first.stderr  # bad entry skipped, rest applied
    assert env.account(quote(env.mxid(people[1])))["displayname"] == "Jürgen Weiß-Öztürk"
    [row] = env.audit(action="account.set_display_name")
    assert (row.actor, row.details["new"]) == ("cron@test", "Jürgen Weiß-Öztürk")

    second = run()
    assert second.returncode == 6, second.stdout + second.stderr
    assert second.stdout == ""  # -q and nothing pending: no run, no output
    assert [r.action for r in env.audit(actor="cron@test")] == ["account.set_display_name"]
