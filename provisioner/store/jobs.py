"""The durable queue of accepted HR changes (`service_jobs`): enqueue, pick, finish, retry.

`enqueue` runs in the caller's session, so a change and its job are committed together
and before the HTTP answer. A pending job with the same `dedupe_key` is returned instead
of a second one: a leaver pushed twice is offboarded once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioner.store import repository as repo
from provisioner.store.service_models import JOB_DONE, JOB_FAILED, JOB_PENDING, ServiceJobRow

KIND_OFFBOARD = "offboard"
KIND_RECONCILE = "reconcile"
KIND_SYNC = "sync"
#: The room part of a sync alone (provisioner/service/room_job.py), after SCIM group changes.
KIND_ROOMS = "rooms"
KINDS = (KIND_OFFBOARD, KIND_RECONCILE, KIND_SYNC, KIND_ROOMS)
#: Kinds that change one account; a room sync waits for those accepted before it.
ACCOUNT_KINDS = (KIND_OFFBOARD, KIND_RECONCILE)
#: Payload key of a room sync: it also waits for pending account changes up to this job id.
AFTER_JOB = "after_job"


@dataclass(frozen=True)
class JobSpec:
    """What to queue; built by the SCIM storage, the webhook and the schedules."""

    kind: str
    target: str
    reason: str
    payload: dict[str, Any] | None = None
    dedupe_key: str | None = None
    not_before: datetime | None = None


def enqueue(session: Session, spec: JobSpec, *, actor: str, source: str,
            now: datetime) -> ServiceJobRow:
    if spec.kind not in KINDS:
        raise ValueError(f"unknown job kind {spec.kind!r}")
    if spec.dedupe_key is not None:
        existing = session.scalars(
            select(ServiceJobRow).where(ServiceJobRow.dedupe_key == spec.dedupe_key,
                                        ServiceJobRow.state == JOB_PENDING)
            .order_by(ServiceJobRow.id)).first()
        if existing is not None:
            if spec.kind == KIND_ROOMS:
                # The request is folded into an older room sync, which must now also wait
                # for the account changes accepted up to here (this request's own new hire
                # among them), or it could run before them and leave the new hire out.
                latest = session.scalar(select(func.max(ServiceJobRow.id)))
                existing.payload = {**(existing.payload or {}), AFTER_JOB: int(latest or 0)}
            return existing
    when = max(spec.not_before, now) if spec.not_before else now
    row = ServiceJobRow(kind=spec.kind, target=spec.target, dedupe_key=spec.dedupe_key,
                        payload=spec.payload, actor=actor, reason=spec.reason, source=source,
                        state=JOB_PENDING, attempts=0, created_at=now, not_before=when,
                        next_attempt_at=when)
    session.add(row)
    session.flush()
    repo.append_audit(session, actor=actor, action="service.job_queued", target=spec.target,
                      now=now, reason=spec.reason,
                      details={"job_id": row.id, "kind": spec.kind, "source": source,
                               "not_before": when.isoformat()})
    return row


def due_jobs(session: Session, now: datetime, limit: int = 50) -> list[ServiceJobRow]:
    """Pending jobs whose time has come, oldest first; a job waits while an older pending
    job of the same target exists (changes to one person apply in the order accepted), and
    a room sync waits while an account change accepted before it, or before a later request
    folded into it, is pending (a new hire's account must exist before the room sync can
    add it)."""
    pending = session.scalars(select(ServiceJobRow).where(ServiceJobRow.state == JOB_PENDING)
                              .order_by(ServiceJobRow.id)).all()
    blocked: set[str] = set()
    account_change_pending = False
    account_jobs = [job.id for job in pending if job.kind in ACCOUNT_KINDS]
    out: list[ServiceJobRow] = []
    for job in pending:
        if job.target in blocked:
            continue
        blocked.add(job.target)
        if job.kind == KIND_ROOMS and (account_change_pending or any(
                i <= int((job.payload or {}).get(AFTER_JOB, 0)) for i in account_jobs)):
            continue
        account_change_pending |= job.kind in ACCOUNT_KINDS
        if job.next_attempt_at <= now:
            out.append(job)
            if len(out) >= limit:
                break
    return out


def next_due_at(session: Session) -> datetime | None:
    value: datetime | None = session.scalars(
        select(ServiceJobRow.next_attempt_at).where(ServiceJobRow.state == JOB_PENDING)
        .order_by(ServiceJobRow.next_attempt_at).limit(1)).first()
    return value


def backoff(attempts: int, base: float, maximum: float) -> float:
    """Seconds to wait after the `attempts`-th failed try: base, 2*base, 4*base, ... max."""
    return float(min(maximum, base * (2 ** max(0, attempts - 1))))


def mark_done(session: Session, job_id: int, now: datetime) -> None:
    job = session.get(ServiceJobRow, job_id)
    if job is None:
        raise LookupError(f"job {job_id} not found")
    if job.state == JOB_DONE:  # already marked with the change it made (an offboarding)
        return
    job.state = JOB_DONE
    job.attempts += 1
    job.finished_at = now
    job.last_error = None


def mark_retry(session: Session, job_id: int, now: datetime, error: str, *, base: float,
               maximum: float) -> datetime:
    job = session.get(ServiceJobRow, job_id)
    if job is None:
        raise LookupError(f"job {job_id} not found")
    job.attempts += 1
    job.last_error = error[:2000]
    job.next_attempt_at = now + timedelta(seconds=backoff(job.attempts, base, maximum))
    return job.next_attempt_at


def mark_failed(session: Session, job_id: int, now: datetime, error: str) -> ServiceJobRow:
    job = session.get(ServiceJobRow, job_id)
    if job is None:
        raise LookupError(f"job {job_id} not found")
    job.state = JOB_FAILED
    job.attempts += 1
    job.finished_at = now
    job.last_error = error[:2000]
    repo.append_audit(session, actor=job.actor, action="service.job_failed", target=job.target,
                      now=now, reason=error[:1000],
                      details={"job_id": job.id, "kind": job.kind, "source": job.source})
    return job


@dataclass(frozen=True)
class QueueStatus:
    counts: dict[str, int]
    open_jobs: tuple[ServiceJobRow, ...]
    recent_done: tuple[ServiceJobRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts,
                "open": [job_json(j) for j in self.open_jobs],
                "recent_done": [job_json(j) for j in self.recent_done]}


def job_json(job: ServiceJobRow) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "target": job.target, "state": job.state,
            "source": job.source, "actor": job.actor, "reason": job.reason,
            "attempts": job.attempts, "created_at": job.created_at.isoformat(),
            "next_attempt_at": job.next_attempt_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "last_error": job.last_error}


def queue_status(session: Session, *, recent: int = 10) -> QueueStatus:
    counter: Counter[str] = Counter()
    for state, n in session.execute(select(ServiceJobRow.state, func.count())
                                    .group_by(ServiceJobRow.state)):
        counter[state] = n
    counts = {state: counter.get(state, 0) for state in (JOB_PENDING, JOB_FAILED, JOB_DONE)}
    open_jobs: Sequence[ServiceJobRow] = session.scalars(
        select(ServiceJobRow).where(ServiceJobRow.state.in_((JOB_PENDING, JOB_FAILED)))
        .order_by(ServiceJobRow.id)).all()
    done: Sequence[ServiceJobRow] = session.scalars(
        select(ServiceJobRow).where(ServiceJobRow.state == JOB_DONE)
        .order_by(ServiceJobRow.id.desc()).limit(recent)).all()
    return QueueStatus(counts=counts, open_jobs=tuple(open_jobs), recent_done=tuple(done))
