"""Managed rooms: the stable policy key <-> Matrix room ID link, and the room's status;
and the room sync's intents (its planned actions until each is audited).

The link is what makes a renamed room in the policy rename the Matrix room instead of
creating a second one. Its rows are never deleted: an archived or released room keeps its
row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.store.models import Base, UTCDateTime


class ManagedRoomRow(Base):
    __tablename__ = "managed_rooms"

    policy_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # room | space
    #: active | archived | released
    status: Mapped[str] = mapped_column(String(16), default="active")
    #: archive | keep: what to do when the room leaves the policy (the last declared value).
    on_removed: Mapped[str] = mapped_column(String(16), default="archive")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_run_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("runs.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RoomIntentRow(Base):
    """One planned room action of a run, from before its first request until its audit row
    is written (the same transaction deletes it). One left behind: the run ended between
    the two, and the next room sync decides from Synapse whether the change happened."""

    __tablename__ = "room_intents"

    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("runs.id"), primary_key=True)
    #: The action's place in the run's room plan.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: `RoomAction.to_json()`.
    action: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
