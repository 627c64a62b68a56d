"""`hauspost gdpr erase` (GDPR Art. 17) and the leaver timeline's erasure.

1. Refused, with nothing changed, for an unknown person, a person the directory still lists
   as an active employee, a person on legal hold, or one already erased.
2. Synapse: the account is deactivated with erasure (profile removed, messages hidden from
   anyone who joins later) through the offboarding code path.
3. The store: in one transaction every text and JSON value in every table that names the
   person (Matrix ID, employee id, e-mail anywhere; name and login as whole words) is
   replaced by their stable pseudonym. The audit log keeps every row (the triggers allow
   exactly this change and only inside this transaction; migration v0007_gdpr).
4. One audit row `gdpr.erase` about the pseudonym, with the counts.

A dry run reports what would change (per table and column), changes nothing.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, String, Table, Text, delete, insert, select, update
from sqlalchemy.orm import Session

from provisioner.accounts.offboard import offboard
from provisioner.accounts.policy import policy_for
from provisioner.errors import EXIT_CONFIG, HauspostError
from provisioner.gdpr.holds import active_hold, held_employee_ids
from provisioner.gdpr.pseudonym import PREFIX, Identifiers, Replacer, pseudonym
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.private_files import write_private
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.all_models import metadata
from provisioner.store.gdpr_models import PseudonymisationRow
from provisioner.store.models import AccountRow, Base, EmployeeRow

logger = logging.getLogger(__name__)

KEY_FILE = "keys/pseudonym_key"
#: Tables the pass never rewrites: the marker itself.
_SKIP = {"pseudonymisation", "alembic_version"}


class ErasureRefusedError(HauspostError):
    exit_code = EXIT_CONFIG


def pseudonym_key(settings: Settings) -> bytes:
    """The company's pseudonym key (created once, 0600, never printed)."""
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text(encoding="utf-8").strip())


@dataclass(frozen=True)
class Subject:
    ids: Identifiers
    pseudonym: str
    account_active: bool
    account_erased: bool
    directory_active: bool


def find_subject(store: Store, target: str, key: bytes) -> Subject:
    """By employee id or Matrix ID; ErasureRefusedError for nobody."""
    with store.session() as session:
        account = (repo.get_account(session, target) if target.startswith("@")
                   else repo.get_account_by_employee(session, target))
        employee_id = account.employee_id if account is not None else target
        employee = session.get(EmployeeRow, employee_id)
        if account is None and employee is None:
            raise ErasureRefusedError(f"no employee or account {target!r} in the store")
        if employee_id.startswith(PREFIX):
            raise ErasureRefusedError(f"{target} was already erased")
        ids = Identifiers(
            employee_id=employee_id, user_id=account.user_id if account else None,
            localpart=employee.localpart if employee else None,
            display_name=(employee.display_name if employee else
                          account.display_name if account else None),
            email=(employee.email if employee else account.email if account else None))
        return Subject(ids=ids, pseudonym=pseudonym(key, employee_id),
                       account_active=bool(account and account.active),
                       account_erased=bool(account and account.erased_at),
                       directory_active=bool(employee and employee.status == "active"))


def _text_columns(table: Table) -> list[str]:
    return [c.name for c in table.columns if isinstance(c.type, String | Text | JSON)]


def _matches(session: Session, replacer: Replacer) -> dict[str, list[tuple[Any, dict[str, Any]]]]:
    """table -> [(primary key values, {column: new value})] for every row naming the person."""
    found: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    for table in metadata().sorted_tables:
        if table.name in _SKIP:
            continue
        columns = _text_columns(table)
        if not columns:
            continue
        keys = list(table.primary_key.columns)
        stmt = select(*keys, *(table.c[c] for c in columns))
        for row in session.execute(stmt.execution_options(yield_per=1000)):
            pk, values = tuple(row[:len(keys)]), row[len(keys):]
            changes = {c: replacer.value(v) for c, v in zip(columns, values, strict=True)
                       if v is not None and replacer.contains(v)}
            if changes:
                found.setdefault(table.name, []).append((pk, changes))
    return found


@dataclass
class ErasureReport:
    subject: str  # the pseudonym
    user_id: str | None
    dry_run: bool
    synapse: str
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"pseudonym": self.subject, "dry_run": self.dry_run, "synapse": self.synapse,
                "rows": dict(sorted(self.rows.items())), "rows_total": sum(self.rows.values())}


def pseudonymise(store: Store, subject: Subject, *, now: datetime) -> dict[str, int]:
    """Replace the person's identifiers everywhere in the store, in one transaction."""
    replacer = Replacer(subject.ids, subject.pseudonym)
    counts: dict[str, int] = {}
    with store.session() as session:
        session.execute(insert(PseudonymisationRow).values(started_at=now))
        for name, rows in _matches(session, replacer).items():
            table = Base.metadata.tables[name]
            keys = list(table.primary_key.columns)
            for pk, changes in rows:
                where = [k == v for k, v in zip(keys, pk, strict=True)]
                session.execute(update(table).where(*where).values(**changes))
                for column in changes:
                    counts[f"{name}.{column}"] = counts.get(f"{name}.{column}", 0) + 1
        accounts = Base.metadata.tables["accounts"]
        session.execute(update(accounts).where(accounts.c.user_id == subject.pseudonym)
                        .values(erased_at=now))
        session.execute(delete(PseudonymisationRow))
    return counts


def dry_run_counts(store: Store, subject: Subject) -> dict[str, int]:
    counts: dict[str, int] = {}
    with store.session() as session:
        for name, rows in _matches(session, Replacer(subject.ids, subject.pseudonym)).items():
            for _, changes in rows:
                for column in changes:
                    counts[f"{name}.{column}"] = counts.get(f"{name}.{column}", 0) + 1
    return counts


async def erase_person(settings: Settings, store: Store, target: str, *, reason: str,
                       actor: str, dry_run: bool = False,
                       now: datetime | None = None) -> ErasureReport:
    now = now or datetime.now(UTC)
    subject = find_subject(store, target, pseudonym_key(settings))
    ids = subject.ids
    if subject.directory_active and subject.account_active:
        raise ErasureRefusedError(
            f"employee {ids.employee_id} is still an active employee in the directory: "
            "offboard them and let the directory mark them as left first")
    hold = active_hold(store, ids.employee_id)
    if hold is not None:
        raise ErasureRefusedError(
            f"employee {ids.employee_id} is on legal hold since {hold.set_at:%Y-%m-%d} "
            f"({hold.reason}): nothing is erased until `hauspost hold lift`")
    synapse = (f"erase {ids.user_id}: deactivate with erasure (profile removed, messages "
               "hidden from anyone joining later)" if ids.user_id else "no Matrix account")
    if dry_run:
        return ErasureReport(subject=subject.pseudonym, user_id=ids.user_id, dry_run=True,
                             synapse=synapse, rows=dry_run_counts(store, subject))
    if ids.user_id is not None:
        token = await ensure_service_token(settings)
        async with SynapseAdmin(settings.homeserver_url, token) as admin:
            await offboard(admin, store, ids.user_id, server_name=settings.server_name,
                           protected=policy_for(settings).protected, reason=reason,
                           erase=True, actor=actor, wait_for_rooms=False)
    counts = pseudonymise(store, subject, now=now)
    with store.session() as session:
        repo.append_audit(session, actor=actor, action="gdpr.erase", target=subject.pseudonym,
                          now=datetime.now(UTC), reason=reason,
                          details={"rows": counts, "synapse_erased": ids.user_id is not None})
    logger.info("erased %s: %d values in the store replaced by the pseudonym",
                subject.pseudonym, sum(counts.values()))
    return ErasureReport(subject=subject.pseudonym, user_id=None, dry_run=False,
                         synapse=synapse, rows=counts)


def due_for_erasure(store: Store, now: datetime, erase_after_days: int) -> tuple[list[str],
                                                                                list[str]]:
    """(employee ids to erase now, employee ids withheld by a legal hold)."""
    if erase_after_days <= 0:
        return [], []
    cutoff = now - timedelta(days=erase_after_days)
    with store.session() as session:
        # Offboarded by hand while the directory still lists them (`hold` on the link):
        # suspended, not a leaver; the timeline starts when the directory lets go.
        rows = session.execute(
            select(AccountRow.employee_id)
            .where(AccountRow.active.is_(False), AccountRow.erased_at.is_(None),
                   AccountRow.hold.is_(False), AccountRow.deactivated_at.is_not(None),
                   AccountRow.deactivated_at <= cutoff,
                   ~AccountRow.employee_id.startswith(PREFIX))
        ).scalars().all()
    held = held_employee_ids(store)
    return [e for e in rows if e not in held], [e for e in rows if e in held]
