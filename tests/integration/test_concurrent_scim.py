"""A SCIM PATCH and a `hauspost sync` at the same moment (issue "Holds under attack", item 6):
serialised or refused with a clear message, never interleaved into a wrong state. Real
`hauspost serve` (SCIM, store on PostgreSQL), Synapse with LDAP login, slapd; the directory
is LDAP + SCIM, so the sync plans the same people the SCIM jobs change."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from tests.integration.accounts_env import ldap_synapse_fixture  # noqa: F401 - fixture
from tests.integration.service_fault_env import (  # noqa: F401 - fixtures by name
    HAUSPOST,
    Expectation,
    Request,
    ServiceFaultEnv,
    check_service_invariants,
    durable_postgres_fixture,
    fenv_fixture,
    send_request,
    settle,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_scim_patch_and_create_during_a_sync_are_serialised(fenv: ServiceFaultEnv) -> None:
    env = fenv.env
    staff = [env.person(i) for i in range(30)]
    env.seed(staff)
    fenv.start()
    earlier = [f"{env.prefix}-s{i}" for i in range(3)]
    for name in earlier:
        send_request(fenv, request := Request("create", name))
        assert request.ok, request.answer
    assert settle(fenv) == []
    # The sync has work on everyone (30 new LDAP accounts, room joins) while SCIM deactivates
    # one earlier user, creates two and the worker applies them.
    requests = [Request("deactivate", earlier[0]), Request("create", f"{env.prefix}-n0"),
                Request("create", f"{env.prefix}-n1")]
    go = threading.Barrier(2)

    def send() -> None:
        go.wait()
        for request in requests:
            send_request(fenv, request)

    sender = threading.Thread(target=send)
    sender.start()
    go.wait()
    sync = subprocess.run([HAUSPOST, "-q", "sync", "-d", str(env.workdir)],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "HAUSPOST_ACTOR": "sync@test"})
    sender.join(60)

    assert all(r.ok for r in requests), [r.answer for r in requests]
    assert sync.returncode in (0, 7), sync.stderr
    if sync.returncode == 7:  # refused while a SCIM job held the lock: says who and why
        assert "another sync run is in progress: scim:okta-test" in sync.stderr, sync.stderr
    assert settle(fenv) == []
    again = env.cli("sync", "-q")  # the operator runs the refused sync again
    assert again.returncode == 0, again.stderr
    fenv.scim_active.update(earlier[1:], [f"{env.prefix}-n0", f"{env.prefix}-n1"])
    fenv.scim_inactive.add(earlier[0])
    problems = check_service_invariants(
        fenv, Expectation(ldap_active=staff, ldap_leavers=[], renames={}))
    assert problems == []
