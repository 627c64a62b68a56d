"""A SIGKILLed `hauspost announce` and `hauspost announce --resume`, against the session
Synapse with real E2EE clients (the company of test_announcements.py).

The kill lands at the exact point that used to cost a second announcement: a proxy in
front of Synapse kills `announce` right after Synapse accepted the encrypted post and
before the answer (the event id) reached the process, so the post is in the room and not
in the store. The announcement shows as interrupted, sending it again is refused (exit 8),
and `--resume` finds the bot's post in the room, records it instead of posting again and
finishes the per-person rows: one message in the room, status `sent`.
"""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import RoomMessageText
from sqlalchemy import select

from provisioner.store import repository as repo
from provisioner.store.announcement_models import (
    AnnouncementPostRow,
    AnnouncementRow,
    RecipientRow,
)
from provisioner.store.models import RunLockRow
from tests.harness.kill_proxy import kill_proxy
from tests.integration.test_announcements import (  # noqa: F401 - the fixture by name
    HAUSPOST,
    Company,
    _admin_messages,
    _bot_id,
    _members,
    _wait_for,
    company,
)

pytestmark = pytest.mark.timeout(600)

OPS = range(8, 14)


def _route(co: Company, url: str) -> None:
    path = co.data_dir / "hauspost.yaml"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["homeserver"]["url"] = url
    path.write_text(json.dumps(config), encoding="utf-8")


def _cli(co: Company, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HAUSPOST, *args, "-d", str(co.data_dir)], capture_output=True,
                          text=True, timeout=180, check=False)


def _bot_posts(co: Company, room_id: str) -> list[dict[str, Any]]:
    """The bot's encrypted messages in the room, as Synapse holds them."""
    bot = _bot_id(co)
    return [e for e in _admin_messages(co.server, room_id)
            if e["sender"] == bot and e["type"] == "m.room.encrypted"]


def _is_announcement_post(method: str, path: str, body: bytes) -> bool:
    return method == "PUT" and "/send/m.room.encrypted/" in path


async def test_an_announce_killed_after_its_post_reached_synapse_is_resumed_without_a_second_post(
        company: Company, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    title = f"Betriebsversammlung {company.server.unique('bv')}"
    news = tmp_path / "news.md"
    news.write_text(f"# {title}\n\nDonnerstag, 10 Uhr, Kantine.", encoding="utf-8")
    deadline = (datetime.now(UTC) + timedelta(days=2)).isoformat(timespec="minutes")
    command = ["announce", "--to", "department:Ops", "--body-file", str(news),
               "--ack-by", deadline]
    with kill_proxy(company.server.url) as proxy:
        _route(company, proxy.url)
        try:
            announce = subprocess.Popen([HAUSPOST, *command, "-d", str(company.data_dir)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            proxy.arm(_is_announcement_post, announce.pid)
            announce.wait(timeout=180)
        finally:
            _route(company, company.server.url)
    assert proxy.fired is not None and proxy.fired.status == 200, proxy.fired
    assert announce.returncode == -signal.SIGKILL

    # The post is in the room; the store has the announcement `sending`, no post, no rows.
    with company.store.session() as session:
        row = session.scalars(select(AnnouncementRow).where(
            AnnouncementRow.title == title)).one()
        announcement_id = row.id
        assert row.status == "sending"
        assert session.scalars(select(AnnouncementPostRow).where(
            AnnouncementPostRow.announcement_id == announcement_id)).all() == []
        (sent_audit,) = repo.query_audit(session, repo.AuditQuery(
            action="announcement.send", target=f"announcement:{announcement_id}"))
    (room_id,) = sent_audit.details["rooms"]
    assert len(_bot_posts(company, room_id)) == 1

    # Shown honestly: interrupted, in no room as far as the store knows, and what to do.
    listed = json.loads(_cli(company, "announcements", "--json").stdout)
    (entry,) = [a for a in listed if a["id"] == announcement_id]
    assert (entry["status"], entry["rooms"], entry["posted_in"]) == ("interrupted", [room_id], [])
    assert f"hauspost announce --resume {announcement_id}" in entry["note"]
    report = _cli(company, "announcements", "report", str(announcement_id))
    assert report.returncode == 0, report.stderr
    assert (f"status        interrupted while sending: posted in 0 of 1 room(s) as far as "
            f"recorded; finish it with hauspost announce --resume {announcement_id}"
            in report.stdout), report.stdout

    # Sending the same announcement again is refused: it may already have reached people.
    again = _cli(company, *command)
    assert again.returncode == 8, again.stderr
    assert again.stderr.strip().splitlines() == [
        f"Error: announcement {announcement_id} with this title to department:Ops did not "
        "finish sending (interrupted) and may already be in some rooms: finish it with "
        f"`hauspost announce --resume {announcement_id}` instead of sending it again"]
    with company.store.session() as session:
        assert len(session.scalars(select(AnnouncementRow).where(
            AnnouncementRow.title == title)).all()) == 1
    assert len(_bot_posts(company, room_id)) == 1

    # --resume finds the bot's post, records it and posts nothing.
    resumed = _cli(company, "announce", "--resume", str(announcement_id), "--json")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    (post,) = _bot_posts(company, room_id)
    assert [(f["room_id"], f["event_id"], f["kind"]) for f in result["found"]] == [
        (room_id, post["event_id"], "text")]
    assert result["posted"] == []
    assert (result["recipients"], result["delivered"]) == (6, 6)

    ops = {company.user_ids[i] for i in OPS}
    assert _members(company.server, room_id) == {*ops, _bot_id(company)}
    with company.store.session() as session:
        row = session.get(AnnouncementRow, announcement_id)
        assert row is not None
        assert (row.status, row.recipients_total, row.delivered_total) == ("sent", 6, 6)
        posts = session.scalars(select(AnnouncementPostRow).where(
            AnnouncementPostRow.announcement_id == announcement_id)).all()
        assert [(p.room_id, p.event_id, p.kind) for p in posts] == [
            (room_id, post["event_id"], "text")]
        recipients = session.scalars(select(RecipientRow).where(
            RecipientRow.announcement_id == announcement_id)).all()
        # The devices the key went to before the kill, as the bot kept them.
        assert {(r.user_id, r.room_id, r.devices) for r in recipients} == {
            (u, room_id, 1) for u in ops}
        assert session.get(RunLockRow, f"announcement:{announcement_id}") is None
        audit = [(a.action, a.actor) for a in repo.query_audit(session, repo.AuditQuery(
            target=f"announcement:{announcement_id}"))]
        (resume_row,) = repo.query_audit(session, repo.AuditQuery(
            action="announcement.resume", target=f"announcement:{announcement_id}"))
    assert [a for a, _ in audit] == ["announcement.send", "announcement.resume"]
    assert resume_row.details["was"] == "interrupted"
    assert resume_row.details["found"] == [{"room_id": room_id, "event_id": post["event_id"],
                                            "kind": "text", "recorded_before": False}]
    assert resume_row.details["posted"] == []
    assert resume_row.details["devices_counted_at_resume"] == []

    # The one post is the announcement, and the recipients read it.
    (event,) = await _wait_for(company.clients[OPS[0]], room_id, post["event_id"])
    assert isinstance(event, RoomMessageText) and title in event.body
    assert event.source["content"]["de.hauspost.announcement"]["id"] == announcement_id

    listed = json.loads(_cli(company, "announcements", "--json").stdout)
    (entry,) = [a for a in listed if a["id"] == announcement_id]
    assert entry["status"] == "sent" and "note" not in entry
    # Nothing left to resume; a second resume says so and changes nothing.
    twice = _cli(company, "announce", "--resume", str(announcement_id))
    assert twice.returncode == 3
    assert twice.stderr.strip() == (f"Error: announcement {announcement_id} was sent "
                                    "completely (status sent); there is nothing to resume")
    assert len(_bot_posts(company, room_id)) == 1
