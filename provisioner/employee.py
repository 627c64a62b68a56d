"""The one typed employee record every directory source produces."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date


class Status(enum.Enum):
    ACTIVE = "active"
    #: Disabled in the directory, or marked as left by HR.
    INACTIVE = "inactive"


@dataclass(frozen=True)
class Employee:
    #: Immutable id from the source of truth (HR number, LDAP entryUUID, AD objectGUID).
    employee_id: str
    #: The Matrix localpart; taken once at creation and never changed afterwards.
    localpart: str
    display_name: str
    email: str | None = None
    department: str | None = None
    location: str | None = None
    #: employee_id of the manager, if known.
    manager_id: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    status: Status = Status.ACTIVE
    #: Last working day; offboarded at the end of this day in the company's time zone.
    leave_date: date | None = None
    #: Preferred language as a primary subtag ("de", "en"), if the directory has one.
    language: str | None = None


@dataclass(frozen=True)
class SourceProblem:
    """One bad entry or row, reported with its location and skipped."""

    location: str  # e.g. "employees.csv:14" or "uid=x,ou=people,dc=example,dc=com"
    message: str
    #: Who the skipped entry belongs to, when the source could tell. The planner must
    #: leave those accounts alone: neither update nor deactivate them because of a bad row.
    employee_id: str | None = None
    localpart: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class DirectoryRead:
    """The result of reading one or more directory sources.

    `complete` is False when the read failed part-way (connection lost, size limit): the
    planner must then never deactivate anyone, only create and update.
    """

    employees: tuple[Employee, ...]
    problems: tuple[SourceProblem, ...] = ()
    complete: bool = True
    source: str = ""

    @property
    def skipped_employee_ids(self) -> frozenset[str]:
        """Employee ids of skipped entries: their accounts must be left as they are."""
        return frozenset(p.employee_id for p in self.problems if p.employee_id)

    @property
    def skipped_localparts(self) -> frozenset[str]:
        """Localparts of skipped entries: their accounts must be left as they are."""
        return frozenset(p.localpart for p in self.problems if p.localpart)


@dataclass(frozen=True)
class Link:
    """A stored employee <-> account link and what we last applied to it."""

    employee_id: str
    user_id: str
    email: str | None = None
    #: Offboarded by hand: stays deactivated until the directory also marks them gone.
    hold: bool = False
    #: What hauspost last applied, as the store recorded it (None: not recorded). A change
    #: that reached Synapse but not the store (the process died in between) shows up as a
    #: difference here, so the next run applies and audits it again.
    display_name: str | None = None
    active: bool = True
