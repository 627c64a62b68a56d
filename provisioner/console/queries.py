"""What the console's pages read from the store: plain queries, bound parameters only."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

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


def search_people(store: Store, query: str, *, limit: int = 50) -> SearchResult:
    """Every word must match name, login, employee id, department or location."""
    words = [fold(w) for w in query.split() if w.strip()]
    columns = (EmployeeRow.employee_id, EmployeeRow.localpart, EmployeeRow.display_name,
               EmployeeRow.department, EmployeeRow.location, EmployeeRow.status,
               AccountRow.user_id, AccountRow.active)
    with store.session() as session:
        rows = session.execute(
            select(*columns).outerjoin(AccountRow,
                                       AccountRow.employee_id == EmployeeRow.employee_id)
            .order_by(EmployeeRow.display_name, EmployeeRow.employee_id)).all()
    found: list[PersonRow] = []
    total = 0
    for row in rows:
        if words:
            haystack = fold(" ".join(str(v) for v in row[:5] if v))
            if not all(w in haystack for w in words):
                continue
        total += 1
        if len(found) < limit:
            found.append(PersonRow(*row))
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


def audit_by_actor(store: Store, actor: str, *, limit: int = 100) -> Sequence[AuditRow]:
    with store.session() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.actor == actor)
                               .order_by(AuditRow.id.desc()).limit(limit)).all()
        session.expunge_all()
        return rows


def recent_runs(store: Store, *, limit: int = 15) -> list[dict[str, Any]]:
    with store.session() as session:
        rows = session.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(limit)).all()
        return [{"id": r.id, "kind": r.kind, "actor": r.actor, "started_at": r.started_at,
                 "finished_at": r.finished_at, "status": r.status, "dry_run": r.dry_run,
                 "forced": r.forced, "counts": (r.summary or {}).get("counts", {}),
                 "problems": (r.summary or {}).get("problems", [])} for r in rows]
