"""Rule matching over employee attributes, table-driven."""

from __future__ import annotations

import pytest

from provisioner.employee import Employee
from provisioner.policy import parse_texts
from provisioner.policy.rules import Rule

ANNA = Employee("1", "anna", "Anna", department="Sales", location="Berlin",
                groups=frozenset({"Teamleads", "projekt-x"}))
BEN = Employee("2", "ben", "Ben", department="IT", location="Köln")
NOBODY = Employee("3", "carl", "Carl")  # no department, location or group


def rule(text: str) -> Rule:
    return parse_texts({"p.yaml": f"rooms:\n  - key: a\n    name: A\n    members: {text}\n"}
                       ).rooms[0].members


@pytest.mark.parametrize(("text", "who"), [
    ("all", {"anna", "ben", "carl"}),
    ("{department: Sales}", {"anna"}),
    ("{department: sales}", {"anna"}),  # case-insensitive, like LDAP
    ("{department: [IT, Sales]}", {"anna", "ben"}),
    ("{location: KÖLN}", {"ben"}),
    ("{group: teamleads}", {"anna"}),
    ("{group: projekt}", set()),  # whole names only
    ("{not: {department: Sales}}", {"ben", "carl"}),
    ("{all_of: [{department: Sales}, {location: Berlin}]}", {"anna"}),
    ("{all_of: [{department: Sales}, {location: Köln}]}", set()),
    ("{any_of: [{department: Sales}, {location: Köln}]}", {"anna", "ben"}),
    ("{all_of: [{group: teamleads}, {not: {department: Sales}}]}", set()),
    ("{not: {any_of: [{department: IT}, {group: teamleads}]}}", {"carl"}),
])
def test_rule_matches_exactly(text: str, who: set[str]) -> None:
    r = rule(text)
    assert {e.localpart for e in (ANNA, BEN, NOBODY) if r.matches(e)} == who


def test_describe_reads_like_the_rule() -> None:
    assert rule("{all_of: [{department: Sales}, {not: {location: [Köln, Berlin]}}]}"
                ).describe() == "(department sales and not location berlin or köln)"
