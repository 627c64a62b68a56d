"""What each SCIM change does to the Matrix account: exactly these jobs, no others."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.directory.scim_person import ScimPerson
from provisioner.scim.effects import user_effects

UID = "@ann:example.com"
ANN = ScimPerson("E1", "ann", "Ann", "ann@example.com", True)
OFF = replace(ANN, active=False)


def _summary(old: ScimPerson | None, new: ScimPerson | None) -> list[tuple[str, str, object]]:
    return [(j.kind, j.reason, (j.payload or {}).get("reactivate")) for j in
            user_effects(old, new, UID)]


@pytest.mark.parametrize(("old", "new", "expected"), [
    (None, ANN, [("reconcile", "created by the SCIM client", True)]),
    (None, OFF, []),
    (ANN, OFF, [("offboard", "set inactive by the SCIM client", None)]),
    (OFF, ANN, [("reconcile", "set active again by the SCIM client", True)]),
    (ANN, replace(ANN, display_name="Ann B"),
     [("reconcile", "profile changed by the SCIM client", False)]),
    (ANN, replace(ANN, email=None), [("reconcile", "profile changed by the SCIM client", False)]),
    (ANN, ANN, []),
    # The Matrix ID never follows a userName change: nothing for Synapse to do.
    (ANN, replace(ANN, localpart="ann.b"), []),
    (OFF, replace(OFF, display_name="Renamed while gone"), []),
    (ANN, None, [("offboard", "deleted by the SCIM client", None)]),
    (OFF, None, []),
], ids=["create", "create-inactive", "deactivate", "reactivate", "rename", "email", "no-op",
        "username-change", "rename-while-inactive", "delete", "delete-inactive"])
def test_effects(old: ScimPerson | None, new: ScimPerson | None,
                 expected: list[tuple[str, str, object]]) -> None:
    assert _summary(old, new) == expected


def test_offboard_jobs_are_deduplicated_per_account() -> None:
    (job,) = user_effects(ANN, OFF, UID)
    assert (job.target, job.dedupe_key, job.payload) == (UID, f"offboard:{UID}", {"user_id": UID})


def test_reconcile_carries_the_fixed_matrix_id() -> None:
    (job,) = user_effects(None, ANN, UID)
    assert job.payload == {"employee_id": "E1", "localpart": "ann", "display_name": "Ann",
                           "email": "ann@example.com", "active": True, "user_id": UID,
                           "reactivate": True, "language": None}
