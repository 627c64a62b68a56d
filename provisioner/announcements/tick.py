"""One scheduler tick: record acknowledgements, send due reminders and manager summaries,
delete per-person data past its retention.

`run_tick(settings, now)` is what `hauspost tick` (cron / systemd timer) and
`hauspost serve` call. Every notice is claimed in the store (a unique row per person,
announcement and stage) *before* it is sent, so two overlapping ticks or a crash between
send and record can never send it twice; a send that fails is recorded with its error and
not retried (at most once is the promise; the report shows it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioner.actor import current_actor
from provisioner.announcements.bot import Bot, RoomKey
from provisioner.announcements.config import AnnouncementConfig, load_announcement_config
from provisioner.announcements.key_shares import share_with_new_devices
from provisioner.announcements.messages import (
    UTC_ENGLISH,
    CompanyLocale,
    reminder_text,
    summary_text,
)
from provisioner.announcements.report import MANAGER_STAGE
from provisioner.announcements.send import company_locale, open_recording_bot
from provisioner.errors import HauspostError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.settings import Settings
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import (
    AnnouncementRow,
    BotDirectRoomRow,
    NoticeRow,
    RecipientRow,
)
from provisioner.store.models import AccountRow, EmployeeRow

logger = logging.getLogger(__name__)

#: Direct chats created at once: Synapse (SQLite, two cores) creates rooms fastest with a
#: few requests in flight; more only queue up inside it.
ROOM_CONCURRENCY = 8
#: People whose notices are sent at once (an invitation where needed, then one event per
#: notice; the room keys went out before, many per request). Synapse handles a few more
#: small requests in flight a little faster than 8; beyond that they only queue inside it.
SEND_CONCURRENCY = 12


def stage_name(hours: int) -> str:
    return f"reminder-{hours}h"


def due_stage(deadline: datetime, now: datetime, hours: tuple[int, ...]) -> str | None:
    """The reminder stage due at `now`, or None.

    Only the latest due stage is sent: a tick that runs late sends one reminder, not a
    burst. Stages before the deadline are due in [deadline - h, deadline); the stage at the
    deadline (h = 0) stays due after it, so a late tick still sends it once.
    """
    due = [h for h in hours if deadline - timedelta(hours=h) <= now
           and (now < deadline or h == 0)]
    return stage_name(min(due)) if due else None


def earliest_reminder(sent_at: datetime, deadline: datetime, config: AnnouncementConfig
                      ) -> datetime:
    """No reminder before this moment: a share of the time to the deadline must have passed
    (default half) and never within the quiet hours after sending (default one) — so a
    deadline an hour away does not get a "reminder" minutes after the announcement."""
    by_share = sent_at + (deadline - sent_at) * config.reminder_not_before_share
    return max(by_share, sent_at + timedelta(hours=config.reminder_quiet_hours))


@dataclass(frozen=True)
class PlannedNotice:
    announcement_id: int
    user_id: str
    stage: str
    text: str


@dataclass
class TickResult:
    reminders: list[tuple[int, str, str]] = field(default_factory=list)
    summaries: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str, str, str]] = field(default_factory=list)
    purged_announcements: list[int] = field(default_factory=list)
    #: (announcement, user, device): room keys sent to devices added after sending.
    room_keys: list[tuple[int, str, str]] = field(default_factory=list)
    #: Direct chats opened for reminders that are not due yet.
    direct_chats_ahead: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"reminders": [{"announcement": a, "user_id": u, "stage": s}
                              for a, u, s in self.reminders],
                "manager_summaries": [{"announcement": a, "user_id": u}
                                      for a, u in self.summaries],
                "failed": [{"announcement": a, "user_id": u, "stage": s, "error": e}
                           for a, u, s, e in self.failed],
                "purged_announcements": self.purged_announcements,
                "room_keys": [{"announcement": a, "user_id": u, "device_id": d}
                              for a, u, d in self.room_keys],
                "direct_chats_ahead": self.direct_chats_ahead}


def languages(session: Session, user_ids: set[str]) -> dict[str, str | None]:
    """Each account's preferred language as the directory last gave it (None: none)."""
    if not user_ids:
        return {}
    rows = session.execute(
        select(AccountRow.user_id, EmployeeRow.language)
        .join(EmployeeRow, EmployeeRow.employee_id == AccountRow.employee_id)
        .where(AccountRow.user_id.in_(user_ids))).all()
    return dict(rows)


def plan_notices(store: Store, now: datetime, config: AnnouncementConfig,
                 locale: CompanyLocale = UTC_ENGLISH) -> list[PlannedNotice]:
    """Reminders and manager summaries due at `now` that were never claimed, in company
    time and each in its reader's language (the directory's preferred language where we
    speak it, else the company's)."""
    planned: list[PlannedNotice] = []
    with store.session() as session:
        open_ones = session.scalars(
            select(AnnouncementRow).where(AnnouncementRow.requires_ack.is_(True),
                                          AnnouncementRow.status == "sent",
                                          AnnouncementRow.purged_at.is_(None))).all()
        for ann in open_ones:
            assert ann.deadline is not None  # noqa: S101 - requires_ack implies a deadline
            claimed = {(n.user_id, n.stage) for n in session.scalars(
                select(NoticeRow).where(NoticeRow.announcement_id == ann.id))}
            missing = session.scalars(
                select(RecipientRow).where(RecipientRow.announcement_id == ann.id,
                                           RecipientRow.acked_at.is_(None))
                .order_by(RecipientRow.user_id)).all()
            stage = due_stage(ann.deadline, now, config.reminder_hours)
            if now < earliest_reminder(ann.created_at, ann.deadline, config):
                stage = None
            if stage is None and now < ann.deadline:
                continue  # nothing due: most ticks, no language lookup
            spoken = languages(session, {r.user_id for r in missing}
                               | {r.manager_user_id for r in missing if r.manager_user_id})
            if stage is not None:
                planned.extend(
                    PlannedNotice(ann.id, r.user_id, stage, reminder_text(
                        ann.title, ann.deadline, now, locale.for_person(spoken.get(r.user_id))))
                    for r in missing if (r.user_id, stage) not in claimed)
            if now >= ann.deadline:
                by_manager: dict[str, list[str]] = defaultdict(list)
                for r in missing:
                    if r.manager_user_id:
                        by_manager[r.manager_user_id].append(r.display_name)
                for manager, names in sorted(by_manager.items()):
                    if (manager, MANAGER_STAGE) not in claimed:
                        planned.append(PlannedNotice(
                            ann.id, manager, MANAGER_STAGE,
                            summary_text(ann.title, ann.deadline, sorted(names),
                                         locale.for_person(spoken.get(manager)))))
    return planned


def real_now() -> datetime:
    """The clock every stored and audited time comes from: `now` (tick --now) only decides
    what is due, it is never written down as the time something happened."""
    return datetime.now(UTC)


def _claim(store: Store, notice: PlannedNotice) -> bool:
    try:
        with store.session() as session:
            session.execute(insert(NoticeRow).values(
                announcement_id=notice.announcement_id, user_id=notice.user_id,
                stage=notice.stage, claimed_at=real_now()))
        return True
    except IntegrityError:
        return False  # another tick claimed it first


async def direct_room(bot: Bot, store: Store, user_id: str) -> str:
    """The bot's encrypted direct chat for `user_id`, created once. The bot is alone in it
    until the person's first notice: they are invited with it (`ensure_invited`), so a chat
    opened ahead of a reminder is never an empty invitation on somebody's phone."""
    with store.session() as session:
        row = session.get(BotDirectRoomRow, user_id)
        if row is not None:
            return row.room_id
    room_id = await bot.create_room(name="Hauspost", read_only=False)
    with store.session() as session:
        session.add(BotDirectRoomRow(user_id=user_id, room_id=room_id, created_at=real_now()))
    return room_id


async def open_direct_rooms(bot: Bot, store: Store, user_ids: set[str],
                            concurrency: int = ROOM_CONCURRENCY,
                            budget_s: float | None = None) -> int:
    """Create the missing direct chats in parallel (room creation is the slow part of a
    first reminder to many people); returns how many were created. With `budget_s`, no
    new one is started after that many seconds (the rest wait for the next tick).
    Failures are left to the send, which records them per person."""
    have = set(stored_direct_rooms(store, user_ids))
    limit = asyncio.Semaphore(concurrency)
    created = 0
    stop_at = None if budget_s is None else time.perf_counter() + budget_s

    async def one(user_id: str) -> None:
        nonlocal created
        async with limit:
            if stop_at is not None and time.perf_counter() >= stop_at:
                return
            try:
                await direct_room(bot, store, user_id)
                created += 1
            except HauspostError as exc:
                logger.warning("could not open a direct chat with %s: %s", user_id, exc)

    await asyncio.gather(*(one(u) for u in sorted(user_ids - have)))
    return created


def stored_direct_rooms(store: Store, user_ids: set[str]) -> dict[str, str]:
    with store.session() as session:
        return dict(session.execute(
            select(BotDirectRoomRow.user_id, BotDirectRoomRow.room_id)
            .where(BotDirectRoomRow.user_id.in_(user_ids))).all())


async def ensure_invited(bot: Bot, room_id: str, user_id: str) -> bool:
    """Invite the person into their direct chat unless they are in it or invited (a chat
    opened ahead, or one they left); whether an invitation was sent. Raises HauspostError."""
    if user_id in bot.members(room_id):
        return False
    await bot.invite_direct(room_id, user_id)
    return True


async def share_direct_keys(bot: Bot, rooms: dict[str, str]) -> int:
    """A fresh room key for each direct chat, sent to its person's devices — the keys of
    hundreds of chats in a few to-device requests instead of a key share per chat. Returns
    how many devices got a key."""
    if not rooms:
        return 0
    devices = await bot.current_devices(rooms)
    keys = []
    for user_id, room_id in sorted(rooms.items()):
        session_id, session_key = bot.new_room_session(room_id)
        keys.append(RoomKey(room_id, session_id, session_key,
                            {user_id: devices.get(user_id, set())}))
    sent = await bot.send_room_keys(keys)
    return sum(len(pairs) for pairs in sent.values())


async def _send_notice(bot: Bot, store: Store, notice: PlannedNotice, room_id: str,
                       result: TickResult) -> datetime | None:
    """Claim, send and record one notice; the real time it was sent, or None."""
    if not _claim(store, notice):
        return None
    try:
        event_id = await bot.send_prepared(room_id, {"msgtype": "m.text", "body": notice.text})
    except HauspostError as exc:
        _failed(store, notice, room_id, str(exc), result)
        return None
    sent_at = real_now()
    _finish(store, notice, room_id=room_id, event_id=event_id, sent_at=sent_at, error=None)
    if notice.stage == MANAGER_STAGE:
        result.summaries.append((notice.announcement_id, notice.user_id))
    else:
        result.reminders.append((notice.announcement_id, notice.user_id, notice.stage))
    return sent_at


def _failed(store: Store, notice: PlannedNotice, room_id: str | None, error: str,
            result: TickResult) -> None:
    """Record a claimed notice that could not be sent (never retried: at most once)."""
    logger.error("could not send %s of announcement %d to %s: %s", notice.stage,
                 notice.announcement_id, notice.user_id, error)
    _finish(store, notice, room_id=room_id, event_id=None, sent_at=None, error=error)
    result.failed.append((notice.announcement_id, notice.user_id, notice.stage, error))


def _finish(store: Store, notice: PlannedNotice, *, room_id: str | None, event_id: str | None,
            sent_at: datetime | None, error: str | None) -> None:
    with store.session() as session:
        row = session.scalars(select(NoticeRow).where(
            NoticeRow.announcement_id == notice.announcement_id,
            NoticeRow.user_id == notice.user_id, NoticeRow.stage == notice.stage)).one()
        row.room_id = room_id
        row.event_id = event_id
        row.sent_at = sent_at
        row.error = error


def purge_expired(store: Store, now: datetime, retention_days: int, actor: str) -> list[int]:
    """Delete per-person rows `retention_days` after the deadline (as of `now`); keep the
    final counts. The purge itself is recorded at the real time."""
    cutoff = now - timedelta(days=retention_days)
    purged: list[int] = []
    with store.session() as session:
        expired = session.scalars(select(AnnouncementRow).where(
            AnnouncementRow.requires_ack.is_(True), AnnouncementRow.purged_at.is_(None),
            AnnouncementRow.deadline <= cutoff)).all()
        for ann in expired:
            total, seen, acked = session.execute(
                select(func.count(), func.count(RecipientRow.seen_at),
                       func.count(RecipientRow.acked_at))
                .where(RecipientRow.announcement_id == ann.id)).one()
            ann.final_counts = {"recipients": total, "seen": seen, "acknowledged": acked,
                                "delivered": ann.delivered_total}
            ann.purged_at = real_now()
            session.execute(delete(RecipientRow).where(RecipientRow.announcement_id == ann.id))
            session.execute(delete(NoticeRow).where(NoticeRow.announcement_id == ann.id))
            repo.append_audit(session, actor=actor, action="announcement.purge",
                              target=f"announcement:{ann.id}", now=real_now(),
                              reason=f"retention: per-person data deleted {retention_days} "
                                     "days after the deadline",
                              details={"recipients": total, "due_as_of": now.isoformat()})
            purged.append(ann.id)
    return purged


def _audit_notices(store: Store, actor: str, now: datetime,
                   sent: dict[tuple[int, str], list[datetime]], failed: Counter[tuple[int, str]]
                   ) -> None:
    """One audit row per announcement and stage that went out in this tick: counts and the
    real times of the first and last send (never who: that is per-person data with a
    retention period, the audit log is kept forever)."""
    with store.session() as session:
        for announcement_id, stage in sorted(set(sent) | set(failed)):
            times = sorted(sent.get((announcement_id, stage), []))
            details: dict[str, Any] = {
                "stage": stage, "sent": len(times), "failed": failed[(announcement_id, stage)],
                "first_sent_at": times[0].isoformat() if times else None,
                "last_sent_at": times[-1].isoformat() if times else None,
                "due_as_of": now.isoformat()}
            repo.append_audit(session, actor=actor, action="announcement.notices",
                              target=f"announcement:{announcement_id}", now=real_now(),
                              reason="manager summaries due" if stage == MANAGER_STAGE
                              else "reminders due", details=details)


def _audit_room_keys(store: Store, actor: str, shared: list[tuple[int, str, str]]) -> None:
    """One audit row per announcement whose key went to devices added after sending:
    how many devices of how many people (who: per-person data, not for the audit log)."""
    with store.session() as session:
        for announcement_id in sorted({a for a, _, _ in shared}):
            mine = [(u, d) for a, u, d in shared if a == announcement_id]
            repo.append_audit(session, actor=actor, action="announcement.room_keys",
                              target=f"announcement:{announcement_id}", now=real_now(),
                              reason="devices of recipients added after sending",
                              details={"devices": len(mine),
                                       "people": len({u for u, _ in mine})})


def upcoming_people(store: Store, now: datetime) -> set[str]:
    """Who a reminder or manager summary of an open announcement may still reach: its
    recipients that have not acknowledged, and their managers (deadline still ahead),
    with an active account."""
    with store.session() as session:
        rows = session.execute(
            select(RecipientRow.user_id, RecipientRow.manager_user_id)
            .join(AnnouncementRow, AnnouncementRow.id == RecipientRow.announcement_id)
            .where(AnnouncementRow.requires_ack.is_(True), AnnouncementRow.status == "sent",
                   AnnouncementRow.purged_at.is_(None), AnnouncementRow.deadline > now,
                   RecipientRow.acked_at.is_(None))).all()
        people = {u for u, _ in rows} | {m for _, m in rows if m}
        if not people:
            return set()
        # Nobody who has left since: their account is deactivated, a chat would be wasted.
        return set(session.scalars(select(AccountRow.user_id).where(
            AccountRow.user_id.in_(people), AccountRow.active.is_(True))))


async def tick_with(bot: Bot, store: Store, config: AnnouncementConfig, now: datetime,
                    actor: str, locale: CompanyLocale = UTC_ENGLISH) -> TickResult:
    """The tick's work with an open bot. `now` decides what is due; what is written down
    carries the real time.

    Due notices first: direct chats opened where missing, a fresh room key per chat sent to
    its person's devices (many chats per request), then per person an invitation where
    they are not in their chat and one event per notice. Then, within
    `direct_chats_ahead_seconds`, the chats that later reminders of open announcements will
    need are opened ahead, so the tick that reminds a thousand people only sends."""
    result = TickResult()
    started = time.perf_counter()
    await bot.sync()  # records acknowledgements first: nobody acknowledged is reminded
    result.room_keys = await share_with_new_devices(bot, store)
    if result.room_keys:
        _audit_room_keys(store, actor, result.room_keys)
    planned = plan_notices(store, now, config, locale)
    synced = time.perf_counter()
    people = {n.user_id for n in planned}
    opened = await open_direct_rooms(bot, store, people)
    rooms = stored_direct_rooms(store, people)
    created = time.perf_counter()
    devices = await share_direct_keys(bot, rooms)
    ready = time.perf_counter()
    sent: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    by_person: dict[str, list[PlannedNotice]] = defaultdict(list)
    for notice in planned:
        by_person[notice.user_id].append(notice)
    limit = asyncio.Semaphore(SEND_CONCURRENCY)
    invitations = 0

    async def send_to(user_id: str, notices: list[PlannedNotice]) -> None:
        # One person's notices one after the other: they share one direct chat.
        nonlocal invitations
        async with limit:
            room_id = rooms.get(user_id)
            error = None if room_id else "no direct chat could be opened"
            if room_id is not None:
                try:
                    if await ensure_invited(bot, room_id, user_id):
                        invitations += 1  # after the await: no lost update between tasks
                except HauspostError as exc:
                    error = str(exc)
            for notice in notices:
                if error is not None or room_id is None:
                    if _claim(store, notice):
                        _failed(store, notice, room_id, error or "", result)
                    continue
                sent_at = await _send_notice(bot, store, notice, room_id, result)
                if sent_at is not None:
                    sent[(notice.announcement_id, notice.stage)].append(sent_at)

    await asyncio.gather(*(send_to(u, n) for u, n in sorted(by_person.items())))
    if planned:
        logger.info("tick: %d notices, %d new direct chats; sync and room keys %.2f s, "
                    "direct chats %.2f s, keys to %d devices %.2f s, %d invitations and "
                    "sending %.2f s", len(planned), opened, synced - started,
                    created - synced, devices, ready - created, invitations,
                    time.perf_counter() - ready)
    failed = Counter((a, s) for a, _, s, _ in result.failed)
    if sent or failed:
        _audit_notices(store, actor, now, sent, failed)
    if config.direct_chats_ahead_seconds > 0:
        ahead = time.perf_counter()
        result.direct_chats_ahead = await open_direct_rooms(
            bot, store, upcoming_people(store, now),
            budget_s=config.direct_chats_ahead_seconds)
        if result.direct_chats_ahead:
            logger.info("tick: %d direct chats opened ahead of later reminders in %.2f s",
                        result.direct_chats_ahead, time.perf_counter() - ahead)
    result.purged_announcements = purge_expired(store, now, config.retention_days, actor)
    return result


async def run_tick(settings: Settings, now: datetime | None = None) -> TickResult:
    """One tick: log the bot in, do the work, log out. `now` (default: the real time)
    decides what is due; tests and catch-up runs pass another moment."""
    now = now or real_now()
    config = load_announcement_config(settings.data_dir)
    locale = company_locale(settings, config)
    store = open_store(settings.store_url)
    try:
        token = await ensure_service_token(settings)
        actor = current_actor()
        bot = await open_recording_bot(settings, config, token, store, actor)
        try:
            return await tick_with(bot, store, config, now, actor, locale)
        finally:
            await bot.close()
    finally:
        store.close()
