"""A small fixed set of the fault suite (issue "Holds under attack", item 5): a SIGKILL of
the sync process, of Synapse and of slapd during a sync of hires, renames and leavers,
then a restart and a re-run; the invariants in fault_env.py must hold. The long seeded
run is bench/bench_faults.py. One exact point of the room sync: the kill lands after a
join reached Synapse and before its audit row (a proxy in front of Synapse kills the
sync when Synapse's answer is in)."""

from __future__ import annotations

import json
import signal

import pytest

from provisioner.store.models import RunRow
from provisioner.store.rooms_models import RoomIntentRow
from tests.harness.kill_proxy import kill_proxy
from tests.integration.accounts_env import (  # noqa: F401 - fixtures by name
    AccountsEnv,
    env_fixture,
    ldap_synapse_fixture,
)
from tests.integration.fault_env import (
    check_invariants,
    manage_rooms,
    room_members,
    route_homeserver,
    run_iteration,
    spawn_sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.mark.parametrize(("target", "point", "seed"), [
    ("sync", "first-change", 1), ("sync", "random", 2), ("synapse", "first-change", 3),
    ("slapd", "random", 4), ("sync", "first-join", 5),
])
def test_invariants_hold_after_a_kill(env: AccountsEnv, target: str, point: str,
                                      seed: int) -> None:
    outcome = run_iteration(env, seed, target, point=point)
    assert outcome.problems == [], outcome
    assert outcome.reruns == 1, outcome


def test_a_join_killed_before_its_audit_row_is_recorded_late(env: AccountsEnv) -> None:
    """The chosen point of the room sync: `hauspost sync` is SIGKILLed right after Synapse
    answered one admin-API join and before the answer reached it, so the join is in
    Synapse and its `room.add_member` row is not in the store. The re-run records it late:
    exactly one row for that member, marked, with the killed run's id and actor."""
    staff = [env.person(i) for i in range(6)]
    env.seed(staff)
    manage_rooms(env)
    victim = env.mxid(staff[3])
    with kill_proxy(env.synapse.url) as proxy:
        route_homeserver(env, proxy.url)
        try:
            sync = spawn_sync(env)
            proxy.arm(lambda method, path, body: (
                method == "POST" and path.startswith("/_synapse/admin/v1/join/")
                and json.loads(body or b"{}").get("user_id") == victim), sync.pid)
            sync.wait(timeout=180)
        finally:
            route_homeserver(env, env.synapse.url)
    assert proxy.fired is not None and proxy.fired.status == 200, proxy.fired
    assert sync.returncode == -signal.SIGKILL
    # The kill landed between the two: Synapse has the join, the store has no row.
    assert victim in room_members(env)
    assert not env.audit(action="room.add_member", target=victim)
    with env.store.session() as s:
        (killed,) = s.query(RunRow).filter(RunRow.status == "running").all()
        assert s.query(RoomIntentRow).filter(RoomIntentRow.run_id == killed.id).count() >= 1

    rerun = env.cli("sync", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["rooms"]["recorded_late"] >= 1
    (row,) = env.audit(action="room.add_member", target=victim)
    assert (row.actor, row.run_id) == ("fault@test", killed.id)
    assert row.details["recorded_late"] is True
    assert row.details["recorded_by_run"] == json.loads(rerun.stdout)["run_id"]
    with env.store.session() as s:
        assert s.get(RunRow, killed.id).status == "interrupted"  # type: ignore[union-attr]
    assert room_members(env) == {env.mxid(p) for p in staff}
    assert check_invariants(env, staff, {}, set()) == []
