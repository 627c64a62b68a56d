"""The durable job queue: dedupe, per-target order, backoff, states; leave-date jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from provisioner.accounts.offboard import OffboardRefusedError
from provisioner.accounts.plan import GuardSettings, MassDeactivationError
from provisioner.employee import Employee, Status
from provisioner.errors import ConfigError
from provisioner.homeserver.synapse_admin import AdminApiError
from provisioner.service.leave_dates import due_leavers
from provisioner.service.worker import is_permanent
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.jobs import (
    JobSpec,
    backoff,
    due_jobs,
    enqueue,
    mark_done,
    mark_failed,
    mark_retry,
    next_due_at,
    queue_status,
)

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'hauspost.db'}")
    yield s
    s.close()


def _queue(store: Store, *specs: JobSpec, now: datetime = NOW) -> list[int]:
    with store.session() as s:
        return [enqueue(s, spec, actor="scim:t", source="scim", now=now).id for spec in specs]


def test_pending_duplicate_is_not_queued_twice_but_a_later_one_is(store: Store) -> None:
    spec = JobSpec("offboard", "@a:x", "gone", dedupe_key="offboard:@a:x")
    first, again = _queue(store, spec, spec)
    assert first == again
    with store.session() as s:
        mark_done(s, first, NOW)
    (later,) = _queue(store, spec)
    assert later != first


def test_jobs_of_one_target_run_in_order_others_are_not_held_up(store: Store) -> None:
    a1, b1, a2 = _queue(store, JobSpec("reconcile", "@a:x", "create"),
                        JobSpec("reconcile", "@b:x", "create"),
                        JobSpec("offboard", "@a:x", "leave"))
    with store.session() as s:
        assert [j.id for j in due_jobs(s, NOW)] == [a1, b1]
        mark_retry(s, a1, NOW, "Synapse down", base=1.0, maximum=60.0)
    with store.session() as s:
        # a1 waits for its retry; a2 must not overtake it.
        assert [j.id for j in due_jobs(s, NOW)] == [b1]
        assert [j.id for j in due_jobs(s, NOW + timedelta(seconds=1))] == [a1, b1]
    assert a2 > a1


def test_future_jobs_wait_for_their_time(store: Store) -> None:
    when = NOW + timedelta(days=2)
    (job,) = _queue(store, JobSpec("offboard", "E1", "leaver", not_before=when))
    with store.session() as s:
        assert due_jobs(s, NOW) == []
        assert next_due_at(s) == when
        assert [j.id for j in due_jobs(s, when)] == [job]


@pytest.mark.parametrize(("attempts", "seconds"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0),
                                                    (7, 60.0), (40, 60.0)])
def test_backoff_doubles_up_to_the_cap(attempts: int, seconds: float) -> None:
    assert backoff(attempts, 1.0, 60.0) == seconds


def test_failed_jobs_are_audited_and_counted(store: Store) -> None:
    (job,) = _queue(store, JobSpec("offboard", "@p:x", "leave"))
    with store.session() as s:
        mark_failed(s, job, NOW, "@p:x is a protected account")
    with store.session() as s:
        status = queue_status(s)
        audit = [(a.action, a.reason) for a in repo.query_audit(s, repo.AuditQuery())]
    assert status.counts == {"pending": 0, "failed": 1, "done": 0}
    assert [(j.id, j.state, j.attempts) for j in status.open_jobs] == [(job, "failed", 1)]
    assert audit == [("service.job_queued", "leave"),
                     ("service.job_failed", "@p:x is a protected account")]


def test_unknown_kind_is_a_programming_error(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown job kind"):
        _queue(store, JobSpec("reboot", "x", "why"))


@pytest.mark.parametrize(("exc", "permanent"), [
    (OffboardRefusedError("protected"), True),
    (ConfigError("no directory"), True),
    (MassDeactivationError(30, 40, GuardSettings(), empty=False), True),
    (AdminApiError("POST", "/x", 400, "M_BAD_JSON", "bad"), True),
    (AdminApiError("POST", "/x", 404, "M_NOT_FOUND", "gone"), True),
    (AdminApiError("POST", "/x", 401, "M_UNKNOWN_TOKEN", "token"), False),
    (AdminApiError("POST", "/x", 429, "M_LIMIT_EXCEEDED", "slow"), False),
    (AdminApiError("POST", "/x", 502, None, None), False),
    (RuntimeError("bug"), False),
])
def test_which_errors_end_retrying(exc: BaseException, permanent: bool) -> None:
    assert is_permanent(exc) is permanent


def test_leave_dates_queue_offboarding_after_the_last_day(store: Store) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    people = [Employee("E1", "gone", "Gone", leave_date=date(2026, 11, 27)),
              Employee("E2", "today", "Today", leave_date=date(2026, 11, 28)),
              Employee("E3", "stays", "Stays"),
              Employee("E4", "already", "Already", leave_date=date(2026, 11, 1)),
              Employee("E5", "failed", "Failed", leave_date=date(2026, 11, 1),
                       status=Status.ACTIVE)]
    with store.session() as s:
        repo.save_employees(s, people, source="test", now=NOW)
        for emp in people:
            row = repo.insert_link(s, employee_id=emp.employee_id,
                                   user_id=f"@{emp.localpart}:x", now=NOW, run_id=None,
                                   display_name=emp.display_name, email=None)
            if emp.localpart == "already":
                repo.record_deactivated(row, now=NOW, reason="left", hold=False)
    (failed,) = _queue(store, JobSpec("offboard", "@failed:x", "leave",
                                      dedupe_key="offboard:@failed:x"))
    with store.session() as s:
        mark_failed(s, failed, NOW, "refused")
    with store.session() as s:
        specs = due_leavers(s, NOW, berlin)
    assert [(j.target, j.reason) for j in specs] == [
        ("@gone:x", "leave date 2026-11-27 has passed")]
