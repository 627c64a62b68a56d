"""A change that reached Synapse but not the store (the run died in between) is applied and
audited again by the next run, found by comparing Synapse with what the store recorded."""

from __future__ import annotations

import pytest

from provisioner.accounts.plan import (
    Deactivate,
    DeactivationReason,
    Link,
    UpdateDisplayName,
    build_plan,
)
from provisioner.employee import DirectoryRead, Status
from tests.unit.test_planner import NOW, POLICY, acct, emp, uid

pytestmark = pytest.mark.unit


def test_a_rename_synapse_has_but_the_store_does_not_is_planned_again() -> None:
    directory = DirectoryRead([emp("1", "anna", "Anna Müller-Groß")])
    link = Link("1", uid("anna"), display_name="Anna Müller")
    plan = build_plan(directory, [link], [acct("anna", "Anna Müller-Groß")], POLICY, NOW)
    assert plan.actions == (
        UpdateDisplayName("1", uid("anna"), "Anna Müller", "Anna Müller-Groß"),)


def test_a_recorded_rename_is_not_planned_again() -> None:
    directory = DirectoryRead([emp("1", "anna", "Anna Müller-Groß")])
    link = Link("1", uid("anna"), display_name="Anna Müller-Groß")
    assert build_plan(directory, [link], [acct("anna", "Anna Müller-Groß")], POLICY,
                      NOW).actions == ()


def test_an_adopted_account_without_a_recorded_name_is_left_alone() -> None:
    directory = DirectoryRead([emp("1", "anna", "Anna")])
    assert build_plan(directory, [Link("1", uid("anna"))], [acct("anna", "Anna")], POLICY,
                      NOW).actions == ()


def test_a_deactivation_synapse_has_but_the_store_does_not_is_planned_again() -> None:
    directory = DirectoryRead([emp("1", "anna", status=Status.INACTIVE)])
    recorded_active = Link("1", uid("anna"), active=True)
    plan = build_plan(directory, [recorded_active], [acct("anna", deactivated=True)],
                      POLICY, NOW)
    assert plan.actions == (Deactivate("1", uid("anna"), DeactivationReason.DISABLED),)
    recorded = Link("1", uid("anna"), active=False)
    assert build_plan(directory, [recorded], [acct("anna", deactivated=True)], POLICY,
                      NOW).actions == ()
