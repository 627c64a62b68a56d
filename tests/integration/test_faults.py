"""A small fixed set of the fault suite (issue "Holds under attack", item 5): a SIGKILL of
the sync process, of Synapse and of slapd during a sync of hires, renames and leavers,
then a restart and a re-run; the invariants in fault_env.py must hold. The long seeded
run is bench/bench_faults.py."""

from __future__ import annotations

import pytest

from tests.integration.accounts_env import (  # noqa: F401 - fixtures by name
    AccountsEnv,
    env_fixture,
    ldap_synapse_fixture,
)
from tests.integration.fault_env import run_iteration

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.mark.parametrize(("target", "point", "seed"), [
    ("sync", "first-change", 1), ("sync", "random", 2), ("synapse", "first-change", 3),
    ("slapd", "random", 4),
])
def test_invariants_hold_after_a_kill(env: AccountsEnv, target: str, point: str,
                                      seed: int) -> None:
    outcome = run_iteration(env, seed, target, point=point)
    assert outcome.problems == [], outcome
    assert outcome.reruns == 1, outcome
