"""Reminder schedule, manager summaries and retention, decided from the store (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from provisioner.announcements.config import parse_announcement_config
from provisioner.announcements.report import build_report
from provisioner.announcements.tick import (
    MANAGER_STAGE,
    due_stage,
    plan_notices,
    purge_expired,
)
from provisioner.errors import ConfigError
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import AnnouncementRow, NoticeRow, RecipientRow

DEADLINE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOURS = (24, 0)


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
    assert plan_notices(store, DEADLINE - timedelta(hours=25), HOURS) == []


def test_reminders_go_to_exactly_those_who_have_not_acknowledged(store: Store) -> None:
    planned = plan_notices(store, DEADLINE - timedelta(hours=3), HOURS)
    assert [(n.announcement_id, n.user_id, n.stage) for n in planned] == [
        (1, u, "reminder-24h") for u in ("@a:x", "@c:x", "@d:x", "@e:x")]
    assert "Please acknowledge by 2026-12-01 12:00 UTC" in planned[0].text


def test_claimed_notices_are_not_planned_again(store: Store) -> None:
    with store.session() as session:
        session.add(NoticeRow(announcement_id=1, user_id="@a:x", stage="reminder-24h",
                              claimed_at=DEADLINE))
    planned = plan_notices(store, DEADLINE - timedelta(hours=3), HOURS)
    assert [n.user_id for n in planned] == ["@c:x", "@d:x", "@e:x"]


def test_after_the_deadline_each_manager_gets_one_summary_of_their_own_people(
        store: Store) -> None:
    planned = plan_notices(store, DEADLINE + timedelta(hours=1), HOURS)
    summaries = {n.user_id: n.text for n in planned if n.stage == MANAGER_STAGE}
    assert set(summaries) == {"@lead1:x", "@lead2:x"}
    assert summaries["@lead1:x"].endswith("1 of your team have not acknowledged yet:\n- A")
    assert summaries["@lead2:x"].endswith("2 of your team have not acknowledged yet:\n- C\n- D")
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
    assert plan_notices(store, DEADLINE + timedelta(days=91), HOURS) == []


def test_config_defaults_and_errors() -> None:
    config = parse_announcement_config(None, "a.yaml")
    assert (config.bot_localpart, config.reminder_hours, config.retention_days) == (
        "hauspost-bot", (24, 0), 90)
    custom = parse_announcement_config({"reminder_hours_before_deadline": [0, 48, 4],
                                        "retention_days": 30}, "a.yaml")
    assert custom.reminder_hours == (48, 4, 0)
    for data, message in [
            ({"retention": 3}, "a.yaml: retention: unknown key"),
            ({"reminder_hours_before_deadline": [24, 24]}, "duplicate values"),
            ({"reminder_hours_before_deadline": ["24h"]},
             "reminder_hours_before_deadline[0]: expected whole hours"),
            ({"bot_localpart": "Bot!"}, "bot_localpart: expected a Matrix localpart"),
            ({"retention_days": -1}, "retention_days: must be at least 0")]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_announcement_config(data, "a.yaml")
