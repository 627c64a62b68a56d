"""SCIM Groups as an employee's `groups`, for the org policy's group rules (provisioner/policy).

A SCIM Group's members are SCIM User ids; each SCIM User was linked to an employee id
when it was created. The result maps employee id -> the display names of their groups,
the same shape `Employee.groups` has for directory groups, so group rules treat both alike.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

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
