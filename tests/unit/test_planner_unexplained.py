"""Accounts nobody explains: reported by every plan, deactivated only when the policy says so
and then only through the guard (issue "Only HR makes accounts")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.accounts.plan import (
    Account,
    DeactivateUnexplained,
    DeactivationReason,
    Link,
    MassDeactivationError,
    build_plan,
    check_guard,
)
from provisioner.employee import DirectoryRead, Employee, SourceProblem, Status
from tests.unit.test_planner import NOW, POLICY, SERVICE, acct, emp, uid

pytestmark = pytest.mark.unit

DEACTIVATE = replace(POLICY, unexplained="deactivate")


def staff(n: int) -> tuple[list[Employee], list[Link], list[Account]]:
    employees = [emp(f"E{i}", f"staff{i}") for i in range(n)]
    links = [Link(f"E{i}", uid(f"staff{i}")) for i in range(n)]
    accounts = [acct(f"staff{i}") for i in range(n)]
    return employees, links, accounts


def test_an_account_made_by_hand_is_reported_and_left_alone_by_default() -> None:
    employees, links, accounts = staff(3)
    plan = build_plan(DirectoryRead(employees), links,
                      [*accounts, acct("handmade"), acct("old", deactivated=True),
                       acct("root", admin=True), acct("hauspost")], POLICY, NOW)

    assert plan.unexplained == (uid("handmade"),)
    assert plan.actions == ()
    assert plan.to_json()["unexplained"] == [uid("handmade")]


def test_with_deactivate_the_unexplained_account_is_deactivated() -> None:
    employees, links, accounts = staff(20)
    plan = build_plan(DirectoryRead(employees), links, [*accounts, acct("handmade")],
                      DEACTIVATE, NOW)

    assert plan.actions == (
        DeactivateUnexplained("", uid("handmade"), DeactivationReason.UNEXPLAINED),)
    assert plan.deactivations == plan.actions  # counted by the guard like any deactivation


def test_explained_accounts_are_never_unexplained() -> None:
    """Linked, created or adopted now, protected, a skipped entry's, an ambiguous claim's."""
    directory = DirectoryRead(
        [emp("E1", "linked"), emp("E2", "adopted"), emp("E3", "twin"), emp("E4", "twin")],
        problems=(SourceProblem("uid=broken,ou=people", "no employee number", localpart="broken"),))
    accounts = [acct("linked"), acct("adopted"), acct("twin"), acct("broken"), acct("boss")]
    plan = build_plan(directory, [Link("E1", uid("linked"))], accounts, DEACTIVATE, NOW)

    assert plan.unexplained == ()
    assert SERVICE not in plan.unexplained


def test_a_disabled_new_hire_with_an_account_from_an_old_login_is_unexplained() -> None:
    directory = DirectoryRead([emp("E9", "emil.neu", status=Status.INACTIVE)])
    plan = build_plan(directory, [], [acct("emil.neu")], DEACTIVATE, NOW)

    assert plan.unexplained == (uid("emil.neu"),)
    assert [a.user_id for a in plan.deactivations] == [uid("emil.neu")]


def test_an_incomplete_read_or_an_anonymous_bad_entry_withholds_the_deactivation() -> None:
    employees, links, accounts = staff(20)
    partial = build_plan(DirectoryRead(employees, complete=False), links,
                         [*accounts, acct("handmade")], DEACTIVATE, NOW)
    anonymous = build_plan(DirectoryRead(employees, problems=(SourceProblem("row 7", "bad"),)),
                           links, [*accounts, acct("handmade")], DEACTIVATE, NOW)

    for plan in (partial, anonymous):
        assert plan.unexplained == (uid("handmade"),)
        assert plan.deactivations == ()
        assert plan.withheld_deactivations == 1


def test_thirty_percent_unexplained_trips_the_guard() -> None:
    employees, links, accounts = staff(10)
    extra = [acct(f"hand{i}") for i in range(3)]
    plan = build_plan(DirectoryRead(employees), links, [*accounts, *extra], DEACTIVATE, NOW)

    assert len(plan.deactivations) == 3
    with pytest.raises(MassDeactivationError):
        check_guard(plan, DEACTIVATE.guard, force=False)
    check_guard(plan, DEACTIVATE.guard, force=True)  # --force overrides, as for leavers
