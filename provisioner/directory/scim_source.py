"""`scim` as a directory source: the people an HR system pushed to `hauspost serve` over SCIM,
read from the state store (same `store.url`) as `Employee` records with their SCIM groups.

Listing `scim` in `directory.sources` makes these people part of the directory, so `sync`
never deactivates them as "no longer in the directory", and their SCIM groups reach the
org policy's group rules. How they combine with LDAP / the HR export:
`provisioner.directory.combine.combine_scim` (docs/directory-sources.md, "Adding SCIM").

The localpart is the one of the Matrix ID the SCIM user was linked to when it was created
(the account keeps it when the client later changes `userName`); the display name, e-mail
and `active` are the current SCIM values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scim2_models import InvalidValueException
from sqlalchemy import select

from provisioner.directory.duplicates import reject_duplicates
from provisioner.directory.scim_groups import groups_by_employee
from provisioner.directory.scim_person import person_of
from provisioner.employee import DirectoryRead, Employee, SourceProblem, Status
from provisioner.store import open_store
from provisioner.store.service_models import ScimResourceRow

SOURCE = "scim"


@dataclass(frozen=True)
class StoredScimUser:
    """One SCIM User row as the store holds it."""

    scim_id: str
    employee_id: str
    #: The Matrix ID the user was linked to at creation.
    user_id: str | None
    body: Mapping[str, Any]


def _linked_localpart(user_id: str | None, server_name: str) -> str | None:
    if not user_id or not user_id.startswith("@"):
        return None
    localpart, sep, server = user_id[1:].partition(":")
    return localpart if sep and server == server_name and localpart else None


def scim_directory(users: Sequence[StoredScimUser], groups: Mapping[str, frozenset[str]],
                   server_name: str) -> DirectoryRead:
    """SCIM users (+ group names by employee id) -> a `DirectoryRead` (pure).

    A stored user that no longer reads as valid is a problem carrying its employee id, so
    the planner leaves that account alone rather than deactivating it.
    """
    located: list[tuple[str, Employee]] = []
    problems: list[SourceProblem] = []
    for user in users:
        location = f"scim:Users/{user.scim_id}"
        try:
            person = person_of(dict(user.body), employee_id=user.employee_id)
        except InvalidValueException as exc:
            problems.append(SourceProblem(location, f"not readable as an employee: {exc.detail}",
                                          employee_id=user.employee_id))
            continue
        localpart = _linked_localpart(user.user_id, server_name) or person.localpart
        located.append((location, Employee(
            employee_id=person.employee_id, localpart=localpart,
            display_name=person.display_name, email=person.email,
            groups=groups.get(person.employee_id, frozenset()),
            status=Status.ACTIVE if person.active else Status.INACTIVE,
            language=person.language)))
    kept, duplicates = reject_duplicates(located, problems)
    return DirectoryRead(employees=kept, problems=(*problems, *duplicates), complete=True,
                         source=SOURCE)


def read_scim_directory(store_url: str, server_name: str) -> DirectoryRead:
    """Read the SCIM users and groups `hauspost serve` stored (the I/O around `scim_directory`)."""
    store = open_store(store_url)
    try:
        with store.session() as session:
            rows = session.execute(
                select(ScimResourceRow.id, ScimResourceRow.employee_id, ScimResourceRow.user_id,
                       ScimResourceRow.body)
                .where(ScimResourceRow.resource_type == "User",
                       ScimResourceRow.employee_id.is_not(None))
                .order_by(ScimResourceRow.employee_id)).all()
            users = [StoredScimUser(scim_id=str(r[0]), employee_id=str(r[1]),
                                    user_id=r[2], body=r[3] or {}) for r in rows]
            groups = groups_by_employee(session)
    finally:
        store.close()
    return scim_directory(users, groups, server_name)
