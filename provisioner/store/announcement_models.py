"""Announcements, where they were posted, and (only when acknowledgement is required) who
was reached, saw and acknowledged them, and which reminders went out.

Privacy: per-person rows exist only for announcements that require acknowledgement, and
they are deleted `retention_days` after the deadline (`provisioner.announcements.tick`);
the announcement keeps only the final counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.store.models import Base, UTCDateTime


class AnnouncementRow(Base):
    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    #: The bot account that posted it.
    sender: Mapped[str] = mapped_column(String(255))
    #: What was asked for, e.g. {"kind": "department", "values": ["Sales"]}.
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: First line of the body, for listings (the body itself is only in the encrypted event).
    title: Mapped[str] = mapped_column(String(200))
    requires_ack: Mapped[bool] = mapped_column(Boolean, default=False)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: sending -> sent | failed
    status: Mapped[str] = mapped_column(String(16))
    recipients_total: Mapped[int] = mapped_column(Integer, default=0)
    delivered_total: Mapped[int] = mapped_column(Integer, default=0)
    devices_total: Mapped[int] = mapped_column(Integer, default=0)
    #: Final counts kept after the per-person rows were purged (None until then).
    final_counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AnnouncementPostRow(Base):
    """One encrypted event in one room (an announcement may go to several rooms)."""

    __tablename__ = "announcement_posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    announcement_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("announcements.id", ondelete="CASCADE"), index=True)
    room_id: Mapped[str] = mapped_column(String(255), index=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    #: "text" or "attachment"
    kind: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RecipientRow(Base):
    """One person an acknowledgement-requiring announcement was meant for (a snapshot of
    department and manager at send time, so the report and escalation use the org chart the
    announcement went out under)."""

    __tablename__ = "announcement_recipients"
    __table_args__ = (UniqueConstraint("announcement_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    announcement_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("announcements.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    employee_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(1024))
    department: Mapped[str | None] = mapped_column(String(255))
    manager_user_id: Mapped[str | None] = mapped_column(String(255))
    room_id: Mapped[str | None] = mapped_column(String(255))
    #: Devices the room key was shared with (0: not reached, e.g. never logged in).
    devices: Mapped[int] = mapped_column(Integer, default=0)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: "reaction" or "reply"
    ack_via: Mapped[str | None] = mapped_column(String(16))


class NoticeRow(Base):
    """A reminder or manager summary sent by the bot: at most one per person, announcement
    and stage (the unique constraint makes a second one impossible, even for two ticks)."""

    __tablename__ = "announcement_notices"
    __table_args__ = (UniqueConstraint("announcement_id", "user_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    announcement_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("announcements.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    #: e.g. "reminder-24h", "reminder-0h", "manager-summary"
    stage: Mapped[str] = mapped_column(String(32))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    room_id: Mapped[str | None] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(255), index=True)
    error: Mapped[str | None] = mapped_column(Text)


class BotDirectRoomRow(Base):
    """The bot's encrypted direct-message room with one person (reused for every notice)."""

    __tablename__ = "bot_direct_rooms"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
