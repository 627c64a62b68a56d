"""The HR webhook's checks: signature, time window, replay cache, payload, and the jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from provisioner.service.webhook import (
    HrEvent,
    WebhookRefusedError,
    accept,
    jobs_for,
    parse_event,
    signature_for,
    verify,
)
from provisioner.store import Store, open_store
from provisioner.store.service_models import ServiceJobRow, WebhookSeenRow

SECRET = b"0123456789abcdef-shared"
BODY = json.dumps({"employee_id": "E1", "event": "leaver",
                   "effective_date": "2026-11-30"}).encode()
NOW = 1_764_320_000
BERLIN = ZoneInfo("Europe/Berlin")


def _verify(timestamp: str | None, signature: str | None, body: bytes = BODY,
            now: float = NOW) -> str:
    return verify(SECRET, timestamp, signature, body, now=now, window=300)


def test_a_correct_signature_passes_and_yields_the_replay_key() -> None:
    signature = signature_for(SECRET, str(NOW), BODY)
    assert _verify(str(NOW), signature) == signature.removeprefix("v1=")


@pytest.mark.parametrize(("timestamp", "signature", "body", "now", "why"), [
    (str(NOW), signature_for(b"other-secret-000000", str(NOW), BODY), BODY, NOW,
     "signature does not match"),
    (str(NOW), signature_for(SECRET, str(NOW), BODY), BODY.replace(b"E1", b"E2"), NOW,
     "signature does not match"),
    # The timestamp is under the MAC: a fresh time on an old signature does not verify.
    (str(NOW + 10), signature_for(SECRET, str(NOW), BODY), BODY, NOW, "signature does not match"),
    (str(NOW - 301), signature_for(SECRET, str(NOW - 301), BODY), BODY, NOW,
     "timestamp outside the 300 s replay window"),
    (str(NOW + 301), signature_for(SECRET, str(NOW + 301), BODY), BODY, NOW,
     "timestamp outside the 300 s replay window"),
    (None, signature_for(SECRET, str(NOW), BODY), BODY, NOW, "missing"),
    (str(NOW), None, BODY, NOW, "missing"),
    ("yesterday", signature_for(SECRET, "yesterday", BODY), BODY, NOW, "malformed"),
    (str(NOW), "sha256=" + "0" * 64, BODY, NOW, "malformed"),
    (str(NOW), "v1=" + "Z" * 64, BODY, NOW, "malformed"),
], ids=["wrong-secret", "tampered-body", "moved-timestamp", "too-old", "too-new",
        "no-timestamp", "no-signature", "bad-timestamp", "other-scheme", "not-hex"])
def test_refusals(timestamp: str | None, signature: str | None, body: bytes, now: float,
                  why: str) -> None:
    with pytest.raises(WebhookRefusedError) as info:
        _verify(timestamp, signature, body, now)
    assert info.value.status == 401
    assert info.value.reason.startswith(why)


@pytest.mark.parametrize(("body", "why"), [
    (b"\xff\xfe", "body is not JSON"),
    (b"[1, 2]", "body must be a JSON object"),
    (b'{"employee_id": "", "event": "leaver", "effective_date": "2026-01-01"}', "employee_id:"),
    (b'{"employee_id": 7, "event": "leaver", "effective_date": "2026-01-01"}', "employee_id:"),
    (b'{"employee_id": "E", "event": "LEAVER", "effective_date": "2026-01-01"}', "event:"),
    (b'{"employee_id": "E", "event": "leaver", "effective_date": "2026-02-30"}',
     "effective_date:"),
    (b'{"employee_id": "E", "event": "leaver"}', "effective_date:"),
    (b'{"employee_id": "E", "event": "leaver", "effective_date": "2026-01-01", "salary": 1}',
     "unknown field 'salary'"),
    (b'{"employee_id": "E", "event": "leaver", "effective_date": "2026-01-01", "event_id": 5}',
     "event_id:"),
])
def test_bad_payloads_are_400(body: bytes, why: str) -> None:
    with pytest.raises(WebhookRefusedError) as info:
        parse_event(body)
    assert (info.value.status, info.value.reason.startswith(why)) == (400, True)


def test_payload_is_read_exactly() -> None:
    event = parse_event(b'{"employee_id": " E9 ", "event": "joiner", '
                        b'"effective_date": "2027-01-04", "event_id": "p-1"}')
    assert event == HrEvent("E9", "joiner", date(2027, 1, 4), "p-1")


def test_leaver_is_offboarded_at_midnight_after_the_last_day_in_company_time() -> None:
    (job,) = jobs_for(HrEvent("E1", "leaver", date(2026, 11, 30)), BERLIN)
    assert (job.kind, job.target, job.dedupe_key) == ("offboard", "E1", "offboard:E1")
    assert job.not_before == datetime(2026, 12, 1, 0, 0, tzinfo=BERLIN)
    assert job.not_before.astimezone(UTC) == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["joiner", "change"])
def test_joiner_and_change_ask_for_a_directory_sync(kind: str) -> None:
    (job,) = jobs_for(HrEvent("E1", kind, date(2026, 11, 30)), BERLIN)
    assert (job.kind, job.target, job.dedupe_key, job.not_before) == (
        "sync", "directory", "sync", None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'hauspost.db'}")
    yield s
    s.close()


def test_replay_is_refused_and_the_cache_is_pruned(store: Store) -> None:
    event = HrEvent("E1", "leaver", date(2026, 11, 30))
    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    first = accept(store, event, "a" * 64, actor="webhook:hr", tz=BERLIN, now=now, window=300)
    with pytest.raises(WebhookRefusedError) as info:
        accept(store, event, "a" * 64, actor="webhook:hr", tz=BERLIN, now=now, window=300)
    assert info.value.status == 409
    later = now.replace(hour=10)
    second = accept(store, event, "b" * 64, actor="webhook:hr", tz=BERLIN, now=later, window=300)
    with store.session() as s:
        seen = list(s.scalars(select(WebhookSeenRow.signature)))
        jobs = list(s.scalars(select(ServiceJobRow.id)))
    # The old signature aged out; the pending offboarding was not queued twice.
    assert seen == ["b" * 64]
    assert first == second == jobs


def test_a_linked_leaver_shares_the_pending_offboarding_of_their_account(store: Store) -> None:
    from provisioner.store import repository as repo
    from provisioner.store.jobs import JobSpec, enqueue

    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    with store.session() as s:
        repo.insert_link(s, employee_id="E1", user_id="@ann:corp.test", now=now, run_id=None,
                         display_name="Ann", email=None)
        scim_job = enqueue(s, JobSpec("offboard", "@ann:corp.test", "set inactive by SCIM",
                                      dedupe_key="offboard:@ann:corp.test"),
                           actor="scim:hr", source="scim", now=now).id
    jobs = accept(store, HrEvent("E1", "leaver", date(2026, 11, 30)), "c" * 64,
                  actor="webhook:hr", tz=BERLIN, now=now, window=300)
    assert jobs == [scim_job]
