"""What counts as an acknowledgement, and how it is recorded (store on SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from provisioner.announcements.ack import (
    Signal,
    apply_signal,
    is_ack_reaction,
    is_ack_reply,
    record_signals,
    reply_to,
)
from provisioner.store import Store, open_store
from provisioner.store.announcement_models import (
    AnnouncementPostRow,
    AnnouncementRow,
    BotDirectRoomRow,
    NoticeRow,
    RecipientRow,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("key", "ok"), [
    ("✅", True), ("✅\ufe0f", True), (" ✅ ", True),
    ("✔️", False), ("☑️", False), ("👍", False), ("✅✅", False), ("", False)])
def test_only_the_check_mark_reaction_acknowledges(key: str, ok: bool) -> None:
    assert is_ack_reaction(key) is ok


@pytest.mark.parametrize(("body", "ok"), [
    ("ok", True), ("OK", True), ("Ok.", True), (" ok! ", True), ("gelesen", True),
    ("Gelesen!", True), ("> <@bot:x> Reminder: …\n\nok", True),
    ("okay", False), ("ok, aber …", False), ("not ok", False), ("gelesen?", False),
    ("", False), ("> ok", False)])
def test_only_ok_or_gelesen_replies_acknowledge(body: str, ok: bool) -> None:
    assert is_ack_reply(body) is ok


def test_reply_target_is_read_from_the_relation() -> None:
    assert reply_to({"m.relates_to": {"m.in_reply_to": {"event_id": "$a"}}}) == "$a"
    assert reply_to({"m.relates_to": {"rel_type": "m.annotation"}}) is None
    assert reply_to({}) is None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    with s.session() as session:
        for ann_id, requires_ack in ((1, True), (2, True), (3, False)):
            session.add(AnnouncementRow(
                id=ann_id, created_at=T0, actor="t", sender="@bot:x", target={}, title=f"A{ann_id}",
                requires_ack=requires_ack, deadline=T0 + timedelta(days=1) if requires_ack else None,
                status="sent", recipients_total=2, delivered_total=2, devices_total=2))
            session.flush()
            session.add(AnnouncementPostRow(announcement_id=ann_id, room_id="!r",
                                            event_id=f"$ann{ann_id}", kind="text", sent_at=T0))
        session.flush()
        for ann_id in (1, 2):
            for user in ("@a:x", "@b:x"):
                session.add(RecipientRow(announcement_id=ann_id, user_id=user, employee_id=user,
                                         display_name=user, devices=1))
        session.add(BotDirectRoomRow(user_id="@a:x", room_id="!dm-a", created_at=T0))
        session.add(NoticeRow(announcement_id=1, user_id="@a:x", stage="reminder-24h",
                              claimed_at=T0, sent_at=T0, room_id="!dm-a", event_id="$rem1"))
        session.add(NoticeRow(announcement_id=2, user_id="@a:x", stage="reminder-24h",
                              claimed_at=T0, sent_at=T0, room_id="!dm-a", event_id="$rem2"))
    yield s
    s.close()


def acks(store: Store) -> dict[tuple[int, str], tuple[str | None, bool]]:
    with store.session() as session:
        rows = session.scalars(select(RecipientRow)).all()
        return {(r.announcement_id, r.user_id): (r.ack_via, r.seen_at is not None) for r in rows}


def test_reaction_on_the_announcement_acknowledges_only_that_person_and_announcement(
        store: Store) -> None:
    assert record_signals(store, [Signal("reaction", "@b:x", "!r", T0, "$ann1")]) == 1
    assert acks(store) == {(1, "@a:x"): (None, False), (1, "@b:x"): ("reaction", True),
                           (2, "@a:x"): (None, False), (2, "@b:x"): (None, False)}


def test_first_acknowledgement_wins_and_repeats_change_nothing(store: Store) -> None:
    first = Signal("reaction", "@b:x", "!r", T0, "$ann1")
    later = Signal("reply", "@b:x", "!r", T0 + timedelta(hours=1), "$ann1")
    assert record_signals(store, [first]) == 1
    assert record_signals(store, [later, first]) == 0
    with store.session() as session:
        row = session.scalars(select(RecipientRow).where(RecipientRow.announcement_id == 1,
                                                         RecipientRow.user_id == "@b:x")).one()
        assert (row.ack_via, row.acked_at) == ("reaction", T0)


def test_reply_to_a_reminder_acknowledges_that_reminder_s_announcement(store: Store) -> None:
    assert record_signals(store, [Signal("reply", "@a:x", "!dm-a", T0, "$rem1")]) == 1
    assert acks(store)[(1, "@a:x")] == ("reply", True)
    assert acks(store)[(2, "@a:x")] == (None, False)


def test_plain_ok_in_the_dm_acknowledges_the_newest_open_reminder(store: Store) -> None:
    plain = Signal("reply", "@a:x", "!dm-a", T0, None)
    assert record_signals(store, [plain]) == 1
    assert acks(store)[(2, "@a:x")] == ("reply", True)
    assert acks(store)[(1, "@a:x")] == (None, False)
    # The next plain "ok" takes the next open one.
    assert record_signals(store, [plain]) == 1
    assert acks(store)[(1, "@a:x")] == ("reply", True)
    assert record_signals(store, [plain]) == 0


def test_plain_ok_elsewhere_or_from_someone_else_acknowledges_nothing(store: Store) -> None:
    assert record_signals(store, [Signal("reply", "@a:x", "!other", T0, None),
                                  Signal("reply", "@b:x", "!dm-a", T0, None)]) == 0
    assert all(via is None for via, _ in acks(store).values())


def test_receipt_marks_seen_not_acknowledged(store: Store) -> None:
    assert record_signals(store, [Signal("seen", "@a:x", "!r", T0, "$ann2")]) == 1
    assert acks(store)[(2, "@a:x")] == (None, True)


def test_signals_for_announcements_without_tracking_or_unknown_events_record_nothing(
        store: Store) -> None:
    with store.session() as session:
        assert not apply_signal(session, Signal("reaction", "@a:x", "!r", T0, "$ann3"))
        assert not apply_signal(session, Signal("reaction", "@a:x", "!r", T0, "$unknown"))
        assert not apply_signal(session, Signal("reaction", "@stranger:x", "!r", T0, "$ann1"))
    assert all(via is None for via, _ in acks(store).values())
