"""`hauspost announce`: validate, resolve, post encrypted, record.

Order matters: the request and the targets are checked completely before the bot logs in,
so bad input never sends anything. The announcement is stored (status `sending`, with a
lock row naming this process) before the first post, every post is recorded as soon as
Synapse has it, and the final status releases the lock: a killed `announce` leaves an
announcement that shows as interrupted, which `hauspost announce --resume ID` finishes
without posting twice (provisioner.announcements.resume). Sending the same announcement
again while one is unfinished is refused (exit 8).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nio import SyncResponse
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from provisioner.accounts.bot_account import audit_bot_account_change
from provisioner.accounts.policy import policy_for
from provisioner.announcements.ack import collect
from provisioner.announcements.bot import Bot, BotError, SyncHandler, open_bot
from provisioner.announcements.compose import (
    AnnouncementRequest,
    Attachment,
    file_content,
    text_content,
    validate_request,
)
from provisioner.announcements.config import AnnouncementConfig, load_announcement_config
from provisioner.announcements.key_shares import remember_session
from provisioner.announcements.local_time import in_company_time
from provisioner.announcements.messages import (
    UTC_ENGLISH,
    CompanyLocale,
    default_language,
    room_name,
)
from provisioner.announcements.org_rooms import org_rooms
from provisioner.announcements.sending_state import (
    UnfinishedAnnouncementError,
    lock_name,
    resume_command,
    unfinished_like,
)
from provisioner.announcements.targets import (
    ExplicitRoom,
    NewRoomPerAnnouncement,
    Person,
    RoomSource,
    Target,
    active_links,
    check_room_id,
    parse_target,
    people_from_employees,
    resolve,
)
from provisioner.directory.read import read_directory
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.settings import Settings
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import (
    AnnouncementPostRow,
    AnnouncementRow,
    RecipientRow,
)
from provisioner.store.models import RunLockRow
from provisioner.store.run_lock import RunLockedError, lock_row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnounceResult:
    announcement_id: int
    rooms: tuple[str, ...]
    event_ids: tuple[str, ...]
    recipients: int
    delivered: int
    devices: int
    not_joined: tuple[str, ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.announcement_id, "rooms": list(self.rooms),
                "event_ids": list(self.event_ids), "recipients": self.recipients,
                "delivered": self.delivered, "devices": self.devices,
                "not_joined": list(self.not_joined), "seconds": round(self.seconds, 3)}


def company_locale(settings: Settings, config: AnnouncementConfig) -> CompanyLocale:
    """The company's time zone (`directory.time_zone`) and the announcements' language
    (`language:` in announcements.yaml, else decided by that time zone)."""
    tz = policy_for(settings).time_zone
    return CompanyLocale(tz, config.language or default_language(tz))


def sync_handler(store: Store) -> SyncHandler:
    async def handle(bot: Bot, resp: SyncResponse) -> None:
        await collect(bot.client, store, resp, bot.user_id)
    return handle


async def open_recording_bot(settings: Settings, config: AnnouncementConfig, admin_token: str,
                             store: Store, actor: str) -> Bot:
    """The bot, recording acknowledgements from every sync it makes (and auditing a change
    to its account)."""
    bot = await open_bot(settings, config, admin_token, on_sync=sync_handler(store))
    if bot.account_change is not None:
        audit_bot_account_change(store, bot.user_id, bot.account_change, actor=actor,
                                 reason="the announcement bot's account (one device, "
                                        f"{bot.device_id})")
    return bot


async def announce(settings: Settings, config: AnnouncementConfig, store: Store, *,
                   admin_token: str, targets: Sequence[Target], people: Sequence[Person],
                   request: AnnouncementRequest, rooms: RoomSource, actor: str,
                   now: datetime, locale: CompanyLocale = UTC_ENGLISH) -> AnnounceResult:
    recipients = resolve(targets, people)  # raises before anything is sent
    started = time.perf_counter()
    bot = await open_recording_bot(settings, config, admin_token, store, actor)
    logger.info("bot ready in %.2f s", time.perf_counter() - started)
    try:
        managers = {p.employee_id: p.user_id for p in people}
        return await _post(bot, settings, store, targets=targets, recipients=recipients,
                           managers=managers, request=request, rooms=rooms, actor=actor,
                           now=now, started=started, locale=locale)
    finally:
        await bot.close()


async def _post(bot: Bot, settings: Settings, store: Store, *, targets: Sequence[Target],
                recipients: list[Person], managers: dict[str, str],
                request: AnnouncementRequest, rooms: RoomSource,
                actor: str, now: datetime, started: float,
                locale: CompanyLocale) -> AnnounceResult:
    wanted = {p.user_id for p in recipients}
    room_ids = rooms.rooms_for(targets)
    if room_ids is None:  # no org room for these targets: one of its own
        # Room names are plaintext on the server: never put the (encrypted) title there.
        room_ids = [await bot.create_room(name=room_name(now, locale), read_only=True,
                                          extra_power={settings.service_user_id: 100})]
    not_joined: set[str] = set()
    for room_id in room_ids:
        if not await bot.can_post(room_id):
            raise BotError(f"the bot {bot.user_id} may not post in {room_id}: give it a power "
                           "level that may send messages there (docs/announcements.md)")
    for room_id in room_ids:
        # The bot itself first: org rooms belong to the service account.
        if await bot.force_join(room_id, [bot.user_id]):
            raise BotError(f"the bot {bot.user_id} could not join {room_id}")
        not_joined |= set(await bot.force_join(room_id, sorted(wanted)))
    await bot.sync()
    logger.info("rooms ready after %.2f s", time.perf_counter() - started)

    with store.session() as session:
        row = AnnouncementRow(created_at=now, actor=actor, sender=bot.user_id,
                              target={"targets": [str(t) for t in targets]},
                              title=request.title or "(untitled)",
                              requires_ack=request.requires_ack, deadline=request.deadline,
                              status="sending", recipients_total=len(recipients),
                              delivered_total=0, devices_total=0)
        session.add(row)
        session.flush()
        announcement_id = row.id
        # Names this process as the one sending it: once it is gone, the announcement
        # shows as interrupted (sending_state) and `--resume` may finish it.
        session.add(lock_row(lock_name(announcement_id), actor))
        repo.append_audit(session, actor=actor, action="announcement.send",
                          target=f"announcement:{announcement_id}", now=datetime.now(UTC),
                          reason=f"announcement to {', '.join(str(t) for t in targets)}",
                          details={"rooms": room_ids, "recipients": len(recipients),
                                   "requires_ack": request.requires_ack,
                                   "deadline": request.deadline.isoformat()
                                   if request.deadline else None,
                                   "attachment": request.attachment.filename
                                   if request.attachment else None})

    pieces = [Piece("text", text_content(request, announcement_id, locale))]
    if request.attachment is not None:
        pieces.append(Piece("attachment", None, request.attachment))
    reach = Reach()
    event_ids: list[str] = []
    try:
        for room_id in room_ids:
            event_ids += await post_in_room(bot, store, announcement_id, room_id, pieces,
                                            wanted=wanted, requires_ack=request.requires_ack,
                                            now=now, reach=reach)
    except BaseException:
        with store.session() as session:
            end_sending(session, announcement_id, "failed")
        raise
    with store.session() as session:
        delivered = record_sent(session, announcement_id, recipients=recipients,
                                managers=managers, reach=reach,
                                requires_ack=request.requires_ack)
    seconds = time.perf_counter() - started
    logger.info("announcement %d: %d of %d recipients reached on %d devices in %.2f s",
                announcement_id, delivered, len(recipients), reach.total(wanted), seconds)
    return AnnounceResult(announcement_id=announcement_id, rooms=tuple(room_ids),
                          event_ids=tuple(event_ids), recipients=len(recipients),
                          delivered=delivered, devices=reach.total(wanted),
                          not_joined=tuple(sorted(not_joined)), seconds=seconds)


@dataclass(frozen=True)
class Piece:
    """One event of an announcement in a room: its text, or its attachment."""

    kind: str  # "text" | "attachment"
    #: The event content; None: upload `attachment` (encrypted) and send its file event.
    content: dict[str, Any] | None
    attachment: Attachment | None = None


@dataclass
class Reach:
    """Per recipient: the devices the room key went to, and the room they got it in."""

    devices: Counter[str] = field(default_factory=Counter)
    room_of: dict[str, str] = field(default_factory=dict)

    def add(self, room_id: str, shared: Iterable[tuple[str, str]]) -> None:
        for user, _device in shared:
            self.devices[user] += 1
            self.room_of.setdefault(user, room_id)

    def total(self, wanted: Iterable[str]) -> int:
        return sum(self.devices[u] for u in wanted)


async def post_in_room(bot: Bot, store: Store, announcement_id: int, room_id: str,
                       pieces: Sequence[Piece], *, wanted: set[str], requires_ack: bool,
                       now: datetime, reach: Reach) -> list[str]:
    """Share a fresh room key with the recipients' devices and post `pieces`; each post is
    recorded as soon as Synapse has it (the listing shows which rooms have it, and
    `--resume` has only the one post a kill may cut off to look for)."""
    shared = {(u, d) for u, d in await bot.share_keys(room_id) if u in wanted}
    reach.add(room_id, shared)
    if requires_ack:  # open until acknowledged: new devices get the key
        remember_session(bot, announcement_id, room_id, shared)
    event_ids = []
    for piece in pieces:
        content = piece.content
        if content is None:
            if piece.attachment is None:
                raise ValueError("a piece needs content or an attachment")
            a = piece.attachment
            mxc, keys = await bot.upload_encrypted(a.data, filename=a.filename,
                                                   mimetype=a.mimetype)
            content = file_content(a, mxc, keys, announcement_id)
        event_id = await bot.send(room_id, content)
        record_posts(store, [{"announcement_id": announcement_id, "room_id": room_id,
                               "event_id": event_id, "kind": piece.kind, "sent_at": now}])
        event_ids.append(event_id)
    return event_ids


def end_sending(session: Session, announcement_id: int, status: str) -> AnnouncementRow:
    """Set the final status and release the announcement's lock row (one transaction)."""
    row = session.get(AnnouncementRow, announcement_id)
    if row is None:
        raise LookupError(f"announcement {announcement_id} not found")
    row.status = status
    session.execute(delete(RunLockRow).where(RunLockRow.name == lock_name(announcement_id)))
    return row


def record_sent(session: Session, announcement_id: int, *, recipients: Sequence[Person],
                managers: dict[str, str], reach: Reach, requires_ack: bool) -> int:
    """Per-person rows (acknowledgement-requiring announcements only), totals, status
    `sent`; returns how many recipients were reached."""
    wanted = {p.user_id for p in recipients}
    if requires_ack:
        # Privacy: per-person rows only when acknowledgement is required.
        session.execute(insert(RecipientRow), [
            {"announcement_id": announcement_id, "user_id": p.user_id,
             "employee_id": p.employee_id, "display_name": p.display_name,
             "department": p.department, "manager_user_id": managers.get(p.manager_id or ""),
             "room_id": reach.room_of.get(p.user_id), "devices": reach.devices[p.user_id]}
            for p in recipients])
    delivered = sum(1 for u in wanted if reach.devices[u] > 0)
    sent = end_sending(session, announcement_id, "sent")
    sent.delivered_total = delivered
    sent.devices_total = reach.total(wanted)
    return delivered


def record_posts(store: Store, posts: list[dict[str, Any]]) -> None:
    if posts:
        with store.session() as session:
            session.execute(insert(AnnouncementPostRow), posts)


def load_people(settings: Settings, store: Store) -> list[Person]:
    """Active directory employees that have an account (directory attributes + store links)."""
    return people_from_employees(read_directory(settings).employees, active_links(store))


def refuse_if_unfinished(store: Store, request: AnnouncementRequest,
                         targets: Sequence[str]) -> None:
    """Raise when an announcement with this title, targets and deadline did not finish
    sending: posting it again could reach people twice. UnfinishedAnnouncementError (8)
    names `--resume`; RunLockedError (7) while it is being sent right now."""
    found = unfinished_like(store, title=request.title or "(untitled)", targets=targets,
                            deadline=request.deadline)
    if found is None:
        return
    announcement_id, status = found
    if status == "sending":
        raise RunLockedError(f"announcement {announcement_id} with this title to "
                             f"{', '.join(targets)} is being sent right now; wait for it")
    raise UnfinishedAnnouncementError(
        f"announcement {announcement_id} with this title to {', '.join(targets)} did not "
        f"finish sending ({status}) and may already be in some rooms: finish it with "
        f"`{resume_command(announcement_id)}` instead of sending it again")


async def announce_with_settings(settings: Settings, *, targets: Sequence[str], body: str,
                                 ack_by: datetime | None, attachment: Attachment | None,
                                 room: str | None, actor: str,
                                 now: datetime) -> AnnounceResult:
    """The one entry point of `hauspost announce` and the console: everything is checked
    (targets, deadline, body, attachment) before the bot logs in. A deadline without a
    time zone is company time (`directory.time_zone`)."""
    config = load_announcement_config(settings.data_dir)
    locale = company_locale(settings, config)
    parsed_targets = [parse_target(t) for t in targets]
    if ack_by is not None and ack_by.tzinfo is None:
        ack_by = in_company_time(ack_by, locale.time_zone, "the deadline")
    request = validate_request(body, ack_by, now, attachment)
    store = open_store(settings.store_url)
    try:
        refuse_if_unfinished(store, request, [str(t) for t in parsed_targets])
        people = load_people(settings, store)
        resolve(parsed_targets, people)  # unknown targets fail here, before any login
        rooms: RoomSource = (ExplicitRoom(check_room_id(room)) if room
                             else org_rooms(settings, store) or NewRoomPerAnnouncement())
        token = await ensure_service_token(settings)
        return await announce(settings, config, store, admin_token=token,
                              targets=parsed_targets, people=people, request=request,
                              rooms=rooms, actor=actor, now=now, locale=locale)
    finally:
        store.close()
