"""LDAP and the HR export combined, keyed by employee id; SCIM added to either (`combine_scim`).

Rules (docs/directory-sources.md, "Combining LDAP and HR"):

1. LDAP gives identity: login, display name, e-mail, department, location, manager, groups.
2. HR gives status and leave date. Either side saying INACTIVE wins: an HR leaver is
   offboarded even while LDAP still lists them, and an account disabled in LDAP stays
   inactive whatever HR says.
3. In LDAP but not in HR: kept as LDAP says (`ldap_only: include`, the default, because
   HR exports lag behind new hires) or left out (`ldap_only: exclude`, HR is the list of
   who is employed; the planner then treats them as gone).
4. In HR but not in LDAP: nobody to create (no login), so ignored and logged.
5. A bad HR row leaves that employee out entirely; its problem carries the employee id,
   so the planner neither updates nor deactivates that account until the row is fixed.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from provisioner.directory.config import LdapOnlyRule
from provisioner.directory.hr_csv import HrRead
from provisioner.employee import DirectoryRead, Employee, SourceProblem, Status

logger = logging.getLogger(__name__)


def combine(ldap: DirectoryRead, hr: HrRead, *, ldap_only: LdapOnlyRule = "include"
            ) -> DirectoryRead:
    by_id = {r.employee_id: r for r in hr.records}
    bad_hr_ids = {p.employee_id for p in hr.problems if p.employee_id}
    problems: list[SourceProblem] = [*ldap.problems, *hr.problems]
    complete = ldap.complete

    employees: list[Employee] = []
    excluded = 0
    for employee in ldap.employees:
        if employee.employee_id in bad_hr_ids:
            continue
        record = by_id.get(employee.employee_id)
        if record is None:
            if ldap_only == "exclude":
                excluded += 1
                continue
            employees.append(employee)
            continue
        inactive = employee.status is Status.INACTIVE or record.status is Status.INACTIVE
        employees.append(replace(
            employee,
            status=Status.INACTIVE if inactive else Status.ACTIVE,
            leave_date=record.leave_date,
            language=employee.language or record.language,
        ))

    unidentified = sum(1 for p in hr.problems if not p.employee_id)
    if unidentified and ldap_only == "exclude":
        # A row whose id we could not read may be anyone's: with `exclude` that person
        # would look gone from HR and be deactivated.
        complete = False
        problems.append(SourceProblem(
            hr.file_name,
            f"{unidentified} rows without a readable employee id; with ldap_only: exclude "
            "nobody is deactivated in this run",
        ))

    ldap_ids = {e.employee_id for e in ldap.employees}
    hr_only = [r.employee_id for r in hr.records
               if r.employee_id not in ldap_ids and r.status is not Status.INACTIVE]
    if hr_only:
        logger.warning("%d active employees in %s are not in LDAP and get no account "
                       "(first: %s)", len(hr_only), hr.file_name, ", ".join(hr_only[:5]))
    if excluded:
        logger.info("%d LDAP entries are not in %s and are left out (ldap_only: exclude)",
                    excluded, hr.file_name)
    return DirectoryRead(employees=tuple(employees), problems=tuple(problems),
                         complete=complete, source=f"{ldap.source} + {hr.source}")


def combine_scim(base: DirectoryRead | None, scim: DirectoryRead) -> DirectoryRead:
    """The other sources' read (LDAP, HR, or both combined) plus SCIM, keyed by employee id.

    Rules (docs/directory-sources.md, "Adding SCIM"):

    1. SCIM alone is the identity source: its read as is.
    2. Listed by both: the other source gives identity (login, name, e-mail, department,
       location, manager, leave date); SCIM's groups are added to theirs, and SCIM's
       `active: false` wins (as an HR leaver does): either side saying inactive is inactive.
    3. Listed only by SCIM: kept with SCIM's identity (pushed people are employed). One whose
       login an employee of the other source already has is skipped and reported, carrying
       its employee id so the planner leaves that account alone.
    4. A SCIM user that could not be read (its problem carries the employee id) leaves that
       employee out entirely, as a bad HR row does.
    """
    if base is None:
        return scim
    by_id = {e.employee_id: e for e in scim.employees}
    bad_scim_ids = {p.employee_id for p in scim.problems if p.employee_id}
    problems: list[SourceProblem] = [*base.problems, *scim.problems]

    employees: list[Employee] = []
    for employee in base.employees:
        if employee.employee_id in bad_scim_ids:
            continue
        pushed = by_id.get(employee.employee_id)
        if pushed is None:
            employees.append(employee)
            continue
        inactive = employee.status is Status.INACTIVE or pushed.status is Status.INACTIVE
        employees.append(replace(employee, groups=employee.groups | pushed.groups,
                                 status=Status.INACTIVE if inactive else Status.ACTIVE))

    base_ids = {e.employee_id for e in base.employees} | base.skipped_employee_ids
    logins = {e.localpart for e in base.employees} | base.skipped_localparts
    for pushed in scim.employees:
        if pushed.employee_id in base_ids:
            continue
        if pushed.localpart in logins:
            problems.append(SourceProblem(
                f"scim:{pushed.employee_id}",
                f"login {pushed.localpart!r} belongs to another employee in {base.source}; "
                "skipped", employee_id=pushed.employee_id))
            continue
        employees.append(pushed)
    return DirectoryRead(employees=tuple(employees), problems=tuple(problems),
                         complete=base.complete and scim.complete,
                         source=f"{base.source} + {scim.source}")
