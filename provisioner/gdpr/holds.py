"""Legal holds: while one is set on a person, nothing about them is erased (not by the
timeline, not by `hauspost gdpr erase`). Setting and lifting are audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from provisioner.errors import EXIT_CONFIG, HauspostError
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.gdpr_models import LegalHoldRow


class HoldError(HauspostError):
    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class Hold:
    id: int
    employee_id: str
    set_at: datetime
    set_by: str
    reason: str


def active_hold(store: Store, employee_id: str) -> Hold | None:
    with store.session() as session:
        row = session.scalars(select(LegalHoldRow).where(
            LegalHoldRow.employee_id == employee_id, LegalHoldRow.lifted_at.is_(None))
            .order_by(LegalHoldRow.id)).first()
        return None if row is None else Hold(row.id, row.employee_id, row.set_at, row.set_by,
                                             row.reason)


def held_employee_ids(store: Store) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(LegalHoldRow.employee_id)
                                   .where(LegalHoldRow.lifted_at.is_(None))))


def list_holds(store: Store) -> list[Hold]:
    with store.session() as session:
        rows = session.scalars(select(LegalHoldRow).where(LegalHoldRow.lifted_at.is_(None))
                               .order_by(LegalHoldRow.id)).all()
        return [Hold(r.id, r.employee_id, r.set_at, r.set_by, r.reason) for r in rows]


def set_hold(store: Store, employee_id: str, *, reason: str, actor: str, now: datetime) -> Hold:
    if not reason.strip():
        raise HoldError("a legal hold needs a reason (--reason), e.g. the case number")
    with store.session() as session:
        if repo.get_employee(session, employee_id) is None and \
                repo.get_account_by_employee(session, employee_id) is None:
            raise HoldError(f"no employee {employee_id!r} in the store "
                            "(`hauspost audit` or the console's people search finds ids)")
    existing = active_hold(store, employee_id)
    if existing is not None:
        raise HoldError(f"employee {employee_id} is already on legal hold since "
                        f"{existing.set_at:%Y-%m-%d} ({existing.reason})")
    with store.session() as session:
        row = LegalHoldRow(employee_id=employee_id, set_at=now, set_by=actor,
                           reason=reason.strip())
        session.add(row)
        session.flush()
        repo.append_audit(session, actor=actor, action="gdpr.hold_set", target=employee_id,
                          now=now, reason=reason.strip(), details={"hold_id": row.id})
        return Hold(row.id, employee_id, now, actor, row.reason)


def lift_hold(store: Store, employee_id: str, *, reason: str, actor: str, now: datetime) -> Hold:
    with store.session() as session:
        row = session.scalars(select(LegalHoldRow).where(
            LegalHoldRow.employee_id == employee_id, LegalHoldRow.lifted_at.is_(None))).first()
        if row is None:
            raise HoldError(f"employee {employee_id!r} is not on legal hold")
        row.lifted_at, row.lifted_by, row.lift_reason = now, actor, reason.strip() or None
        repo.append_audit(session, actor=actor, action="gdpr.hold_lifted", target=employee_id,
                          now=now, reason=reason.strip() or None,
                          details={"hold_id": row.id})
        return Hold(row.id, employee_id, row.set_at, row.set_by, row.reason)
