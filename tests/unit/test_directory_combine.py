"""LDAP for identity, HR for status and leave dates, keyed by employee id."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from provisioner.directory.combine import combine
from provisioner.directory.hr_csv import HrRead, HrRecord
from provisioner.employee import DirectoryRead, Employee, SourceProblem, Status


def ldap(*employees: Employee, complete: bool = True,
         problems: tuple[SourceProblem, ...] = ()) -> DirectoryRead:
    return DirectoryRead(employees=employees, problems=problems, complete=complete,
                         source="ldap:x")


def hr(*records: HrRecord, problems: tuple[SourceProblem, ...] = ()) -> HrRead:
    return HrRead(records=records, problems=problems, file_name="hr.csv", source="hr_csv:hr.csv")


ANNA = Employee("E1", "anna", "Anna Schmidt", "anna@x.test", "Sales", "Berlin", None,
                frozenset({"Sales"}))
BEN = Employee("E2", "ben", "Ben Müller")
DORA_DISABLED = Employee("E4", "dora", "Dora", status=Status.INACTIVE)


def test_identity_from_ldap_status_and_leave_date_from_hr() -> None:
    read = combine(ldap(ANNA), hr(HrRecord(2, "E1", "ignored", "HR Name", "hr@x.test", "HR",
                                           status=Status.ACTIVE, leave_date=date(2026, 6, 30))))
    assert read.employees == (Employee("E1", "anna", "Anna Schmidt", "anna@x.test", "Sales",
                                       "Berlin", None, frozenset({"Sales"}),
                                       Status.ACTIVE, date(2026, 6, 30)),)
    assert read.complete is True
    assert read.source == "ldap:x + hr_csv:hr.csv"


@pytest.mark.parametrize(("ldap_language", "hr_language", "expected"), [
    ("en", "de", "en"),    # LDAP's value wins
    (None, "de", "de"),    # HR's fills a gap
    ("tr", None, "tr"),
    (None, None, None),
])
def test_language_from_ldap_else_hr(ldap_language: str | None, hr_language: str | None,
                                    expected: str | None) -> None:
    read = combine(ldap(Employee("E2", "ben", "Ben Müller", language=ldap_language)),
                   hr(HrRecord(2, "E2", status=Status.ACTIVE, language=hr_language)))
    assert [e.language for e in read.employees] == [expected]


@pytest.mark.parametrize(("ldap_status", "hr_status", "expected"), [
    (Status.ACTIVE, Status.ACTIVE, Status.ACTIVE),
    (Status.ACTIVE, None, Status.ACTIVE),
    (Status.ACTIVE, Status.INACTIVE, Status.INACTIVE),   # HR leaver overrides LDAP
    (Status.INACTIVE, Status.ACTIVE, Status.INACTIVE),   # disabled in LDAP stays disabled
    (Status.INACTIVE, None, Status.INACTIVE),
])
def test_either_side_saying_inactive_wins(ldap_status: Status, hr_status: Status | None,
                                          expected: Status) -> None:
    employee = Employee("E1", "anna", "Anna", status=ldap_status)
    read = combine(ldap(employee), hr(HrRecord(2, "E1", status=hr_status)))
    assert [e.status for e in read.employees] == [expected]


def test_ldap_only_entries_are_included_by_default_and_excluded_on_request() -> None:
    ldap_read = ldap(ANNA, BEN)
    hr_read = hr(HrRecord(2, "E1", status=Status.ACTIVE))
    assert [e.employee_id for e in combine(ldap_read, hr_read).employees] == ["E1", "E2"]
    excluded = combine(ldap_read, hr_read, ldap_only="exclude")
    assert [e.employee_id for e in excluded.employees] == ["E1"]
    assert excluded.complete is True


def test_hr_only_entries_get_no_account_and_are_logged(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    with caplog.at_level(logging.WARNING):
        read = combine(ldap(ANNA), hr(HrRecord(2, "E1"), HrRecord(3, "E9"),
                                      HrRecord(4, "E8", status=Status.INACTIVE)))
    assert [e.employee_id for e in read.employees] == ["E1"]
    assert read.problems == ()
    assert caplog.messages == [
        "1 active employees in hr.csv are not in LDAP and get no account (first: E9)"]


def test_bad_hr_row_leaves_that_employee_out_and_protected() -> None:
    bad = SourceProblem("hr.csv:3", "bad date '31.02.2026' ...; skipped", employee_id="E2")
    read = combine(ldap(ANNA, BEN), hr(HrRecord(2, "E1"), problems=(bad,)))
    assert [e.employee_id for e in read.employees] == ["E1"]
    assert read.problems == (bad,)
    assert read.skipped_employee_ids == {"E2"}
    assert read.complete is True


def test_unidentified_bad_hr_row_blocks_deactivation_only_with_exclude() -> None:
    bad = SourceProblem("hr.csv:3", "not valid UTF-8 ...; skipped")
    ldap_read = ldap(ANNA, BEN)
    included = combine(ldap_read, hr(HrRecord(2, "E1"), problems=(bad,)))
    assert included.complete is True
    assert [e.employee_id for e in included.employees] == ["E1", "E2"]
    excluded = combine(ldap_read, hr(HrRecord(2, "E1"), problems=(bad,)), ldap_only="exclude")
    assert excluded.complete is False
    assert excluded.problems[-1] == SourceProblem(
        "hr.csv", "1 rows without a readable employee id; with ldap_only: exclude nobody is "
                  "deactivated in this run")


def test_problems_and_incompleteness_of_ldap_are_kept() -> None:
    ldap_problem = SourceProblem("uid=x,dc=t", "missing required attribute; skipped",
                                 localpart="x")
    hr_problem = SourceProblem("hr.csv:9", "bad; skipped", employee_id="E7")
    read = combine(ldap(ANNA, DORA_DISABLED, complete=False, problems=(ldap_problem,)),
                   hr(HrRecord(2, "E1"), HrRecord(3, "E4", status=Status.ACTIVE),
                      problems=(hr_problem,)))
    assert read.complete is False
    assert read.problems == (ldap_problem, hr_problem)
    assert [(e.employee_id, e.status) for e in read.employees] == [
        ("E1", Status.ACTIVE), ("E4", Status.INACTIVE)]
