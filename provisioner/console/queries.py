"""What the console's pages read from the store: plain queries, bound parameters only."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select

from provisioner.store import Store
from provisioner.store.models import AccountRow, AuditRow, EmployeeRow, RunRow

#: Letters that are not a base letter plus accent, so NFKD leaves them alone.
_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d",
                          "þ": "th", "ı": "i"})


def fold(text: str) -> str:
    """Case- and accent-blind form for search: "Müller" ~ "muller", "Straße" ~ "strasse",
    "Ørsted" ~ "orsted", "Łukasz" ~ "lukasz"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_LETTERS))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True)
class PersonRow:
    employee_id: str
    localpart: str
    display_name: str
    department: str | None
    location: str | None
    status: str
    user_id: str | None
    account_active: bool | None


@dataclass(frozen=True)
class SearchResult:
    rows: tuple[PersonRow, ...]
    total: int


_COLUMNS = (EmployeeRow.employee_id, EmployeeRow.localpart, EmployeeRow.display_name,
            EmployeeRow.department, EmployeeRow.location, EmployeeRow.status,
            AccountRow.user_id, AccountRow.active)


class PeopleIndex:
    """Everybody with a folded search text, rebuilt only when the store's people changed
    (a cheap fingerprint query per search): 10,000 people are searched in memory instead
    of being read and folded on every keystroke."""

    def __init__(self) -> None:
        self._fingerprint: tuple[Any, ...] | None = None
        self._rows: list[tuple[str, PersonRow]] = []

    @staticmethod
    def fingerprint(store: Store) -> tuple[Any, ...]:
        with store.session() as session:
            people = session.execute(select(func.count(), func.max(EmployeeRow.updated_at))
                                     .select_from(EmployeeRow)).one()
            accounts = session.execute(
                select(func.count(), func.sum(case((AccountRow.active, 1), else_=0)),
                       func.sum(case((AccountRow.hold, 1), else_=0)),
                       func.max(AccountRow.deactivated_at))
                .select_from(AccountRow)).one()
        return (*people, *accounts)

    def rows(self, store: Store) -> list[tuple[str, PersonRow]]:
        current = self.fingerprint(store)
        if current != self._fingerprint:
            with store.session() as session:
                rows = session.execute(
                    select(*_COLUMNS).outerjoin(
                        AccountRow, AccountRow.employee_id == EmployeeRow.employee_id)
                    .order_by(EmployeeRow.display_name, EmployeeRow.employee_id)).all()
            self._rows = [(fold(" ".join(str(v) for v in row[:5] if v)), PersonRow(*row))
                          for row in rows]
            self._fingerprint = current
        return self._rows


def search_people(store: Store, query: str, *, limit: int = 50,
                  index: PeopleIndex | None = None) -> SearchResult:
    """Every word must match name, login, employee id, department or location."""
    words = [fold(w) for w in query.split() if w.strip()]
    found: list[PersonRow] = []
    total = 0
    for haystack, person in (index or PeopleIndex()).rows(store):
        if words and not all(w in haystack for w in words):
            continue
        total += 1
        if len(found) < limit:
            found.append(person)
    return SearchResult(rows=tuple(found), total=total)


@dataclass(frozen=True)
class PersonDetail:
    employee: EmployeeRow
    account: AccountRow | None
    audit: tuple[AuditRow, ...]


def person_detail(store: Store, employee_id: str, *, audit_limit: int = 50
                  ) -> PersonDetail | None:
    with store.session() as session:
        employee = session.get(EmployeeRow, employee_id)
        if employee is None:
            return None
        account = session.scalars(select(AccountRow).where(
            AccountRow.employee_id == employee_id)).first()
        targets = [employee_id] + ([account.user_id] if account else [])
        audit = session.scalars(
            select(AuditRow).where(or_(AuditRow.target.in_(targets)))
            .order_by(AuditRow.id.desc()).limit(audit_limit)).all()
        session.expunge_all()
        return PersonDetail(employee=employee, account=account, audit=tuple(audit))


def recent_runs(store: Store, *, limit: int = 15) -> list[dict[str, Any]]:
    with store.session() as session:
        rows = session.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(limit)).all()
        return [{"id": r.id, "kind": r.kind, "actor": r.actor, "started_at": r.started_at,
                 "finished_at": r.finished_at, "status": r.status, "dry_run": r.dry_run,
                 "forced": r.forced, "counts": (r.summary or {}).get("counts", {}),
                 "problems": (r.summary or {}).get("problems", [])} for r in rows]
