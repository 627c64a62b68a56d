"""Membership rules over an employee's directory attributes.

    all                                   every active employee
    {department: Sales}                   one value or a list of values
    {location: [Berlin, Hamburg]}
    {group: teamleads}                    member of an LDAP group
    {all_of: [rule, ...]} / {any_of: [rule, ...]} / {not: rule}

Values compare case-insensitively (LDAP compares these attributes that way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from provisioner.employee import Employee

ATTRIBUTES = ("department", "location", "group")
COMBINATORS = ("all_of", "any_of", "not")


class Rule(Protocol):
    def matches(self, employee: Employee) -> bool: ...

    def describe(self) -> str: ...


def attribute_values(employee: Employee, attribute: str) -> frozenset[str]:
    """The employee's values of a rule attribute, spelled as the directory has them."""
    if attribute == "group":
        return employee.groups
    value = employee.department if attribute == "department" else employee.location
    return frozenset({value}) if value else frozenset()


def employee_values(employee: Employee, attribute: str) -> frozenset[str]:
    """The employee's values of a rule attribute, case-folded."""
    return frozenset(v.casefold() for v in attribute_values(employee, attribute))


@dataclass(frozen=True)
class Everyone:
    def matches(self, employee: Employee) -> bool:
        return True

    def describe(self) -> str:
        return "all employees"


@dataclass(frozen=True)
class AttributeIs:
    attribute: str
    #: Case-folded.
    values: frozenset[str]

    def matches(self, employee: Employee) -> bool:
        return not self.values.isdisjoint(employee_values(employee, self.attribute))

    def describe(self) -> str:
        return f"{self.attribute} {' or '.join(sorted(self.values))}"


@dataclass(frozen=True)
class AllOf:
    rules: tuple[Rule, ...]

    def matches(self, employee: Employee) -> bool:
        return all(r.matches(employee) for r in self.rules)

    def describe(self) -> str:
        return "(" + " and ".join(r.describe() for r in self.rules) + ")"


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]

    def matches(self, employee: Employee) -> bool:
        return any(r.matches(employee) for r in self.rules)

    def describe(self) -> str:
        return "(" + " or ".join(r.describe() for r in self.rules) + ")"


@dataclass(frozen=True)
class Not:
    rule: Rule

    def matches(self, employee: Employee) -> bool:
        return not self.rule.matches(employee)

    def describe(self) -> str:
        return f"not {self.rule.describe()}"
