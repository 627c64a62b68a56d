"""SCIM Groups as an employee's `groups`, for the org policy's group rules (provisioner/policy).

A SCIM Group's members are SCIM User ids; each SCIM User was linked to an employee id
when it was created. The result maps employee id -> the display names of their groups,
the same shape `Employee.groups` has for directory groups, so group rules treat both alike.
"""

from __future__ import annotations

from collections import defaultdict

from scim2_models import InvalidValueException
from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioner.employee import Employee, Status
from provisioner.scim.person import person_of
from provisioner.store.service_models import ScimResourceRow


def groups_by_employee(session: Session) -> dict[str, frozenset[str]]:
    rows = session.execute(select(ScimResourceRow.id, ScimResourceRow.employee_id)
                           .where(ScimResourceRow.resource_type == "User",
                                  ScimResourceRow.employee_id.is_not(None))).all()
    employee_of = {row[0]: row[1] for row in rows}
    out: dict[str, set[str]] = defaultdict(set)
    for body in session.scalars(select(ScimResourceRow.body)
                                .where(ScimResourceRow.resource_type == "Group")):
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            continue
        for member in body.get("members") or []:
            employee_id = employee_of.get(str(member.get("value"))) if isinstance(
                member, dict) else None
            if employee_id:
                out[employee_id].add(name.strip())
    return {employee_id: frozenset(names) for employee_id, names in out.items()}


def scim_employees(session: Session) -> tuple[Employee, ...]:
    """The people SCIM manages, as directory records with their SCIM groups, so a room sync
    can treat them like employees read from the directory (union them into its read)."""
    groups = groups_by_employee(session)
    out: list[Employee] = []
    for row in session.scalars(select(ScimResourceRow).where(
            ScimResourceRow.resource_type == "User", ScimResourceRow.employee_id.is_not(None))
            .order_by(ScimResourceRow.employee_id)):
        try:
            person = person_of(row.body, employee_id=str(row.employee_id))
        except InvalidValueException:
            continue  # stored before a rule change; never served as valid
        out.append(Employee(employee_id=person.employee_id, localpart=person.localpart,
                            display_name=person.display_name, email=person.email,
                            groups=groups.get(person.employee_id, frozenset()),
                            status=Status.ACTIVE if person.active else Status.INACTIVE))
    return tuple(out)
