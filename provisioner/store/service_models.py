"""Models of `hauspost serve`: the durable queue of accepted HR changes, the SCIM resources
and the webhook's seen-signature cache.

A change HR pushes (SCIM or webhook) is written to `service_jobs` in the same transaction
that records it, before the HTTP 2xx goes out; the service's worker applies it, retrying
with backoff while Synapse is unreachable. Schema by migration `v0002_service`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.store.models import Base, UTCDateTime

JOB_PENDING = "pending"
JOB_DONE = "done"
JOB_FAILED = "failed"


class ServiceJobRow(Base):
    """One accepted change, applied at `not_before` or later, retried until done or refused."""

    __tablename__ = "service_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: offboard | reconcile | sync
    kind: Mapped[str] = mapped_column(String(32))
    #: Matrix ID or employee id the job is about; jobs of one target run in id order.
    target: Mapped[str] = mapped_column(String(255), index=True)
    #: A second job with the same key while one is pending is not queued (no duplicate).
    dedupe_key: Mapped[str | None] = mapped_column(String(255), index=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    #: scim | webhook | schedule
    source: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class ScimResourceRow(Base):
    """A SCIM User or Group as the client last wrote it (passwords are never stored)."""

    __tablename__ = "scim_resources"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(32), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Users only: the employee id and Matrix ID fixed when the user was created.
    employee_id: Mapped[str | None] = mapped_column(String(255), index=True)
    user_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookSeenRow(Base):
    """Signatures accepted within the replay window: the same request twice is refused."""

    __tablename__ = "webhook_seen"

    signature: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
