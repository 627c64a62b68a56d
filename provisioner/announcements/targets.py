"""Who an announcement is for, and which room(s) it goes into.

A target is `all`, `department:<name>`, `location:<name>`, `group:<name>` or
`person:<employee id | @user:server | localpart>`; several targets are a union. Targets
are resolved against the people the provisioner manages: directory records (department,
location, groups, manager) joined with the stored employee <-> account links, active only.

Rooms come from a `RoomSource`: `ExplicitRoom` (a room id given on the command line),
`org_rooms.OrgRooms` (the org policy's read-only rooms, issue 6's managed rooms) or
`NewRoomPerAnnouncement` (the bot creates an encrypted, read-only room with exactly the
recipients).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select

from provisioner.employee import Employee, Status
from provisioner.errors import HauspostError
from provisioner.store import Store
from provisioner.store.models import AccountRow

_KINDS = ("department", "location", "group", "person")


class TargetError(HauspostError):
    """An unknown or malformed target: nothing was sent."""

    exit_code = 2


@dataclass(frozen=True)
class Person:
    user_id: str
    employee_id: str
    display_name: str
    localpart: str
    department: str | None = None
    location: str | None = None
    groups: frozenset[str] = frozenset()
    manager_id: str | None = None


@dataclass(frozen=True)
class Target:
    kind: str  # all | department | location | group | person
    value: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "all" else f"{self.kind}:{self.value}"


def parse_target(text: str) -> Target:
    """`all` or `<kind>:<value>`; raises TargetError naming what was wrong."""
    raw = text.strip()
    if raw == "all":
        return Target("all")
    kind, sep, value = raw.partition(":")
    if not sep or kind not in _KINDS or not value.strip():
        raise TargetError(f"target {text!r}: expected all, department:<name>, location:<name>, "
                          "group:<name> or person:<employee id, @user:server or login>")
    return Target(kind, value.strip())


def people_from_employees(employees: Iterable[Employee], links: dict[str, str]) -> list[Person]:
    """Active employees with a linked account (employee_id -> user_id in `links`)."""
    out: list[Person] = []
    for emp in employees:
        user_id = links.get(emp.employee_id)
        if user_id is None or emp.status is not Status.ACTIVE:
            continue
        out.append(Person(user_id=user_id, employee_id=emp.employee_id,
                          display_name=emp.display_name, localpart=emp.localpart,
                          department=emp.department, location=emp.location,
                          groups=emp.groups, manager_id=emp.manager_id))
    return out


def active_links(store: Store) -> dict[str, str]:
    """employee_id -> user_id for every active linked account in the store."""
    with store.session() as session:
        rows = session.execute(select(AccountRow.employee_id, AccountRow.user_id)
                               .where(AccountRow.active.is_(True))).all()
    return {r[0]: r[1] for r in rows}


def _matches(person: Person, target: Target) -> bool:
    if target.kind == "all":
        return True
    if target.kind == "department":
        return person.department == target.value
    if target.kind == "location":
        return person.location == target.value
    if target.kind == "group":
        return target.value in person.groups
    return target.value in (person.employee_id, person.user_id, person.localpart)


def _known(people: Sequence[Person], kind: str) -> list[str]:
    values: set[str] = set()
    for p in people:
        if kind == "department" and p.department:
            values.add(p.department)
        elif kind == "location" and p.location:
            values.add(p.location)
        elif kind == "group":
            values |= p.groups
    return sorted(values)


def resolve(targets: Sequence[Target], people: Sequence[Person]) -> list[Person]:
    """The union of everyone each target names, sorted by user id.

    Every target must name at least one active employee with an account: a typo in a
    department must never mean "nobody" silently.
    """
    if not targets:
        raise TargetError("no target given: use --to all or e.g. --to department:Sales")
    chosen: dict[str, Person] = {}
    for target in targets:
        hits = [p for p in people if _matches(p, target)]
        if not hits:
            if target.kind == "person":
                raise TargetError(f"unknown target {target}: no active employee with an "
                                  "account has this employee id, Matrix ID or login")
            if target.kind == "all":
                raise TargetError("target all: there are no active employees with an account")
            known = _known(people, target.kind)
            shown = ", ".join(known[:20]) + (" …" if len(known) > 20 else "")
            raise TargetError(f"unknown target {target}: no active employee has this "
                              f"{target.kind} (known: {shown or 'none'})")
        for p in hits:
            chosen[p.user_id] = p
    return [chosen[k] for k in sorted(chosen)]


# --- rooms ------------------------------------------------------------------------------


class RoomSource(Protocol):
    """Where an announcement for these targets is posted.

    Returns the room ids to post into, or None when this source has no room for the
    targets (the caller then falls back to a new room). Every recipient must end up a
    member of at least one returned room; `send` makes them members where needed.
    """

    def rooms_for(self, targets: Sequence[Target]) -> list[str] | None: ...


@dataclass(frozen=True)
class ExplicitRoom:
    room_id: str

    def rooms_for(self, targets: Sequence[Target]) -> list[str] | None:
        return [self.room_id]


@dataclass(frozen=True)
class NewRoomPerAnnouncement:
    """No room yet: the bot creates one per announcement (see bot.create_announcement_room)."""

    def rooms_for(self, targets: Sequence[Target]) -> list[str] | None:
        return None


_ROOM_ID = re.compile(r"^![^\s]+$")


def check_room_id(room_id: str) -> str:
    if not _ROOM_ID.match(room_id):
        raise TargetError(f"room {room_id!r}: expected a room id like !abc123")
    return room_id

