"""A small fixed set of the fault suite for PostgreSQL and `hauspost serve` (issue "Holds
under attack", item 5): SIGKILLs during SCIM jobs, the service's directory and room sync,
and offboardings; a restart; the invariants of service_fault_env.py must hold. The long
seeded run is bench/bench_faults.py."""

from __future__ import annotations

import pytest

from tests.integration.accounts_env import ldap_synapse_fixture  # noqa: F401 - fixture
from tests.integration.service_fault_env import (  # noqa: F401 - fixtures by name
    ServiceFaultEnv,
    durable_postgres_fixture,
    fenv_fixture,
    run_service_iteration,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.mark.parametrize(("target", "phase", "point", "seed"), [
    ("serve", "scim", "accepted", 11),
    ("postgres", "scim", "first-change", 12),
    ("serve", "sync", "first-change", 13),
    ("postgres", "offboard", "random", 16),
])
def test_invariants_hold_after_a_kill(fenv: ServiceFaultEnv, target: str, phase: str,
                                      point: str, seed: int) -> None:
    outcome = run_service_iteration(fenv, seed, target, phase, point=point)
    assert outcome.problems == [], outcome
