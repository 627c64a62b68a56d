"""Acknowledgements and read receipts, recorded from the bot's sync.

How an employee acknowledges (docs/announcements.md, "Acknowledging"):

* react with ✅ (U+2705; with or without the emoji variation selector U+FE0F) to the
  announcement or to the bot's reminder — in Element: hover or long-press, pick ✅;
* or reply `ok` or `gelesen` (case-insensitive; surrounding spaces and a final `.` or `!`
  are ignored; nothing else) to the announcement or to the bot's reminder. In the direct
  chat with the bot, a plain `ok`/`gelesen` that is not a reply acknowledges the
  announcement of the newest reminder the bot sent there.

A read receipt on the announcement event counts as "seen". Only announcements that require
acknowledgement have per-person rows; for the others nothing per person is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nio import Event, MegolmEvent, ReactionEvent, ReceiptEvent, RoomMessageText, SyncResponse
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from provisioner.announcements.compose import ACK_KEY
from provisioner.store import Store
from provisioner.store.announcement_models import (
    AnnouncementPostRow,
    AnnouncementRow,
    BotDirectRoomRow,
    NoticeRow,
    RecipientRow,
)

logger = logging.getLogger(__name__)

ACK_WORDS = frozenset({"ok", "gelesen"})
_VARIATION_SELECTOR = "\ufe0f"


def is_ack_reaction(key: str) -> bool:
    return key.replace(_VARIATION_SELECTOR, "").strip() == ACK_KEY


def _strip_reply_fallback(body: str) -> str:
    # Replies carry the quoted original as "> " lines before the answer (reply fallback).
    lines = [line for line in body.splitlines() if not line.startswith(">")]
    return "\n".join(lines)


def is_ack_reply(body: str) -> bool:
    text = _strip_reply_fallback(body).strip().rstrip(".!").strip().casefold()
    return text in ACK_WORDS


def reply_to(content: dict[str, Any]) -> str | None:
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None
    in_reply = relates.get("m.in_reply_to")
    if isinstance(in_reply, dict) and isinstance(in_reply.get("event_id"), str):
        return str(in_reply["event_id"])
    return None


@dataclass(frozen=True)
class Signal:
    """One thing an employee did that the store should know."""

    kind: str  # "reaction" | "reply" | "seen"
    user_id: str
    room_id: str
    at: datetime
    #: The event it relates to (reaction/receipt target, or reply target), if any.
    event_id: str | None


def _ts(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def signals_from_event(event: Event, room_id: str, bot_user_id: str) -> Signal | None:
    sender = getattr(event, "sender", None)
    if not sender or sender == bot_user_id or isinstance(event, MegolmEvent):
        return None
    at = _ts(getattr(event, "server_timestamp", None))
    if isinstance(event, ReactionEvent):
        if is_ack_reaction(event.key):
            return Signal("reaction", sender, room_id, at, event.reacts_to)
        return None
    if isinstance(event, RoomMessageText) and is_ack_reply(event.body):
        content = event.source.get("content", {}) if isinstance(event.source, dict) else {}
        return Signal("reply", sender, room_id, at, reply_to(content))
    return None


def signals_from_sync(resp: SyncResponse, bot_user_id: str) -> list[Signal]:
    out: list[Signal] = []
    for room_id, room in resp.rooms.join.items():
        for event in room.timeline.events:
            signal = signals_from_event(event, room_id, bot_user_id)
            if signal is not None:
                out.append(signal)
        for eph in room.ephemeral:
            if isinstance(eph, ReceiptEvent):
                for receipt in eph.receipts:
                    if receipt.user_id != bot_user_id and receipt.receipt_type.startswith("m.read"):
                        out.append(Signal("seen", receipt.user_id, room_id,
                                          _ts(receipt.timestamp), receipt.event_id))
    return out


async def backfill_signals(client: Any, room_id: str, prev_batch: str, bot_user_id: str,
                           since: datetime, max_pages: int = 50) -> list[Signal]:
    """Signals in the gap of a limited sync timeline (more events than the sync returned).

    Pages back from `prev_batch` until events are older than `since` (the oldest open
    announcement: nothing before it can acknowledge anything). Recording is idempotent, so
    reading an event twice is harmless.
    """
    out: list[Signal] = []
    token = prev_batch
    for _ in range(max_pages):
        resp = await client.room_messages(room_id, start=token, limit=500)
        chunk = getattr(resp, "chunk", None)
        if not chunk:
            break
        oldest = None
        for event in chunk:
            if isinstance(event, MegolmEvent):
                event = client.decrypt_event(event)
            signal = signals_from_event(event, room_id, bot_user_id)
            if signal is not None:
                out.append(signal)
            oldest = getattr(event, "server_timestamp", None)
        if oldest is not None and _ts(oldest) < since or not getattr(resp, "end", None):
            break
        token = resp.end
    else:
        logger.warning("stopped reading back %s after %d pages; older acknowledgements there "
                       "are not recorded", room_id, max_pages)
    return out


def oldest_open_announcement(store: Store) -> datetime | None:
    with store.session() as session:
        value = session.scalar(select(func.min(AnnouncementRow.created_at)).where(
            AnnouncementRow.requires_ack.is_(True), AnnouncementRow.purged_at.is_(None)))
    return value


async def collect(client: Any, store: Store, resp: SyncResponse, bot_user_id: str) -> int:
    """Record every signal of one sync response, reading back limited timelines."""
    signals = signals_from_sync(resp, bot_user_id)
    since = oldest_open_announcement(store)
    if since is not None:
        for room_id, room in resp.rooms.join.items():
            if room.timeline.limited and room.timeline.prev_batch:
                signals += await backfill_signals(client, room_id, room.timeline.prev_batch,
                                                  bot_user_id, since)
    return record_signals(store, signals)


# --- recording --------------------------------------------------------------------------


def _announcement_of_event(session: Session, event_id: str) -> int | None:
    post = session.scalar(select(AnnouncementPostRow.announcement_id)
                          .where(AnnouncementPostRow.event_id == event_id))
    if post is not None:
        return int(post)
    notice = session.scalar(select(NoticeRow.announcement_id).where(NoticeRow.event_id == event_id))
    return None if notice is None else int(notice)


def _newest_reminder_in_dm(session: Session, user_id: str, room_id: str) -> int | None:
    dm = session.get(BotDirectRoomRow, user_id)
    if dm is None or dm.room_id != room_id:
        return None
    row = session.scalar(
        select(NoticeRow.announcement_id)
        .join(RecipientRow, (RecipientRow.announcement_id == NoticeRow.announcement_id)
              & (RecipientRow.user_id == NoticeRow.user_id))
        .where(NoticeRow.user_id == user_id, NoticeRow.room_id == room_id,
               NoticeRow.sent_at.is_not(None), NoticeRow.stage.like("reminder-%"),
               RecipientRow.acked_at.is_(None))
        .order_by(NoticeRow.id.desc()).limit(1))
    return None if row is None else int(row)


def apply_signal(session: Session, signal: Signal) -> bool:
    """Record one signal; True if it changed something (first ack / first seen)."""
    announcement_id: int | None = None
    if signal.event_id is not None:
        announcement_id = _announcement_of_event(session, signal.event_id)
    if announcement_id is None and signal.kind == "reply" and signal.event_id is None:
        announcement_id = _newest_reminder_in_dm(session, signal.user_id, signal.room_id)
    if announcement_id is None:
        return False
    where = ((RecipientRow.announcement_id == announcement_id)
             & (RecipientRow.user_id == signal.user_id))
    changed = 0
    if signal.kind in ("reaction", "reply"):
        changed += _rowcount(session.execute(
            update(RecipientRow).where(where, RecipientRow.acked_at.is_(None))
            .values(acked_at=signal.at, ack_via=signal.kind)))
    changed += _rowcount(session.execute(
        update(RecipientRow).where(where, RecipientRow.seen_at.is_(None))
        .values(seen_at=signal.at)))
    return changed > 0


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def record_signals(store: Store, signals: list[Signal]) -> int:
    if not signals:
        return 0
    with store.session() as session:
        changed = sum(1 for s in signals if apply_signal(session, s))
    if changed:
        logger.info("recorded %d acknowledgement/seen change(s)", changed)
    return changed
