"""Reminder schedule, manager summaries and retention, decided from the store (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from provisioner.announcements.config import AnnouncementConfig, parse_announcement_config
from provisioner.announcements.messages import CompanyLocale
from provisioner.announcements.report import build_report
from provisioner.announcements.tick import (
    MANAGER_STAGE,
    due_stage,
    earliest_reminder,
    plan_notices,
    purge_expired,
    upcoming_people,
)
from provisioner.errors import ConfigError
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import AnnouncementRow, NoticeRow, RecipientRow

DEADLINE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOURS = (24, 0)
CONFIG = AnnouncementConfig()


@pytest.mark.parametrize(("offset_hours", "expected"), [
    (-48, None), (-24.01, None), (-24, "reminder-24h"), (-1, "reminder-24h"),
    (-0.01, "reminder-24h"), (0, "reminder-0h"), (5, "reminder-0h"), (24 * 30, "reminder-0h")])
def test_due_stage(offset_hours: float, expected: str | None) -> None:
    assert due_stage(DEADLINE, DEADLINE + timedelta(hours=offset_hours), HOURS) == expected


def test_a_late_tick_sends_only_the_latest_stage() -> None:
    assert due_stage(DEADLINE, DEADLINE - timedelta(hours=1), (48, 24, 2)) == "reminder-2h"
    # Without a stage at the deadline, nothing is reminded after it.
    assert due_stage(DEADLINE, DEADLINE + timedelta(minutes=1), (48, 24)) is None


# people: (user, manager, acked)
PEOPLE = [("@lead1:x", None, True), ("@a:x", "@lead1:x", False), ("@b:x", "@lead1:x", True),
          ("@c:x", "@lead2:x", False), ("@d:x", "@lead2:x", False), ("@e:x", None, False)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    with s.session() as session:
        session.add(AnnouncementRow(
            id=1, created_at=DEADLINE - timedelta(days=3), actor="t", sender="@bot:x",
            target={"targets": ["all"]}, title="Neue Regel", requires_ack=True,
            deadline=DEADLINE, status="sent", recipients_total=6, delivered_total=6,
            devices_total=6))
        session.add(AnnouncementRow(
            id=2, created_at=DEADLINE, actor="t", sender="@bot:x", target={}, title="FYI",
            requires_ack=False, status="sent", recipients_total=6, delivered_total=6,
            devices_total=6))
        session.flush()
        for user, manager, acked in PEOPLE:
            session.add(RecipientRow(
                announcement_id=1, user_id=user, employee_id=user, display_name=user[1:2].upper(),
                department="Sales", manager_user_id=manager, devices=1,
                acked_at=DEADLINE - timedelta(days=1) if acked else None,
                seen_at=DEADLINE - timedelta(days=1) if acked else None,
                ack_via="reaction" if acked else None))
    yield s
    s.close()


def test_nothing_is_due_before_the_first_stage(store: Store) -> None:
    assert plan_notices(store, DEADLINE - timedelta(hours=25), CONFIG) == []


def test_reminders_go_to_exactly_those_who_have_not_acknowledged(store: Store) -> None:
    planned = plan_notices(store, DEADLINE - timedelta(hours=3), CONFIG)
    assert [(n.announcement_id, n.user_id, n.stage) for n in planned] == [
        (1, u, "reminder-24h") for u in ("@a:x", "@c:x", "@d:x", "@e:x")]
    assert planned[0].text == (
        "Reminder: “Neue Regel”. Please acknowledge by Tue 1 Dec 2026, 12:00 UTC: react with "
        "✅ to the announcement, or reply “ok” to this message.")


def test_claimed_notices_are_not_planned_again(store: Store) -> None:
    with store.session() as session:
        session.add(NoticeRow(announcement_id=1, user_id="@a:x", stage="reminder-24h",
                              claimed_at=DEADLINE))
    planned = plan_notices(store, DEADLINE - timedelta(hours=3), CONFIG)
    assert [n.user_id for n in planned] == ["@c:x", "@d:x", "@e:x"]


def test_after_the_deadline_each_manager_gets_one_summary_of_their_own_people(
        store: Store) -> None:
    planned = plan_notices(store, DEADLINE + timedelta(hours=1), CONFIG)
    summaries = {n.user_id: n.text for n in planned if n.stage == MANAGER_STAGE}
    assert set(summaries) == {"@lead1:x", "@lead2:x"}
    assert summaries["@lead1:x"] == ("“Neue Regel” (deadline Tue 1 Dec 2026, 12:00 UTC): 1 of "
                                     "your team has not acknowledged yet:\n- A")
    assert summaries["@lead2:x"] == ("“Neue Regel” (deadline Tue 1 Dec 2026, 12:00 UTC): 2 of "
                                     "your team have not acknowledged yet:\n- C\n- D")
    reminders = {n.user_id for n in planned if n.stage == "reminder-0h"}
    assert reminders == {"@a:x", "@c:x", "@d:x", "@e:x"}


def test_retention_deletes_per_person_rows_and_keeps_counts(store: Store) -> None:
    with store.session() as session:
        session.add(NoticeRow(announcement_id=1, user_id="@a:x", stage="reminder-24h",
                              claimed_at=DEADLINE))
    assert purge_expired(store, DEADLINE + timedelta(days=89), 90, "tick") == []
    assert purge_expired(store, DEADLINE + timedelta(days=90), 90, "tick") == [1]
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(RecipientRow)) == 0
        assert session.scalar(select(func.count()).select_from(NoticeRow)) == 0
        audit = repo.query_audit(session, repo.AuditQuery(action="announcement.purge"))
        assert [(a.target, a.actor) for a in audit] == [("announcement:1", "tick")]
    report = build_report(store, 1)
    assert (report.recipients, report.seen, report.acknowledged, report.purged) == (6, 2, 2, True)
    assert report.missing == []
    assert purge_expired(store, DEADLINE + timedelta(days=200), 90, "tick") == []
    assert plan_notices(store, DEADLINE + timedelta(days=91), CONFIG) == []


def test_reminders_and_summaries_in_german_company_time(store: Store) -> None:
    berlin = CompanyLocale(ZoneInfo("Europe/Berlin"), "de")
    planned = plan_notices(store, DEADLINE + timedelta(hours=1), CONFIG, berlin)
    texts = {(n.user_id, n.stage): n.text for n in planned}
    assert texts[("@a:x", "reminder-0h")] == (
        "Erinnerung: „Neue Regel“. Die Frist (Di., 1. Dez. 2026, 13:00 MEZ) ist abgelaufen – "
        "bitte trotzdem bestätigen: reagieren Sie mit ✅ auf die Ankündigung oder antworten "
        "Sie auf diese Nachricht mit „ok“.")
    assert texts[("@lead2:x", MANAGER_STAGE)] == (
        "„Neue Regel“ (Frist Di., 1. Dez. 2026, 13:00 MEZ): 2 Personen aus Ihrem Team haben "
        "noch nicht bestätigt:\n- C\n- D")
    assert texts[("@lead1:x", MANAGER_STAGE)].startswith(
        "„Neue Regel“ (Frist Di., 1. Dez. 2026, 13:00 MEZ): 1 Person aus Ihrem Team hat")


SENT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("to_deadline", "earliest_after_sending"), [
    (timedelta(hours=48), timedelta(hours=24)),     # half the time
    (timedelta(hours=10), timedelta(hours=5)),
    (timedelta(hours=2), timedelta(hours=1)),       # half = the quiet hour
    (timedelta(minutes=90), timedelta(hours=1)),    # half (45 min) is inside the quiet hour
    (timedelta(minutes=20), timedelta(hours=1)),    # after the deadline, never before 1 h
])
def test_earliest_reminder_is_half_way_and_never_in_the_first_hour(
        to_deadline: timedelta, earliest_after_sending: timedelta) -> None:
    assert earliest_reminder(SENT, SENT + to_deadline, CONFIG) == SENT + earliest_after_sending


def test_earliest_reminder_follows_the_config() -> None:
    config = parse_announcement_config({"reminder_not_before_share": 0.75,
                                        "reminder_quiet_hours_after_sending": 3}, "a.yaml")
    assert earliest_reminder(SENT, SENT + timedelta(hours=8), config) == SENT + timedelta(hours=6)
    assert earliest_reminder(SENT, SENT + timedelta(hours=2), config) == SENT + timedelta(hours=3)
    eager = parse_announcement_config({"reminder_not_before_share": 0,
                                       "reminder_quiet_hours_after_sending": 0}, "a.yaml")
    assert earliest_reminder(SENT, SENT + timedelta(hours=8), eager) == SENT


def test_a_short_deadline_gets_no_reminder_in_the_first_hour(store: Store) -> None:
    """Sent 90 minutes before the deadline: the 24 h stage is due at once by the stages, but
    not before an hour has passed."""
    with store.session() as session:
        ann = session.get(AnnouncementRow, 1)
        assert ann is not None
        ann.created_at = DEADLINE - timedelta(minutes=90)
    assert plan_notices(store, DEADLINE - timedelta(minutes=85), CONFIG) == []
    assert plan_notices(store, DEADLINE - timedelta(minutes=31), CONFIG) == []
    planned = plan_notices(store, DEADLINE - timedelta(minutes=30), CONFIG)
    assert {(n.user_id, n.stage) for n in planned} == {
        (u, "reminder-24h") for u in ("@a:x", "@c:x", "@d:x", "@e:x")}


def test_config_defaults_and_errors() -> None:
    config = parse_announcement_config(None, "a.yaml")
    assert (config.bot_localpart, config.reminder_hours, config.retention_days) == (
        "hauspost-bot", (24, 0), 90)
    custom = parse_announcement_config({"reminder_hours_before_deadline": [0, 48, 4],
                                        "retention_days": 30}, "a.yaml")
    assert custom.reminder_hours == (48, 4, 0)
    assert (config.reminder_not_before_share, config.reminder_quiet_hours, config.language) == (
        0.5, 1.0, None)
    assert parse_announcement_config({"language": "de"}, "a.yaml").language == "de"
    assert config.direct_chats_ahead_seconds == 30.0
    assert parse_announcement_config({"direct_chats_ahead_seconds": 0},
                                     "a.yaml").direct_chats_ahead_seconds == 0.0
    for data, message in [
            ({"retention": 3}, "a.yaml: retention: unknown key"),
            ({"reminder_hours_before_deadline": [24, 24]}, "duplicate values"),
            ({"reminder_hours_before_deadline": ["24h"]},
             "reminder_hours_before_deadline[0]: expected whole hours"),
            ({"bot_localpart": "Bot!"}, "bot_localpart: expected a Matrix localpart"),
            ({"retention_days": -1}, "retention_days: must be at least 0"),
            ({"language": "fr"}, "a.yaml: language: expected one of de, en, got 'fr'"),
            ({"reminder_not_before_share": 1}, "reminder_not_before_share: expected a share"),
            ({"reminder_not_before_share": -0.1}, "reminder_not_before_share: expected a share"),
            ({"reminder_quiet_hours_after_sending": "1h"},
             "reminder_quiet_hours_after_sending: expected a number"),
            ({"reminder_quiet_hours_after_sending": 200},
             "reminder_quiet_hours_after_sending: expected hours from 0 to 168"),
            ({"direct_chats_ahead_seconds": -1},
             "direct_chats_ahead_seconds: expected seconds from 0 to 3600, got -1"),
            ({"direct_chats_ahead_seconds": "30s"}, "direct_chats_ahead_seconds: expected")]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_announcement_config(data, "a.yaml")


def test_chats_are_opened_ahead_for_who_may_still_be_reminded_or_summarised(
        store: Store) -> None:
    # Everyone with an account; @d:x has left since (deactivated), @lead2:x too.
    with store.session() as session:
        for user in ("@lead1:x", "@a:x", "@b:x", "@c:x", "@d:x", "@e:x", "@lead2:x"):
            link = repo.insert_link(session, employee_id=f"E{user}", user_id=user,
                                    now=DEADLINE, run_id=None, display_name=user,
                                    email=None)
            link.active = user not in ("@d:x", "@lead2:x")
    before = DEADLINE - timedelta(days=2)
    # Not acknowledged: a, c, e (d has left); managers of those: lead1 (lead2 has left).
    assert upcoming_people(store, before) == {"@a:x", "@c:x", "@e:x", "@lead1:x"}
    # Once the deadline has passed nothing more is opened ahead (what is due opens its own).
    assert upcoming_people(store, DEADLINE) == set()
