"""Targets resolve to exactly the people they name; unknown targets are errors."""

from __future__ import annotations

import pytest

from provisioner.announcements.targets import (
    Person,
    Target,
    TargetError,
    check_room_id,
    parse_target,
    people_from_employees,
    resolve,
)
from provisioner.employee import Employee, Status

EMPLOYEES = [
    Employee("1", "anna", "Anna", department="Sales", location="Berlin",
             groups=frozenset({"team-leads"})),
    Employee("2", "ben", "Ben", department="Sales", location="Hamburg", manager_id="1"),
    Employee("3", "cara", "Cara", department="IT", location="Berlin", manager_id="1"),
    Employee("4", "dora", "Dora", department="IT", location="Berlin", status=Status.INACTIVE),
    Employee("5", "emil", "Emil", department="IT", location="Berlin"),  # no account
]
LINKS = {"1": "@anna:x", "2": "@ben:x", "3": "@cara:x", "4": "@dora:x"}
PEOPLE = people_from_employees(EMPLOYEES, LINKS)


def ids(people: list[Person]) -> list[str]:
    return [p.user_id for p in people]


def test_only_active_employees_with_an_account_are_people() -> None:
    assert ids(PEOPLE) == ["@anna:x", "@ben:x", "@cara:x"]


@pytest.mark.parametrize(("targets", "expected"), [
    (["all"], ["@anna:x", "@ben:x", "@cara:x"]),
    (["department:Sales"], ["@anna:x", "@ben:x"]),
    (["location:Berlin"], ["@anna:x", "@cara:x"]),
    (["group:team-leads"], ["@anna:x"]),
    (["person:3"], ["@cara:x"]),
    (["person:@ben:x"], ["@ben:x"]),
    (["person:anna"], ["@anna:x"]),
    (["department:IT", "person:ben", "person:2"], ["@ben:x", "@cara:x"]),
])
def test_targets_resolve_to_exactly_these_people(targets: list[str], expected: list[str]) -> None:
    assert ids(resolve([parse_target(t) for t in targets], PEOPLE)) == expected


@pytest.mark.parametrize(("target", "message"), [
    ("department:sales", "unknown target department:sales: no active employee has this "
                         "department (known: IT, Sales)"),
    ("location:Paris", "(known: Berlin, Hamburg)"),
    ("group:nobody", "(known: team-leads)"),
    ("person:dora", "unknown target person:dora: no active employee with an account"),
    ("person:emil", "unknown target person:emil"),
])
def test_unknown_targets_are_errors(target: str, message: str) -> None:
    with pytest.raises(TargetError) as info:
        resolve([parse_target(target)], PEOPLE)
    assert message in str(info.value)


def test_one_unknown_target_among_good_ones_refuses_all() -> None:
    with pytest.raises(TargetError, match="department:Nope"):
        resolve([Target("all"), parse_target("department:Nope")], PEOPLE)


@pytest.mark.parametrize("text", ["", "everyone", "department:", "team:Sales", "person: "])
def test_malformed_targets_are_errors(text: str) -> None:
    with pytest.raises(TargetError, match="expected all, department:<name>"):
        parse_target(text)


def test_no_target_is_an_error() -> None:
    with pytest.raises(TargetError, match="no target given"):
        resolve([], PEOPLE)


def test_all_with_nobody_is_an_error() -> None:
    with pytest.raises(TargetError, match="no active employees"):
        resolve([Target("all")], [])


def test_room_ids_are_checked() -> None:
    assert check_room_id("!abc") == "!abc"
    with pytest.raises(TargetError, match="expected a room id"):
        check_room_id("#alias:x")
