"""The signed HR webhook (for HR systems without SCIM): verify, refuse replays, queue.

Request: `POST /hooks/hr` with a JSON body
    {"employee_id": "E1042", "event": "leaver", "effective_date": "2026-11-30"}
    (optional "event_id": the sender's id, kept in the audit log)
and two headers
    X-Hauspost-Timestamp: 1764323456                  (Unix seconds, when it was sent)
    X-Hauspost-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

The MAC covers the timestamp, so an old body can't be re-sent with a fresh time. Requests
older or newer than the replay window are refused; within it, a signature seen before is
refused too (the seen-signature cache lives in the store, so a restart does not reopen it).

Events: `leaver` -> offboarding at the end of the effective date in the company's time
zone (at once when that has passed); `joiner` / `change` -> a directory sync (the
directory holds the person's details). Refusals are logged with the reason, never with
the secret or the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioner.directory.leave import access_ends_at
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.jobs import KIND_OFFBOARD, KIND_SYNC, JobSpec, enqueue
from provisioner.store.service_models import WebhookSeenRow

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Hauspost-Timestamp"
SIGNATURE_HEADER = "X-Hauspost-Signature"
EVENTS = ("leaver", "joiner", "change")
MAX_BODY = 64 * 1024
_FIELDS = {"employee_id", "event", "effective_date", "event_id"}
_SIGNATURE = re.compile(r"^v1=([0-9a-f]{64})$")


class WebhookRefusedError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class HrEvent:
    employee_id: str
    event: str
    effective_date: date
    event_id: str | None = None


def signature_for(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, *,
           now: float, window: int) -> str:
    """Check the signature and the time; returns the signature's hex digest (the replay key)."""
    if not timestamp or not signature:
        raise WebhookRefusedError(401, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    match = _SIGNATURE.match(signature.strip())
    if not timestamp.isdigit() or match is None:
        raise WebhookRefusedError(401, "malformed timestamp or signature header")
    expected = signature_for(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookRefusedError(401, "signature does not match")
    if abs(now - int(timestamp)) > window:
        raise WebhookRefusedError(401, f"timestamp outside the {window} s replay window")
    return match.group(1)


def parse_event(body: bytes) -> HrEvent:
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRefusedError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookRefusedError(400, "body must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise WebhookRefusedError(400, f"unknown field {unknown[0]!r} (known: "
                                       f"{', '.join(sorted(_FIELDS))})")
    employee_id, event = data.get("employee_id"), data.get("event")
    if not isinstance(employee_id, str) or not employee_id.strip() or len(employee_id) > 255:
        raise WebhookRefusedError(400, "employee_id: expected a non-empty string")
    if event not in EVENTS:
        raise WebhookRefusedError(400, f"event: expected one of {', '.join(EVENTS)}, "
                                       f"got {event!r}")
    raw_date = data.get("effective_date")
    try:
        effective = date.fromisoformat(raw_date) if isinstance(raw_date, str) else None
    except ValueError:
        effective = None
    if effective is None:
        raise WebhookRefusedError(400, "effective_date: expected an ISO date like 2026-11-30")
    event_id = data.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or len(event_id) > 255):
        raise WebhookRefusedError(400, "event_id: expected a string of at most 255 characters")
    return HrEvent(employee_id=employee_id.strip(), event=event, effective_date=effective,
                   event_id=event_id)


def jobs_for(event: HrEvent, tz: ZoneInfo) -> list[JobSpec]:
    if event.event == "leaver":
        ends = access_ends_at(event.effective_date, tz)
        return [JobSpec(kind=KIND_OFFBOARD, target=event.employee_id,
                        reason=f"leaver reported by HR (last day {event.effective_date})",
                        payload={"employee_id": event.employee_id}, not_before=ends,
                        dedupe_key=f"offboard:{event.employee_id}")]
    return [JobSpec(kind=KIND_SYNC, target="directory",
                    reason=f"{event.event} {event.employee_id} reported by HR",
                    payload={"employee_id": event.employee_id}, dedupe_key="sync")]


def _by_account(session: Session, spec: JobSpec) -> JobSpec:
    """Key a leaver's job by their account when linked, so a SCIM deactivation and a webhook
    for the same person share one pending offboarding."""
    if spec.kind != KIND_OFFBOARD:
        return spec
    account = repo.get_account_by_employee(session, spec.target)
    if account is None:
        return spec
    return replace(spec, target=account.user_id, dedupe_key=f"offboard:{account.user_id}",
                   payload={"user_id": account.user_id, "employee_id": spec.target})


def remember(session: Session, digest: str, now: datetime, window: int) -> None:
    """Record the signature; IntegrityError when it was seen within the window (replay)."""
    session.execute(delete(WebhookSeenRow).where(
        WebhookSeenRow.received_at < now - timedelta(seconds=2 * window)))
    session.add(WebhookSeenRow(signature=digest, received_at=now))
    session.flush()


def accept(store: Store, event: HrEvent, digest: str, *, actor: str, tz: ZoneInfo,
           now: datetime, window: int) -> list[int]:
    """Store the replay key, the audit row and the jobs in one transaction (before the 2xx)."""
    try:
        with store.session() as session:
            remember(session, digest, now, window)
            repo.append_audit(session, actor=actor, action="webhook.accepted",
                              target=event.employee_id, now=now,
                              reason=f"HR {event.event} event",
                              details={"event": event.event, "event_id": event.event_id,
                                       "effective_date": event.effective_date.isoformat()})
            rows = [enqueue(session, _by_account(session, spec), actor=actor, source="webhook",
                            now=now) for spec in jobs_for(event, tz)]
            return [row.id for row in rows]
    except IntegrityError:
        raise WebhookRefusedError(409, "replayed request (signature already seen)") from None
