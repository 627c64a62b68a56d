"""`hauspost announce --resume ID`: finish an announcement whose sending did not finish,
without posting it twice.

An interrupted `announce` (SIGKILL, crash) or a failed one leaves the announcement
`sending`/`failed` with the posts it recorded; the one post Synapse accepted just before
the kill is in the room but not in the store. Resuming:

1. takes the announcement's lock (`announcement:<id>`; refused with exit 7 while the
   process sending it is alive);
2. reads each of its rooms back as the bot, from now to a little before the announcement
   was stored, and finds the bot's own events whose encrypted content carries
   `de.hauspost.announcement.id` = ID (the bot decrypts its own posts: its crypto store
   keeps the session). A bot event in that window it cannot decrypt stops the resume —
   it cannot tell whether that is the announcement;
3. records what it found and posts only what is missing: the text found in one room is
   posted as-is into a room lacking it; if no room has it, the text must be given again
   (`--body`/`--body-file`, the same first line), likewise an attachment (`--attach`);
4. writes the per-person rows (recipients resolved now; devices from the key shares kept
   at sending, else the recipients' devices in the room now, marked in the audit row), the
   totals and status `sent`, and one `announcement.resume` audit row listing what was found
   and what was posted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nio import MegolmEvent, RoomMessagesResponse
from sqlalchemy import select

from provisioner.announcements.bot import Bot
from provisioner.announcements.compose import (
    CONTENT_KEY,
    AnnouncementInputError,
    AnnouncementRequest,
    Attachment,
    text_content,
)
from provisioner.announcements.config import AnnouncementConfig, load_announcement_config
from provisioner.announcements.key_shares import SessionEntry, keys_file
from provisioner.announcements.local_time import in_company_time
from provisioner.announcements.messages import CompanyLocale
from provisioner.announcements.report import UnknownAnnouncementError
from provisioner.announcements.send import (
    AnnounceResult,
    Piece,
    Reach,
    company_locale,
    load_people,
    open_recording_bot,
    post_in_room,
    record_posts,
    record_sent,
)
from provisioner.announcements.sending_state import lock_name, planned_rooms
from provisioner.announcements.targets import Person, parse_target, resolve
from provisioner.errors import HauspostError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.settings import Settings
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import AnnouncementPostRow, AnnouncementRow
from provisioner.store.models import AuditRow
from provisioner.store.run_lock import run_lock

logger = logging.getLogger(__name__)

#: How far before the announcement was stored its rooms are read back (clock skew
#: between this host and Synapse).
SEARCH_MARGIN = timedelta(minutes=10)
MAX_PAGES = 50
PAGE = 100


class ResumeError(HauspostError):
    """The announcement cannot be finished safely; nothing more was posted."""


class NotResumableError(HauspostError):
    exit_code = 3


@dataclass(frozen=True)
class FoundPost:
    room_id: str
    event_id: str
    kind: str  # "text" | "attachment"
    content: dict[str, Any]
    #: When Synapse received it.
    at: datetime


@dataclass(frozen=True)
class ResumeResult:
    sent: AnnounceResult
    #: Posts that were in the rooms already (recorded now if the store lacked them).
    found: tuple[FoundPost, ...]
    #: (room, event id, kind) posted by this resume.
    posted: tuple[tuple[str, str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.sent.to_json(),
                "found": [{"room_id": p.room_id, "event_id": p.event_id, "kind": p.kind}
                          for p in self.found],
                "posted": [{"room_id": r, "event_id": e, "kind": k}
                           for r, e, k in self.posted]}


# --- the pure core -----------------------------------------------------------------------


def post_of(event: Any, room_id: str, bot_user_id: str, announcement_id: int
            ) -> FoundPost | None:
    """The announcement's post, if `event` (as nio returns it, decrypted where it could)
    is one; raises ResumeError for a bot event that could not be decrypted."""
    if getattr(event, "sender", None) != bot_user_id:
        return None
    if isinstance(event, MegolmEvent):
        raise ResumeError(
            f"the bot's event {event.event_id} in {room_id} cannot be decrypted (its key is "
            f"not in bot-store/), so it cannot tell whether announcement {announcement_id} "
            "is already there; nothing was posted")
    source = getattr(event, "source", None)
    content = source.get("content") if isinstance(source, dict) else None
    if not isinstance(content, dict):
        return None
    marker = content.get(CONTENT_KEY)
    if not isinstance(marker, dict) or marker.get("id") != announcement_id:
        return None
    kind = "text" if content.get("msgtype") == "m.text" else "attachment"
    at = datetime.fromtimestamp((getattr(event, "server_timestamp", 0) or 0) / 1000, tz=UTC)
    return FoundPost(room_id, str(event.event_id), kind, dict(content), at)


def missing_pieces(rooms: Sequence[str], found: Sequence[FoundPost], *,
                   text: dict[str, Any] | None, attachment: Attachment | None,
                   had_attachment: bool | None, announcement_id: int
                   ) -> dict[str, list[Piece]]:
    """Per room, what is still to be posted, in order. The text and the file event found
    in one room are posted as they are into the others; `text` (built from a re-given
    body) and `attachment` only where none was found. Raises ResumeError when something
    is missing that cannot be rebuilt."""
    have = {(p.room_id, p.kind) for p in found}
    found_text = next((p.content for p in found if p.kind == "text"), None)
    found_file = next((p.content for p in found if p.kind == "attachment"), None)
    wants_file = bool(had_attachment) or found_file is not None or (
        had_attachment is None and attachment is not None)
    out: dict[str, list[Piece]] = {}
    for room_id in rooms:
        pieces: list[Piece] = []
        if (room_id, "text") not in have:
            content = found_text or text
            if content is None:
                raise ResumeError(
                    f"announcement {announcement_id} is in none of its rooms yet and its text "
                    "is not stored: resume it with the same --body or --body-file")
            pieces.append(Piece("text", content))
        if wants_file and (room_id, "attachment") not in have:
            if found_file is None and attachment is None:
                raise ResumeError(
                    f"announcement {announcement_id}'s attachment is in none of its rooms "
                    "yet: resume it with the same --attach")
            pieces.append(Piece("attachment", found_file, None if found_file else attachment))
        if pieces:
            out[room_id] = pieces
    return out


# --- the adapters --------------------------------------------------------------------------


async def find_posts(bot: Bot, room_id: str, announcement_id: int, since: datetime
                     ) -> list[FoundPost]:
    """The announcement's posts in `room_id`, reading the timeline back to `since`."""
    client = bot.client
    token = client.next_batch
    since_ms = since.timestamp() * 1000
    found: list[FoundPost] = []
    for _ in range(MAX_PAGES):
        resp = await client.room_messages(room_id, start=token, limit=PAGE)
        if not isinstance(resp, RoomMessagesResponse):
            raise ResumeError(f"the bot cannot read {room_id} back: {resp}")
        reached = False
        for event in resp.chunk:
            if (getattr(event, "server_timestamp", None) or 0) < since_ms:
                reached = True
                break
            post = post_of(event, room_id, bot.user_id, announcement_id)
            if post is not None:
                found.append(post)
        if reached or not resp.chunk or not resp.end:
            return found
        token = resp.end
    raise ResumeError(f"read {MAX_PAGES * PAGE} events of {room_id} back without reaching "
                      f"{since.isoformat()}; nothing was posted")


def _kept_shares(bot: Bot, announcement_id: int, room_id: str) -> set[tuple[str, str]] | None:
    """The devices the room key went to at sending, as kept for acknowledgement-requiring
    announcements (provisioner.announcements.key_shares); None when none were kept."""
    path = keys_file(bot)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    entries = [SessionEntry.from_json(e) for e in data.get("sessions", [])]
    shared = {(user, device) for e in entries
              if e.announcement_id == announcement_id and e.room_id == room_id
              for user, devices in e.devices.items() for device in devices}
    return shared or None


async def _devices_now(bot: Bot, room_id: str, wanted: set[str]) -> set[tuple[str, str]]:
    users = bot.members(room_id) & wanted
    current = await bot.current_devices(users)
    return {(user, device) for user, devices in current.items() for device in devices}


@dataclass(frozen=True)
class _Stored:
    status: str
    created_at: datetime
    title: str
    targets: list[str]
    deadline: datetime | None
    requires_ack: bool
    rooms: list[str]
    recorded: set[str]
    had_attachment: bool | None


def _load(store: Store, announcement_id: int) -> _Stored:
    with store.session() as session:
        row = session.get(AnnouncementRow, announcement_id)
        if row is None:
            raise UnknownAnnouncementError(f"no announcement with id {announcement_id} "
                                           "(`hauspost announcements` lists them)")
        if row.status not in ("sending", "failed"):
            raise NotResumableError(f"announcement {announcement_id} was sent completely "
                                    f"(status {row.status}); there is nothing to resume")
        details = session.scalar(select(AuditRow.details).where(
            AuditRow.action == "announcement.send",
            AuditRow.target == f"announcement:{announcement_id}")) or {}
        recorded = {e for (e,) in session.execute(select(AnnouncementPostRow.event_id).where(
            AnnouncementPostRow.announcement_id == announcement_id))}
        return _Stored(status="interrupted" if row.status == "sending" else row.status,
                       created_at=row.created_at, title=row.title,
                       targets=list(row.target.get("targets", [])), deadline=row.deadline,
                       requires_ack=row.requires_ack,
                       rooms=planned_rooms(session, announcement_id), recorded=recorded,
                       had_attachment=(bool(details["attachment"]) if "attachment" in details
                                       else None))


def _request(stored: _Stored, announcement_id: int, *, targets: Sequence[str],
             body: str | None, ack_by: datetime | None,
             attachment: Attachment | None) -> AnnouncementRequest | None:
    """The announcement as given again with --resume (None without a body); what is given
    must be what it was sent with (exit 2 otherwise)."""
    given = sorted(str(parse_target(t)) for t in targets)
    if given and given != sorted(stored.targets):
        raise AnnouncementInputError(
            f"announcement {announcement_id} went to {', '.join(stored.targets)}, not "
            f"{', '.join(given)}")
    if ack_by is not None and ack_by != stored.deadline:
        raise AnnouncementInputError(
            f"announcement {announcement_id} asks for acknowledgement by "
            f"{stored.deadline.isoformat() if stored.deadline else 'no deadline'}, not "
            f"{ack_by.isoformat()}")
    if not body or not body.strip():
        return None if attachment is None else AnnouncementRequest(
            body="", deadline=stored.deadline, attachment=attachment)
    # The stored deadline, even if it has passed: the text must be the one already sent.
    request = AnnouncementRequest(body=body, deadline=stored.deadline, attachment=attachment)
    if (request.title or "(untitled)") != stored.title:
        raise AnnouncementInputError(
            f"the body's first line is not announcement {announcement_id}'s title "
            f"{stored.title!r}")
    return request


async def resume(settings: Settings, config: AnnouncementConfig, store: Store,
                 announcement_id: int, *, admin_token: str, people: Sequence[Person],
                 actor: str, now: datetime, locale: CompanyLocale,
                 targets: Sequence[str] = (), body: str | None = None,
                 ack_by: datetime | None = None,
                 attachment: Attachment | None = None) -> ResumeResult:
    started = time.perf_counter()
    with run_lock(store, lock_name(announcement_id), holder=actor):
        stored = _load(store, announcement_id)
        request = _request(stored, announcement_id, targets=targets, body=body,
                           ack_by=ack_by, attachment=attachment)
        recipients = resolve([parse_target(t) for t in stored.targets], people)
        wanted = {p.user_id for p in recipients}
        bot = await open_recording_bot(settings, config, admin_token, store, actor)
        try:
            found: list[FoundPost] = []
            for room_id in stored.rooms:
                found += await find_posts(bot, room_id, announcement_id,
                                          stored.created_at - SEARCH_MARGIN)
            text = (text_content(request, announcement_id, locale)
                    if request is not None and request.body else None)
            todo = missing_pieces(stored.rooms, found, text=text,
                                  attachment=request.attachment if request else None,
                                  had_attachment=stored.had_attachment,
                                  announcement_id=announcement_id)
            record_posts(store, [
                {"announcement_id": announcement_id, "room_id": p.room_id,
                 "event_id": p.event_id, "kind": p.kind, "sent_at": p.at}
                for p in found if p.event_id not in stored.recorded])
            reach, posted, estimated = await _finish_rooms(
                bot, store, announcement_id, stored, todo, wanted=wanted, now=now)
        finally:
            await bot.close()
        with store.session() as session:
            managers = {p.employee_id: p.user_id for p in people}
            delivered = record_sent(session, announcement_id, recipients=recipients,
                                    managers=managers, reach=reach,
                                    requires_ack=stored.requires_ack)
            repo.append_audit(
                session, actor=actor, action="announcement.resume",
                target=f"announcement:{announcement_id}", now=now,
                reason=f"finished announcement {announcement_id} after its sending was "
                       f"{stored.status}, without posting what was already there",
                details={"was": stored.status,
                         "found": [{"room_id": p.room_id, "event_id": p.event_id,
                                    "kind": p.kind,
                                    "recorded_before": p.event_id in stored.recorded}
                                   for p in found],
                         "posted": [{"room_id": r, "event_id": e, "kind": k}
                                    for r, e, k in posted],
                         "recipients": len(recipients), "delivered": delivered,
                         "devices_counted_at_resume": estimated})
    seconds = time.perf_counter() - started
    logger.info("announcement %d finished: %d post(s) found, %d posted, %d of %d reached",
                announcement_id, len(found), len(posted), delivered, len(recipients))
    event_ids = tuple(p.event_id for p in found) + tuple(e for _, e, _ in posted)
    return ResumeResult(
        sent=AnnounceResult(announcement_id=announcement_id, rooms=tuple(stored.rooms),
                            event_ids=event_ids, recipients=len(recipients),
                            delivered=delivered, devices=reach.total(wanted), not_joined=(),
                            seconds=seconds),
        found=tuple(found), posted=tuple(posted))


async def _finish_rooms(bot: Bot, store: Store, announcement_id: int, stored: _Stored,
                        todo: dict[str, list[Piece]], *, wanted: set[str], now: datetime
                        ) -> tuple[Reach, list[tuple[str, str, str]], list[str]]:
    """Post what is missing; the reach of every room (rooms whose devices had to be
    counted now are returned as `estimated`)."""
    reach = Reach()
    posted: list[tuple[str, str, str]] = []
    estimated: list[str] = []
    for room_id in stored.rooms:
        pieces = todo.get(room_id)
        if pieces:
            # Recipients added to the directory since are joined like at sending.
            await bot.force_join(room_id, sorted(wanted))
            await bot.sync()
            ids = await post_in_room(bot, store, announcement_id, room_id, pieces,
                                     wanted=wanted, requires_ack=stored.requires_ack,
                                     now=now, reach=reach)
            posted += [(room_id, e, p.kind) for e, p in zip(ids, pieces, strict=True)]
            continue
        shared = _kept_shares(bot, announcement_id, room_id)
        if shared is None:
            shared = await _devices_now(bot, room_id, wanted)
            estimated.append(room_id)
        reach.add(room_id, (pair for pair in shared if pair[0] in wanted))
    return reach, posted, estimated


async def resume_with_settings(settings: Settings, announcement_id: int, *, actor: str,
                               now: datetime, targets: Sequence[str] = (),
                               body: str | None = None, ack_by: datetime | None = None,
                               attachment: Attachment | None = None) -> ResumeResult:
    """The entry point of `hauspost announce --resume ID` (a deadline without a time zone
    is company time)."""
    config = load_announcement_config(settings.data_dir)
    locale = company_locale(settings, config)
    if ack_by is not None and ack_by.tzinfo is None:
        ack_by = in_company_time(ack_by, locale.time_zone, "the deadline")
    store = open_store(settings.store_url)
    try:
        people = load_people(settings, store)
        token = await ensure_service_token(settings)
        return await resume(settings, config, store, announcement_id, admin_token=token,
                            people=people, actor=actor, now=now, locale=locale,
                            targets=targets, body=body, ack_by=ack_by,
                            attachment=attachment)
    finally:
        store.close()


def describe(result: ResumeResult) -> str:
    """What `hauspost announce --resume` prints."""
    sent = result.sent
    found_rooms = {p.room_id for p in result.found if p.kind == "text"}
    posted_rooms = {r for r, _, k in result.posted if k == "text"}
    return (f"Announcement {sent.announcement_id} finished: already in {len(found_rooms)} "
            f"room(s) (recorded, not posted again), posted in {len(posted_rooms)} room(s); "
            f"{sent.delivered} of {sent.recipients} people reached on {sent.devices} "
            "devices.")
