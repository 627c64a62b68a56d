"""Announcements against the session Synapse (default modules) with 20 real E2EE clients.

One module-scoped company of 20 employees in three departments (a head each), logged in
concurrently as matrix-nio clients. Each test makes its own announcement; the first test
walks one announcement from sending through acknowledgements, reminders and escalation
with an injected `now`.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from nio import (
    AsyncClient,
    DownloadResponse,
    Event,
    MegolmEvent,
    RoomEncryptedFile,
    RoomMessageText,
    SyncResponse,
    ToDeviceResponse,
)
from nio.crypto.attachments import decrypt_attachment
from nio.exceptions import EncryptionError
from sqlalchemy import func, select

from provisioner.accounts.bot_account import bootstrap_own_accounts
from provisioner.announcements import bot as bot_module
from provisioner.announcements.compose import validate_request
from provisioner.announcements.config import load_announcement_config
from provisioner.announcements.report import build_report, render_csv, render_html
from provisioner.announcements.send import AnnounceResult, announce
from provisioner.announcements.targets import (
    NewRoomPerAnnouncement,
    Person,
    Target,
    active_links,
    people_from_employees,
)
from provisioner.announcements.tick import SEND_CONCURRENCY, run_tick
from provisioner.directory.read import read_directory
from provisioner.settings import Settings, load_settings
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import (
    AnnouncementRow,
    BotDirectRoomRow,
    NoticeRow,
    RecipientRow,
)
from provisioner.store.rooms_models import ManagedRoomRow
from tests.harness.e2ee import E2EEError, close_all, e2ee_login, send_content
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, TestUser

HAUSPOST = str(Path(sys.executable).parent / "hauspost")
DEPARTMENTS = ["Sales"] * 8 + ["Ops"] * 6 + ["IT"] * 6
HEADS = {"Sales": 0, "Ops": 8, "IT": 14}
#: Who does not acknowledge in the main walk-through (indexes into the 20).
SILENT = (3, 5, 10, 12, 17)
#: Of the silent ones, these still open the room (read receipt -> "seen").
SILENT_BUT_SEEN = (3, 10)
#: Preferred languages in the HR file (the rest have none): English for 13, a language
#: the bot does not speak for 10 (it gets the company's).
LANGUAGES = {13: "en-GB", 10: "fr"}


@dataclass
class Company:
    server: SynapseServer
    data_dir: Path
    settings: Settings
    store: Store
    user_ids: list[str]
    names: list[str]
    clients: list[AsyncClient]

    def people(self) -> list[Person]:
        return people_from_employees(read_directory(self.settings).employees,
                                     active_links(self.store))

    def index(self, user_id: str) -> int:
        return self.user_ids.index(user_id)


def _write_company(data_dir: Path, server: SynapseServer, prefix: str) -> tuple[list[str], list[str]]:
    keys = data_dir / "keys"
    keys.mkdir(parents=True)
    os.chmod(keys, 0o700)
    shutil.copy(server.data_dir / "keys" / "service_account_token", keys / "service_account_token")
    rows = ["id;login;name;dept;city;manager;groups;lang"]
    logins, names = [], []
    for i, dept in enumerate(DEPARTMENTS):
        head = HEADS[dept]
        login, name = f"{prefix}e{i:02d}", f"{dept} Person {i:02d}"
        manager = "" if i == head else f"E{head:02d}"
        groups = "team-leads" if i == head else ""
        rows.append(f"E{i:02d};{login};{name};{dept};{'Berlin' if i % 2 else 'Hamburg'};"
                    f"{manager};{groups};{LANGUAGES.get(i, '')}")
        logins.append(login)
        names.append(name)
    (data_dir / "employees.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = {
        "server_name": server.server_name,
        "homeserver": {"url": server.url, "config": str(server.data_dir / "homeserver.yaml")},
        "service_account": {"localpart": server.admin_user_id[1:].split(":")[0],
                            "token_file": "keys/service_account_token"},
        "store": {"url": f"sqlite:///{data_dir / 'hauspost.db'}"},
        "directory": {"sources": ["hr_csv"], "time_zone": "UTC", "hr_csv": {
            "path": "employees.csv",
            "columns": {"employee_id": "id", "localpart": "login", "display_name": "name",
                        "department": "dept", "location": "city", "manager_id": "manager",
                        "groups": "groups", "language": "lang"}}},
    }
    (data_dir / "hauspost.yaml").write_text(json.dumps(config), encoding="utf-8")
    # A bot of this company's own: other test modules' companies on the session Synapse
    # (e.g. test_announce_resume.py, which uses this fixture) must not share its account.
    (data_dir / "announcements.yaml").write_text(f"bot_localpart: {prefix}-bot\n",
                                                 encoding="utf-8")
    return logins, names


def _create_account(server: SynapseServer, user_id: str, name: str) -> None:
    with server.admin() as c:
        c.put(f"/_synapse/admin/v2/users/{quote(user_id)}",
              json={"password": TEST_PASSWORD, "displayname": name}).raise_for_status()


@pytest_asyncio.fixture(scope="module")
async def company(synapse: SynapseServer, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[Company]:
    data_dir = tmp_path_factory.mktemp("announce")
    logins, names = _write_company(data_dir, synapse, synapse.unique("an"))
    user_ids = [synapse.mxid(lp) for lp in logins]
    await asyncio.gather(*(asyncio.to_thread(_create_account, synapse, u, n)
                           for u, n in zip(user_ids, names, strict=True)))
    settings = load_settings(data_dir)
    store = open_store(settings.store_url)
    now = datetime.now(UTC)
    with store.session() as session:
        for i, user_id in enumerate(user_ids):
            repo.insert_link(session, employee_id=f"E{i:02d}", user_id=user_id, now=now,
                             run_id=None, display_name=names[i], email=None)
    users = [TestUser(user_id=u, password=TEST_PASSWORD, token="", device_id="")
             for u in user_ids]
    clients = list(await asyncio.gather(*(e2ee_login(synapse, u, data_dir / "clients")
                                          for u in users)))
    try:
        yield Company(synapse, data_dir, settings, store, user_ids, names, clients)
    finally:
        await close_all(*clients)
        store.close()


# --- helpers ---------------------------------------------------------------------------


async def _send(company: Company, targets: list[Target], body: str,
                deadline: datetime | None = None, now: datetime | None = None,
                attachment: Any = None) -> AnnounceResult:
    now = now or datetime.now(UTC)
    request = validate_request(body, deadline, now, attachment)
    return await announce(company.settings, load_announcement_config(company.data_dir),
                          company.store, admin_token=company.server.admin_token,
                          targets=targets, people=company.people(), request=request,
                          rooms=NewRoomPerAnnouncement(), actor="test", now=now)


async def _wait_for(client: AsyncClient, room_id: str, *event_ids: str,
                    timeout: float = 30.0) -> list[Event]:
    """Sync until every event arrived in `room_id`, decrypted (MegolmEvent = not yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: dict[str, Event] = {}
    while loop.time() < deadline:
        resp = await client.sync(timeout=300)
        room = resp.rooms.join.get(room_id) if isinstance(resp, SyncResponse) else None
        for event in room.timeline.events if room else []:
            if event.event_id in event_ids:
                found[event.event_id] = event
        for event_id, event in list(found.items()):
            if isinstance(event, MegolmEvent):  # the key may arrive after the event
                found[event_id] = client.decrypt_event(event)
        if len(found) == len(event_ids) and not any(
                isinstance(e, MegolmEvent) for e in found.values()):
            return [found[e] for e in event_ids]
    raise E2EEError(f"{client.user_id} never decrypted {event_ids} in {room_id}: {found}")


async def _bot_dm_messages(client: AsyncClient, bot_user_id: str,
                           rounds: int = 3) -> list[str]:
    """Accept the bot's DM invitation (if any) and return the decrypted bodies it sent."""
    bodies: list[str] = []
    for _ in range(rounds):
        await client.sync(timeout=300)
        for room_id, room in list(client.invited_rooms.items()):
            if bot_user_id in room.users or room.inviter == bot_user_id:
                await client.join(room_id)
        await client.sync(timeout=300)
    for room_id, room in client.rooms.items():
        if bot_user_id not in room.users or room.member_count > 2:
            continue
        resp = await client.room_messages(room_id, start=client.next_batch, limit=50)
        for event in getattr(resp, "chunk", []):
            if isinstance(event, MegolmEvent):
                event = client.decrypt_event(event)
            if isinstance(event, RoomMessageText) and event.sender == bot_user_id:
                bodies.append(event.body)
    return bodies


def _admin_messages(server: SynapseServer, room_id: str) -> list[dict[str, Any]]:
    with server.admin() as c:
        resp = c.get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/messages",
                     params={"dir": "b", "limit": 1000})
        resp.raise_for_status()
        chunk: list[dict[str, Any]] = resp.json()["chunk"]
        return chunk


def _members(server: SynapseServer, room_id: str) -> set[str]:
    with server.admin() as c:
        resp = c.get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/members")
        resp.raise_for_status()
        return set(resp.json()["members"])


def _invited(server: SynapseServer, room_id: str) -> set[str]:
    return {e["state_key"] for e in _room_state(server, room_id)
            if e["type"] == "m.room.member" and e["content"]["membership"] == "invite"}


def _member_event(server: SynapseServer, room_id: str, user_id: str) -> dict[str, Any]:
    (content,) = [e["content"] for e in _room_state(server, room_id)
                  if e["type"] == "m.room.member" and e["state_key"] == user_id]
    return dict(content)


def _room_state(server: SynapseServer, room_id: str) -> list[dict[str, Any]]:
    with server.admin() as c:
        resp = c.get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/state")
        resp.raise_for_status()
        state: list[dict[str, Any]] = resp.json()["state"]
        return state


def _direct_rooms(company: Company) -> dict[str, str]:
    with company.store.session() as session:
        return dict(session.execute(select(BotDirectRoomRow.user_id,
                                           BotDirectRoomRow.room_id)).all())


def _bot_devices(company: Company, bot: str) -> set[str]:
    with company.server.admin() as c:
        resp = c.get(f"/_synapse/admin/v2/users/{quote(bot)}/devices")
        resp.raise_for_status()
        return {d["device_id"] for d in resp.json()["devices"]}


def _bot_id(company: Company) -> str:
    return json.loads((company.data_dir / "keys" / "bot_device.json").read_text())["user_id"]


# --- tests -----------------------------------------------------------------------------


async def test_announcement_to_all_acknowledgements_reminders_and_escalation(
        company: Company, monkeypatch: pytest.MonkeyPatch) -> None:
    sent_at = datetime.now(UTC)
    deadline = sent_at + timedelta(hours=48)
    secret = f"Neue Arbeitszeitregelung {company.server.unique('rule')}"
    result = await _send(company, [Target("all")], f"# {secret}\n\nAb **1. Januar** gilt …",
                         deadline=deadline, now=sent_at)
    bot = _bot_id(company)
    assert result.recipients == 20
    assert result.delivered == 20 and result.devices == 20 and result.not_joined == ()
    (room_id,) = result.rooms
    (event_id,) = result.event_ids

    # Every client decrypts it.
    events = await asyncio.gather(*(_wait_for(c, room_id, event_id) for c in company.clients))
    for (event,) in events:
        assert isinstance(event, RoomMessageText)
        assert secret in event.body and "<strong>1. Januar</strong>" in event.formatted_body
        assert event.source["content"]["de.hauspost.announcement"]["id"] == result.announcement_id

    # The server holds only ciphertext (plaintext only for the bot's own room set-up).
    timeline = _admin_messages(company.server, room_id)
    assert {e["type"] for e in timeline if "state_key" not in e} == {"m.room.encrypted"}
    assert [e["type"] for e in timeline if e["event_id"] == event_id] == ["m.room.encrypted"]
    assert all(secret not in json.dumps(e) for e in timeline)

    # 15 acknowledge with ✅ (two with the emoji variation selector, as some keyboards send
    # it); two of the silent five only open the room.
    ackers = [i for i in range(20) if i not in SILENT]
    for n, i in enumerate(ackers):
        key = "✅\ufe0f" if n < 2 else "✅"
        await send_content(company.clients[i], room_id, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": event_id, "key": key}})
    for i in (*ackers, *SILENT_BUT_SEEN):
        await company.clients[i].room_read_markers(room_id, event_id, event_id)
    # A different emoji is no acknowledgement.
    await send_content(company.clients[5], room_id, "m.reaction", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": event_id, "key": "👍"}})

    # A tick now: records everything, reminds nobody (the first stage is 24 h before).
    # With 4 events per room and sync, the 16 reactions must be read back page by page.
    monkeypatch.setattr(bot_module, "TIMELINE_LIMIT", 4)
    first = await run_tick(company.settings, sent_at + timedelta(minutes=5))
    monkeypatch.undo()
    assert first.reminders == [] and first.summaries == []
    report = build_report(company.store, result.announcement_id)
    missing_ids = {company.user_ids[i] for i in SILENT}
    assert (report.recipients, report.delivered, report.acknowledged, report.seen) == (20, 20, 15, 17)
    assert report.percent(report.acknowledged) == 75.0
    assert {p.user_id for p in report.missing} == missing_ids
    assert sorted(p.display_name for p in report.missing) == sorted(
        company.names[i] for i in SILENT)
    assert {d: (r.recipients, r.acknowledged) for d, r in report.departments.items()} == {
        "Sales": (8, 6), "Ops": (6, 4), "IT": (6, 5)}
    assert render_csv(report).count("\n") == 21
    page = render_html(report)
    assert "<svg" in page and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")

    # That tick also opened, ahead, the direct chats later notices will need: the five
    # and their three heads, each holding only the bot — nobody sees an empty invitation.
    heads = {d: company.user_ids[i] for d, i in HEADS.items()}
    assert first.direct_chats_ahead == 8
    dms = _direct_rooms(company)
    assert set(dms) == missing_ids | set(heads.values())
    assert all(_members(company.server, r) == {bot} and _invited(company.server, r) == set()
               for r in dms.values())

    # 23 h before the deadline: exactly the five get the first reminder, as encrypted DMs:
    # invited into the chat opened ahead, marked as a direct chat.
    second = await run_tick(company.settings, deadline - timedelta(hours=23))
    assert {(u, s) for _, u, s in second.reminders} == {(u, "reminder-24h") for u in missing_ids}
    assert second.summaries == [] and second.failed == [] and second.direct_chats_ahead == 0
    assert {u: _invited(company.server, r) for u, r in dms.items()} == {
        u: ({u} if u in missing_ids else set()) for u in dms}
    assert all(_member_event(company.server, dms[u], u)["is_direct"] is True
               for u in missing_ids)
    inboxes = await asyncio.gather(*(_bot_dm_messages(c, bot) for c in company.clients))
    for i, inbox in enumerate(inboxes):
        if i in SILENT:
            assert len(inbox) == 1 and secret in inbox[0] and "Reminder" in inbox[0], inbox
        else:
            assert inbox == [], (company.names[i], inbox)
    # One of the five leaves the bot's chat: the next notice invites them again.
    leaver = company.clients[SILENT[0]]
    await leaver.room_leave(dms[leaver.user_id])
    # At most once per person and stage.
    again = await run_tick(company.settings, deadline - timedelta(hours=22))
    assert again.reminders == [] and again.summaries == []

    # After the deadline: the stage-0 reminder to the five, and ONE summary per head
    # listing only their own people.
    after = await run_tick(company.settings, deadline + timedelta(hours=1))
    assert {(u, s) for _, u, s in after.reminders} == {(u, "reminder-0h") for u in missing_ids}
    assert sorted(u for _, u in after.summaries) == sorted(heads.values())
    assert after.failed == [] and _direct_rooms(company) == dms  # the same chats, reused
    invited_again = _member_event(company.server, dms[leaver.user_id], leaver.user_id)
    assert (invited_again["membership"], invited_again["is_direct"]) == ("invite", True)
    inboxes = await asyncio.gather(*(_bot_dm_messages(c, bot) for c in company.clients))
    for dept, head_index in HEADS.items():
        summaries = [b for b in inboxes[head_index] if "not acknowledged yet" in b]
        assert len(summaries) == 1
        listed = {line[2:] for line in summaries[0].splitlines() if line.startswith("- ")}
        assert listed == {company.names[i] for i in SILENT if DEPARTMENTS[i] == dept}
    for i, inbox in enumerate(inboxes):
        if i in SILENT:
            assert len([b for b in inbox if "Reminder" in b]) == 2
        elif i not in HEADS.values():
            assert inbox == []
    final = await run_tick(company.settings, deadline + timedelta(hours=2))
    assert final.reminders == [] and final.summaries == []


async def test_department_announcement_reaches_exactly_that_department(company: Company,
                                                                       tmp_path: Path) -> None:
    from provisioner.announcements.compose import Attachment

    pdf = b"%PDF-1.4\n" + os.urandom(2048)
    result = await _send(company, [Target("department", "Ops")], "Ops: new shift plan",
                         attachment=Attachment("schichtplan.pdf", pdf, "application/pdf"))
    ops = {company.user_ids[i] for i, d in enumerate(DEPARTMENTS) if d == "Ops"}
    (room_id,) = result.rooms
    text_id, file_id = result.event_ids
    assert result.recipients == 6 and result.delivered == 6
    bot = _bot_id(company)
    # Exactly the recipients and the bot: the service account joined them and left.
    assert _members(company.server, room_id) == ops | {bot}
    state = {e["type"]: e for e in company.server.room_state(room_id) if e["state_key"] == ""}
    assert state["m.room.create"]["sender"] == bot  # room version 12: unlimited power
    power = state["m.room.power_levels"]["content"]
    # Nobody else may post; the service account keeps the power to manage the room once
    # the bot brings it back.
    assert power["users"] == {company.server.admin_user_id: 100}
    assert (power["users_default"], power["events_default"]) == (0, 50)
    assert power["events"]["m.reaction"] == 0
    for i, dept in enumerate(DEPARTMENTS):
        client = company.clients[i]
        if dept != "Ops":
            await client.sync(timeout=0)
            assert room_id not in client.rooms
            continue
        text, attachment = await _wait_for(client, room_id, text_id, file_id)
        assert isinstance(text, RoomMessageText) and text.body == "Ops: new shift plan"
        assert isinstance(attachment, RoomEncryptedFile)
        if i == 8:  # one download: the media gate lets room-mates of the bot fetch it
            download = await client.download(attachment.url)
            assert isinstance(download, DownloadResponse)
            assert pdf not in download.body
            assert decrypt_attachment(download.body, attachment.key["k"],
                                      attachment.hashes["sha256"], attachment.iv) == pdf
    # Privacy: no acknowledgement asked, so nothing is kept per person.
    with company.store.session() as session:
        rows = session.scalar(select(func.count()).select_from(RecipientRow)
                              .where(RecipientRow.announcement_id == result.announcement_id))
    assert rows == 0
    report = build_report(company.store, result.announcement_id)
    assert (report.recipients, report.delivered, report.seen, report.acknowledged) == (6, 6, None, None)


def _cli(company: Company, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HAUSPOST, *args, "-d", str(company.data_dir)], capture_output=True,
                          text=True, timeout=120, check=False)


def _state(company: Company) -> tuple[int, int]:
    with company.store.session() as session:
        count = session.scalar(select(func.count()).select_from(AnnouncementRow)) or 0
    with company.server.admin() as c:
        rooms = c.get("/_synapse/admin/v1/rooms", params={"limit": 1000}).json()["total_rooms"]
    return count, rooms


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "department:Marketing", "--body", "hi"],
     "Error: unknown target department:Marketing: no active employee has this department "
     "(known: IT, Ops, Sales)"),
    (["--to", "person:nobody", "--body", "hi"],
     "Error: unknown target person:nobody: no active employee with an account has this "
     "employee id, Matrix ID or login"),
    (["--to", "all", "--body", "hi", "--ack-by", "2020-01-01T00:00+00:00"],
     "Error: the deadline 2020-01-01T00:00:00+00:00 is in the past"),
    (["--to", "all", "--body", "  \n "], "Error: the announcement body is empty"),
    (["--to", "all", "--body", "see file", "--attach", "BIG"],
     "Error: attachment big.pdf: 52428801 bytes is over the server's upload limit of "
     "52428800 bytes"),
    (["--to", "all", "--body", "see file", "--attach", "EXE"],
     "Error: attachment tool.exe: files of type "
     f"{mimetypes.guess_type('tool.exe')[0]} are not allowed by the media policy"),
])
def test_bad_input_is_refused_before_anything_is_sent(company: Company, tmp_path: Path,
                                                       args: list[str], message: str) -> None:
    big = tmp_path / "big.pdf"
    with big.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024 + 1)  # sparse: nothing written to disk
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ" + b"\0" * 100)
    args = [str(big) if a == "BIG" else str(exe) if a == "EXE" else a for a in args]
    before = _state(company)
    proc = _cli(company, "announce", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert proc.stdout == ""
    assert _state(company) == before


async def test_bot_keeps_its_device_and_decrypts_replies_after_a_restart(company: Company) -> None:
    i = 12
    person = company.user_ids[i]
    client = company.clients[i]
    now = datetime.now(UTC)
    result = await _send(company, [Target("person", f"E{i:02d}")], "Bitte lesen: Datenschutz",
                         deadline=now + timedelta(hours=2), now=now)
    device_before = json.loads((company.data_dir / "keys" / "bot_device.json").read_text())
    bot = device_before["user_id"]
    # Never a reminder in the first hour after sending (here also half-way to the deadline).
    assert (await run_tick(company.settings, now + timedelta(minutes=59))).reminders == []
    tick = await run_tick(company.settings, now + timedelta(minutes=61))
    assert [(a, u) for a, u, _ in tick.reminders] == [(result.announcement_id, person)]
    # The employee answers the reminder with an encrypted reply "ok" while no bot runs.
    # Accept the bot's DM invitation first: run alone, this test is its first contact.
    # (The announcement room for one person also has two members: tell them apart by text
    # and take the direct chat from the store.)
    bodies = await _bot_dm_messages(client, bot)
    reminders = [b for b in bodies if "Datenschutz" in b and b.startswith("Reminder")]
    assert len(reminders) == 1, bodies
    dm = _direct_rooms(company)[person]
    assert dm in client.rooms
    await send_content(client, dm, "m.room.message", {"msgtype": "m.text", "body": "OK!"})
    # A new process with a new AsyncClient on the same store. (Other test modules' companies
    # on this session's Synapse have their own data dirs and so their own devices of the
    # same bot account: compare the account's devices before and after, not a count.)
    devices_before = _bot_devices(company, bot)
    assert device_before["device_id"] in devices_before
    proc = _cli(company, "tick", "--json")
    assert proc.returncode == 0, proc.stderr
    device_after = json.loads((company.data_dir / "keys" / "bot_device.json").read_text())
    assert device_after["device_id"] == device_before["device_id"]
    assert _bot_devices(company, bot) == devices_before
    with company.store.session() as session:
        row = session.scalars(select(RecipientRow).where(
            RecipientRow.announcement_id == result.announcement_id,
            RecipientRow.user_id == person)).one()
        assert (row.ack_via, row.acked_at is not None) == ("reply", True)
    # The account was created once, audited; restarts changed nothing about it.
    with company.store.session() as session:
        created = repo.query_audit(session, repo.AuditQuery(action="bot.created"))
        assert [(a.target, a.actor) for a in created] == [(bot, "test")]
        sends = repo.query_audit(session, repo.AuditQuery(
            action="announcement.send", target=f"announcement:{result.announcement_id}"))
        assert [(a.actor, a.reason) for a in sends] == [("test", f"announcement to person:E{i}")]
    # The reply acknowledged the newest reminder's announcement only, no older one.
    with company.store.session() as session:
        others = session.scalars(select(RecipientRow).where(
            RecipientRow.announcement_id != result.announcement_id,
            RecipientRow.user_id == person)).all()
        assert all(r.acked_at is None for r in others)


def test_cli_announce_list_and_report(company: Company, tmp_path: Path) -> None:
    body = tmp_path / "news.md"
    body.write_text("# Kantine\n\nAb Montag **vegetarisch**.", encoding="utf-8")
    deadline = (datetime.now(UTC) + timedelta(days=3)).isoformat(timespec="minutes")
    proc = _cli(company, "announce", "--to", "location:Berlin", "--body-file", str(body),
                "--ack-by", deadline, "--json")
    assert proc.returncode == 0, proc.stderr
    sent = json.loads(proc.stdout)
    berlin = sorted(company.user_ids[i] for i in range(20) if i % 2)
    assert (sent["recipients"], sent["delivered"], sent["not_joined"]) == (10, 10, [])
    assert _members(company.server, sent["rooms"][0]) == {*berlin, _bot_id(company)}

    listed = json.loads(_cli(company, "announcements", "--json").stdout)
    assert listed[0]["id"] == sent["id"] and listed[0]["title"] == "Kantine"
    assert listed[0]["targets"] == ["location:Berlin"]

    report = json.loads(_cli(company, "announcements", "report", str(sent["id"]), "--json").stdout)
    assert (report["recipients"], report["delivered"], report["acknowledged"]) == (10, 10, 0)
    assert sorted(m["user_id"] for m in report["missing"]) == berlin
    page = tmp_path / "reach.html"
    rows = _cli(company, "announcements", "report", str(sent["id"]), "--csv", "--html", str(page))
    assert rows.returncode == 0 and rows.stdout.count("\n") == 11
    assert "<svg" in page.read_text(encoding="utf-8")
    unknown = _cli(company, "announcements", "report", "99999")
    assert unknown.returncode == 3
    assert unknown.stderr.strip() == ("Error: no announcement with id 99999 "
                                      "(`hauspost announcements` lists them)")


def test_room_where_the_bot_may_not_post_is_refused_before_anything_changes(
        company: Company) -> None:
    owner = company.server.create_user()
    room_id = company.server.create_room(owner, name="Read-only elsewhere",
                                         power_level_content_override={"events_default": 50})
    before = _state(company)
    proc = _cli(company, "announce", "--to", "all", "--room", room_id, "--body", "hi")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"Error: the bot {_bot_id(company)} may not post in {room_id}: give it a power level "
        "that may send messages there (docs/announcements.md)"]
    assert _state(company) == before
    assert _members(company.server, room_id) == {owner.user_id}


async def test_announcement_to_all_goes_into_the_org_policy_s_read_only_room(
        company: Company, tmp_path: Path) -> None:
    """With `policies:` set, `--to all` uses the managed read-only all-hands room (here set
    up as issue 6's sync would, with the bot as a poster); a department without such a room
    gets a room of its own."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "company.yaml").write_text(
        "rooms:\n  - key: announcements\n    name: Ankündigungen\n    members: all\n"
        "    mandatory: true\n    read_only: true\n", encoding="utf-8")
    bot = company.server.mxid(
        load_announcement_config(company.data_dir).bot_localpart)
    with company.server.client(company.server.admin_token) as c:
        resp = c.post("/_matrix/client/v3/createRoom", json={
            "name": "Ankündigungen", "initial_state": [
                {"type": "m.room.encryption", "state_key": "",
                 "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
            "power_level_content_override": {
                "users": {bot: 10}, "events_default": 10, "events": {"m.reaction": 0}}})
        resp.raise_for_status()
        org_room = resp.json()["room_id"]
    now = datetime.now(UTC)
    with company.store.session() as session:
        session.add(ManagedRoomRow(policy_key="announcements", room_id=org_room, kind="room",
                                   status="active", on_removed="archive", created_at=now,
                                   updated_at=now))
    config_file = company.data_dir / "hauspost.yaml"
    original = config_file.read_text(encoding="utf-8")
    config_file.write_text(json.dumps({**json.loads(original), "policies": str(policies)}),
                           encoding="utf-8")
    try:
        proc = _cli(company, "announce", "--to", "all", "--body", "Betriebsversammlung", "--json")
        assert proc.returncode == 0, proc.stderr
        sent = json.loads(proc.stdout)
        assert sent["rooms"] == [org_room] and sent["delivered"] == 20
        assert _members(company.server, org_room) == {
            *company.user_ids, bot, company.server.admin_user_id}
        other = json.loads(_cli(company, "announce", "--to", "department:IT", "--body",
                                "IT only", "--json").stdout)
        assert other["rooms"] != [org_room] and other["recipients"] == 6
    finally:
        config_file.write_text(original, encoding="utf-8")
    (event,) = await _wait_for(company.clients[7], org_room, sent["event_ids"][0])
    assert isinstance(event, RoomMessageText) and event.body == "Betriebsversammlung"


# --- company time, language, honest audit log (issue 19) --------------------------------

#: A deadline typed without an offset; in Europe/Berlin that is 11:00 UTC (winter time).
LOCAL_DEADLINE = "2030-12-02T12:00"
DEADLINE_DE = "Mo., 2. Dez. 2030, 12:00 MEZ"
DEADLINE_EN = "Mon 2 Dec 2030, 12:00 CET"


@contextmanager
def _german_company(company: Company) -> Iterator[Settings]:
    """The company in Europe/Berlin with `language: de` (announcements.yaml), restored after."""
    config_file = company.data_dir / "hauspost.yaml"
    announcements_file = company.data_dir / "announcements.yaml"
    original = config_file.read_text(encoding="utf-8")
    doc = json.loads(original)
    doc["directory"]["time_zone"] = "Europe/Berlin"
    config_file.write_text(json.dumps(doc), encoding="utf-8")
    announcements = announcements_file.read_text(encoding="utf-8")
    announcements_file.write_text(announcements + "language: de\n", encoding="utf-8")
    try:
        yield load_settings(company.data_dir)
    finally:
        config_file.write_text(original, encoding="utf-8")
        announcements_file.write_text(announcements, encoding="utf-8")


def _audit_rows(company: Company, **query: Any) -> list[Any]:
    with company.store.session() as session:
        return list(repo.query_audit(session, repo.AuditQuery(**query)))


async def test_deadline_without_offset_is_company_time_shown_in_local_time(
        company: Company) -> None:
    it = [i for i, d in enumerate(DEPARTMENTS) if d == "IT"]
    with _german_company(company):
        proc = _cli(company, "announce", "--to", "department:IT", "--body", "# Neue Zeiterfassung",
                    "--ack-by", LOCAL_DEADLINE, "--json")
    assert proc.returncode == 0, proc.stderr
    sent = json.loads(proc.stdout)
    with company.store.session() as session:
        row = session.get(AnnouncementRow, sent["id"])
        assert row is not None
        assert row.deadline == datetime(2030, 12, 2, 11, 0, tzinfo=UTC)
    (room_id,) = sent["rooms"]
    for i in it:
        (event,) = await _wait_for(company.clients[i], room_id, sent["event_ids"][0])
        assert isinstance(event, RoomMessageText)
        assert event.body == ("# Neue Zeiterfassung\n\n"
                              f"**Bitte bis {DEADLINE_DE} bestätigen:** reagieren Sie mit ✅ "
                              "auf diese Nachricht.")
        marker = event.source["content"]["de.hauspost.announcement"]
        assert marker == {"id": sent["id"], "acknowledge_by": "2030-12-02T12:00:00+01:00"}
    # The room name is plaintext on the server: the time, in company time, never the title.
    name = company.clients[it[0]].rooms[room_id].name
    assert name is not None and name.startswith("📢 Ankündigung ") and name.endswith(" MEZ")


async def test_tick_now_keeps_real_times_and_reminds_in_german(company: Company) -> None:
    ops = [i for i, d in enumerate(DEPARTMENTS) if d == "Ops"]   # head: 8
    title = f"Schichtübergabe {company.server.unique('neu')}"
    with _german_company(company):
        proc = _cli(company, "announce", "--to", "department:Ops", "--body", f"# {title}",
                    "--ack-by", LOCAL_DEADLINE, "--json")
        assert proc.returncode == 0, proc.stderr
        sent = json.loads(proc.stdout)
        (room_id,) = sent["rooms"]
        (event_id,) = sent["event_ids"]
        for i in (9, 11):  # two acknowledge; 8 (the head), 10, 12 and 13 do not
            await _wait_for(company.clients[i], room_id, event_id)
            await send_content(company.clients[i], room_id, "m.reaction", {"m.relates_to": {
                "rel_type": "m.annotation", "event_id": event_id, "key": "✅"}})

        # The store keeps each person's directory record as a sync does (with the language
        # from the HR file's column).
        with company.store.session() as session:
            repo.save_employees(session, read_directory(company.settings).employees,
                                source="hr_csv", now=datetime.now(UTC))

        # One hour before the deadline, in company time, four years ahead of the real clock.
        before = datetime.now(UTC)
        proc = _cli(company, "tick", "--now", "2030-12-02T11:00", "--json")
        after = datetime.now(UTC)
        assert proc.returncode == 0, proc.stderr
        mine = [r for r in json.loads(proc.stdout)["reminders"]
                if r["announcement"] == sent["id"]]
        silent = [company.user_ids[i] for i in (8, 10, 12, 13)]
        assert sorted(r["user_id"] for r in mine) == sorted(silent)

        (notices,) = _audit_rows(company, action="announcement.notices",
                                 target=f"announcement:{sent['id']}")
        assert before <= notices.at <= after
        assert notices.details["stage"] == "reminder-24h"
        assert (notices.details["sent"], notices.details["failed"]) == (4, 0)
        assert notices.details["due_as_of"] == "2030-12-02T11:00:00+01:00"
        first = datetime.fromisoformat(notices.details["first_sent_at"])
        last = datetime.fromisoformat(notices.details["last_sent_at"])
        assert before <= first <= last <= after
        with company.store.session() as session:
            rows = session.scalars(select(NoticeRow).where(
                NoticeRow.announcement_id == sent["id"])).all()
            assert len(rows) == 4
            assert all(before <= r.claimed_at <= r.sent_at <= after for r in rows
                       if r.sent_at is not None)
            assert all(r.sent_at is not None for r in rows)
        # Nothing in the whole audit log carries the pretended time.
        assert _audit_rows(company, since=after) == []

        bot = _bot_id(company)
        reminder = (f"Erinnerung: „{title}“. Bitte bis {DEADLINE_DE} bestätigen: reagieren Sie "
                    "mit ✅ auf die Ankündigung oder antworten Sie auf diese Nachricht mit „ok“.")
        # 13 prefers English: the same reminder in English, still in company time.
        english = (f"Reminder: “{title}”. Please acknowledge by {DEADLINE_EN}: react with ✅ "
                   "to the announcement, or reply “ok” to this message.")
        inboxes = await asyncio.gather(*(_bot_dm_messages(company.clients[i], bot) for i in ops))
        for i, inbox in zip(ops, inboxes, strict=True):
            expected = [english] if i == 13 else [reminder] if i in (8, 10, 12) else []
            assert [b for b in inbox if title in b] == expected, (i, inbox)

        # After the deadline: the reminder at the deadline and the head's summary, in German.
        proc = _cli(company, "tick", "--now", "2030-12-02T13:00", "--json")
        assert proc.returncode == 0, proc.stderr
        summaries = [s for s in json.loads(proc.stdout)["manager_summaries"]
                     if s["announcement"] == sent["id"]]
        assert summaries == [{"announcement": sent["id"], "user_id": company.user_ids[8]}]
    inboxes = await asyncio.gather(*(_bot_dm_messages(company.clients[i], bot) for i in ops))
    assert sorted(b for b in inboxes[ops.index(13)] if title in b) == sorted([
        english,
        f"Reminder: “{title}”. The deadline ({DEADLINE_EN}) has passed – please still "
        "acknowledge: react with ✅ to the announcement, or reply “ok” to this message."])
    head = [b for b in inboxes[0] if title in b]
    assert sorted(head) == sorted([
        reminder,
        f"Erinnerung: „{title}“. Die Frist ({DEADLINE_DE}) ist abgelaufen – bitte trotzdem "
        "bestätigen: reagieren Sie mit ✅ auf die Ankündigung oder antworten Sie auf diese "
        "Nachricht mit „ok“.",
        f"„{title}“ (Frist {DEADLINE_DE}): 3 Personen aus Ihrem Team haben noch nicht "
        f"bestätigt:\n- {company.names[10]}\n- {company.names[12]}\n- {company.names[13]}"])
    summary_rows = [r for r in _audit_rows(company, action="announcement.notices",
                                           target=f"announcement:{sent['id']}")
                    if r.details["stage"] == "manager-summary"]
    assert [(r.details["sent"], r.details["due_as_of"]) for r in summary_rows] == [
        (1, "2030-12-02T13:00:00+01:00")]
    assert summary_rows[0].at <= datetime.now(UTC)


# --- every device of a recipient, nobody else's (issue 19) ---------------------------------

async def _encrypted(client: AsyncClient, room_id: str, event_id: str) -> MegolmEvent:
    resp = await client.room_get_event(room_id, event_id)
    event = getattr(resp, "event", None)
    assert isinstance(event, MegolmEvent), resp
    event.room_id = room_id
    return event


def _decrypt(client: AsyncClient, event: MegolmEvent) -> Event | None:
    try:
        return client.decrypt_event(event)
    except EncryptionError:
        return None


async def test_a_recipient_s_new_device_reads_it_after_one_tick_nobody_else_s_does(
        company: Company, tmp_path: Path) -> None:
    i, outsider_i = 15, 16  # both in IT; the announcement is for 15 only
    person, outsider_id = company.user_ids[i], company.user_ids[outsider_i]
    now = datetime.now(UTC)
    secret = f"Neue Schichtzeiten {company.server.unique('phone')}"
    result = await _send(company, [Target("person", f"E{i:02d}")], secret,
                         deadline=now + timedelta(hours=48), now=now)
    (room_id,) = result.rooms
    (event_id,) = result.event_ids
    saved = json.loads((company.data_dir / "keys" / "bot_device.json").read_text())
    bot, bot_device = saved["user_id"], saved["device_id"]

    # After sending: the recipient signs in on a new phone; a colleague who is not a
    # recipient signs in on a new device as well and asks the bot's device for the key of
    # exactly this session (as Element's legacy crypto did for undecryptable events).
    phone = await e2ee_login(company.server, TestUser(person, TEST_PASSWORD, "", ""),
                             tmp_path / "phone", device_name="new phone")
    outsider = await e2ee_login(company.server, TestUser(outsider_id, TEST_PASSWORD, "", ""),
                                tmp_path / "outsider", device_name="curious")
    tablet: AsyncClient | None = None
    try:
        encrypted = await _encrypted(phone, room_id, event_id)
        assert _decrypt(phone, encrypted) is None  # no key yet
        request = encrypted.as_key_request(bot, str(outsider.device_id), device_id=bot_device)
        assert isinstance(await outsider.to_device(request), ToDeviceResponse)

        tick = await run_tick(company.settings, now + timedelta(minutes=5))
        mine = [(u, d) for a, u, d in tick.room_keys if a == result.announcement_id]
        assert mine == [(person, phone.device_id)]
        await phone.sync(timeout=0)
        event = _decrypt(phone, encrypted)
        assert isinstance(event, RoomMessageText) and event.body.startswith(secret + "\n")
        await outsider.sync(timeout=0)
        assert outsider.olm.inbound_group_store.get(
            room_id, encrypted.sender_key, encrypted.session_id) is None
        assert _decrypt(outsider, encrypted) is None
        (audit,) = _audit_rows(company, action="announcement.room_keys",
                               target=f"announcement:{result.announcement_id}")
        assert audit.details == {"devices": 1, "people": 1}

        # Once is enough: the next tick sends this key to nobody.
        again = await run_tick(company.settings, now + timedelta(minutes=6))
        assert [a for a, _, _ in again.room_keys if a == result.announcement_id] == []

        # After acknowledging, a further device of the same person no longer gets it.
        await _wait_for(company.clients[i], room_id, event_id)
        await send_content(company.clients[i], room_id, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": event_id, "key": "✅"}})
        tablet = await e2ee_login(company.server, TestUser(person, TEST_PASSWORD, "", ""),
                                  tmp_path / "tablet", device_name="tablet")
        later = await run_tick(company.settings, now + timedelta(minutes=7))
        assert [a for a, _, _ in later.room_keys if a == result.announcement_id] == []
        await tablet.sync(timeout=0)
        assert _decrypt(tablet, await _encrypted(tablet, room_id, event_id)) is None
        with company.store.session() as session:
            row = session.scalars(select(RecipientRow).where(
                RecipientRow.announcement_id == result.announcement_id)).one()
            assert (row.user_id, row.ack_via) == (person, "reaction")
    finally:
        await close_all(phone, outsider, *([tablet] if tablet else []))


# --- our own bots are never throttled (issue 19) --------------------------------------------

def _exempt(company: Company, user_id: str) -> bool:
    with company.server.admin() as c:
        resp = c.get(f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit")
        resp.raise_for_status()
        return bool(resp.json() == {"messages_per_second": 0, "burst_count": 0})


def _lift_exemption(company: Company, user_id: str) -> None:
    with company.server.admin() as c:
        c.delete(f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit"
                 ).raise_for_status()


async def test_the_bot_and_the_service_account_are_exempt_checked_at_every_start(
        company: Company) -> None:
    await run_tick(company.settings)  # the bot exists (run alone, this is its first start)
    bot, service = _bot_id(company), company.server.admin_user_id
    assert _exempt(company, bot) and _exempt(company, service)
    device = json.loads((company.data_dir / "keys" / "bot_device.json").read_text())

    # Someone removed both overrides: `hauspost run` puts them back once Synapse answers.
    for user in (bot, service):
        _lift_exemption(company, user)
    await bootstrap_own_accounts(company.settings)
    assert _exempt(company, bot) and _exempt(company, service)

    # The bot's own start checks it as well, and the audit log says it had to be set.
    _lift_exemption(company, bot)
    await run_tick(company.settings)
    assert _exempt(company, bot)
    assert [r.target for r in _audit_rows(company, action="bot.rate_limits_lifted")] == [bot]
    # And it did so without a new login: still the one device, the same token.
    assert json.loads((company.data_dir / "keys" / "bot_device.json").read_text()) == device


async def test_a_tick_killed_while_reminding_never_reminds_anybody_twice(
        company: Company) -> None:
    """SIGKILL `hauspost tick` right after its first reminder is recorded as sent, then run
    the next tick: every reminder is claimed before it is sent (one row per person, stage
    and announcement), so nobody gets one twice; what the killed tick had in flight is
    either recorded or, at most, lost — never repeated."""
    from provisioner.store.announcement_models import BotDirectRoomRow

    started = datetime.now(UTC)
    deadline = started + timedelta(hours=48)
    result = await _send(company, [Target("all")], "Kill-Test: bitte bestätigen",
                         deadline=deadline, now=started)
    due = (deadline - timedelta(hours=1)).isoformat()

    def notices() -> list[Any]:
        with company.store.session() as session:
            return list(session.scalars(select(NoticeRow).where(
                NoticeRow.announcement_id == result.announcement_id)))

    tick = subprocess.Popen([HAUSPOST, "tick", "-d", str(company.data_dir), "--now", due],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline_poll = asyncio.get_running_loop().time() + 120
        while not any(n.sent_at for n in notices()):
            assert tick.poll() is None, "the tick ended before its first reminder was recorded"
            assert asyncio.get_running_loop().time() < deadline_poll, "no reminder recorded"
            await asyncio.sleep(0.05)
        tick.kill()
    finally:
        tick.wait(10)
    first = {(n.user_id, n.stage): n.sent_at is not None for n in notices()}
    assert 1 <= sum(first.values()) < 20, first  # killed part-way
    again = _cli(company, "tick", "--now", due)
    assert again.returncode == 0, again.stderr
    rows = notices()
    # One claim per person and stage (the unique constraint), at most one stage each here.
    assert len({(n.user_id, n.stage) for n in rows}) == len(rows)
    assert len({n.user_id for n in rows}) == len(rows) == 20
    sent = [n for n in rows if n.sent_at is not None]
    in_flight = [n for n in rows if n.sent_at is None]
    # At most what the killed tick had in flight (one claimed notice per person sending).
    assert len(in_flight) <= SEND_CONCURRENCY, in_flight
    # Each person's direct chat holds no more of the bot's messages since the start than
    # the person's claimed notices: nothing was sent without a claim, nothing twice.
    bot = _bot_id(company)
    with company.store.session() as session:
        rows_ = session.execute(select(BotDirectRoomRow.user_id, BotDirectRoomRow.room_id)).all()
        rooms = {row.user_id: row.room_id for row in rows_}
    since_ms = int(started.timestamp() * 1000)
    for notice in rows:
        messages = [e for e in _admin_messages(company.server, rooms[notice.user_id])
                    if e["sender"] == bot and e["type"] == "m.room.encrypted"
                    and e["origin_server_ts"] >= since_ms]
        claims = sum(1 for n in notices() if n.user_id == notice.user_id)
        assert len(messages) <= claims, (notice.user_id, len(messages))
        if notice.sent_at is not None:
            assert notice.event_id in {e["event_id"] for e in messages}
    assert len(sent) + len(in_flight) == 20
