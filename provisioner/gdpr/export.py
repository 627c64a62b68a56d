"""`hauspost gdpr export` (GDPR Art. 15): one ZIP of what the company holds about a person.

Entries (each listed in manifest.json with its count and SHA-256):

- `directory.json`: the directory record as last read, `account.json`: the Synapse account,
  its devices (with last-seen addresses), connections and account data;
- `rooms.jsonl`: the rooms the account is in, each with its membership event (when, by whom);
- `messages/<n>.jsonl`: the events the person sent, per room — for end-to-end encrypted
  rooms these are ciphertext that the server cannot read (the summary says so);
- `files.json`: the files they uploaded (metadata; contents are encrypted attachments);
- `acknowledgements.json`: announcements sent to them, when seen / acknowledged, reminders;
- `history.jsonl`: audit rows about them, `actions.jsonl`: audit rows of what they did in
  the console;
- `summary.html`: a readable overview (German and English), `manifest.json`.

Only the person's own data: events are fetched with a sender filter, audit rows by exact
target/actor. Everything is streamed into the archive (constant memory, whatever the
number of events), written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import time
import zipfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from sqlalchemy import or_, select

from provisioner.errors import EXIT_USAGE, HauspostError
from provisioner.gdpr.erase import Subject, find_subject, pseudonym_key
from provisioner.gdpr.timeline import user_media
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import AnnouncementRow, NoticeRow, RecipientRow
from provisioner.store.models import AuditRow, EmployeeRow

logger = logging.getLogger(__name__)

PAGE = 500


class ExportRefusedError(HauspostError):
    exit_code = EXIT_USAGE


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _q(value: str) -> str:
    return quote(value, safe="")


@dataclass
class Entry:
    name: str
    count: int = 0
    sha256: str = ""


@dataclass
class ExportReport:
    path: Path
    employee_id: str
    user_id: str | None
    entries: list[Entry] = field(default_factory=list)
    seconds: float = 0.0
    size: int = 0

    def counts(self) -> dict[str, int]:
        return {e.name: e.count for e in self.entries}


class _Writer:
    """One archive entry written line by line, hashed on the way."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.entry = Entry(name)
        self._hash = hashlib.sha256()
        self._fh: IO[bytes] = archive.open(name, "w", force_zip64=True)

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._fh.write(data)

    def line(self, obj: Any) -> None:
        self.write(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=_iso).encode()
                   + b"\n")
        self.entry.count += 1

    def close(self) -> Entry:
        self._fh.close()
        self.entry.sha256 = self._hash.hexdigest()
        return self.entry


def _json_entry(archive: zipfile.ZipFile, name: str, obj: Any, count: int) -> Entry:
    writer = _Writer(archive, name)
    writer.write(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True,
                            default=_iso).encode())
    writer.entry.count = count
    return writer.close()


async def _paged_events(admin: SynapseAdmin, room_id: str, user_id: str
                        ) -> AsyncIterator[dict[str, Any]]:
    event_filter = _q(json.dumps({"senders": [user_id]}, separators=(",", ":")))
    token: str | None = None
    while True:
        path = (f"/_synapse/admin/v1/rooms/{_q(room_id)}/messages?dir=f&limit={PAGE}"
                f"&filter={event_filter}" + (f"&from={_q(token)}" if token else ""))
        resp = await admin.request("GET", path)
        body = resp.json()
        chunk = body.get("chunk", [])
        for event in chunk:
            if event.get("sender") == user_id:  # the filter already did; belt and braces
                yield event
        token = body.get("end")
        if not chunk or not token:
            return


def _store_rows(store: Store, subject: Subject) -> dict[str, Any]:
    ids = subject.ids
    with store.session() as session:
        employee = session.get(EmployeeRow, ids.employee_id)
        directory = None if employee is None else {
            c.name: _iso(getattr(employee, c.name)) for c in EmployeeRow.__table__.columns}
        account = repo.get_account_by_employee(session, ids.employee_id)
        link = None if account is None else {
            "user_id": account.user_id, "created_at": _iso(account.created_at),
            "active": account.active, "deactivated_at": _iso(account.deactivated_at),
            "deactivation_reason": account.deactivation_reason, "hold": account.hold}
        acks: list[dict[str, Any]] = []
        if ids.user_id:
            rows = session.execute(
                select(RecipientRow, AnnouncementRow.title, AnnouncementRow.created_at,
                       AnnouncementRow.deadline)
                .join(AnnouncementRow, AnnouncementRow.id == RecipientRow.announcement_id)
                .where(RecipientRow.user_id == ids.user_id)
                .order_by(RecipientRow.announcement_id)).all()
            notices = session.execute(select(NoticeRow).where(NoticeRow.user_id == ids.user_id)
                                      ).scalars().all()
            by_announcement: dict[int, list[dict[str, Any]]] = {}
            for notice in notices:
                by_announcement.setdefault(notice.announcement_id, []).append(
                    {"stage": notice.stage, "sent_at": _iso(notice.sent_at)})
            acks = [{"announcement_id": r.announcement_id, "title": title,
                     "sent_at": _iso(created), "deadline": _iso(deadline),
                     "devices_reached": r.devices, "seen_at": _iso(r.seen_at),
                     "acknowledged_at": _iso(r.acked_at), "acknowledged_via": r.ack_via,
                     "reminders": by_announcement.get(r.announcement_id, [])}
                    for r, title, created, deadline in rows]
    return {"directory": directory, "link": link, "acknowledgements": acks}


def _audit_rows(store: Store, where: Any) -> Iterable[dict[str, Any]]:
    with store.session() as session:
        stmt = select(AuditRow).where(where).order_by(AuditRow.id)
        for row in session.scalars(stmt.execution_options(yield_per=1000)):
            yield {"id": row.id, "at": _iso(row.at), "actor": row.actor, "action": row.action,
                   "target": row.target, "reason": row.reason, "details": row.details}


def _summary_html(subject: Subject, data: dict[str, Any], account: dict[str, Any] | None,
                  entries: list[Entry], generated: datetime) -> str:
    e = html.escape
    ids = subject.ids
    rows = "".join(f"<tr><td><code>{e(x.name)}</code></td><td>{x.count}</td></tr>"
                   for x in entries)
    directory = data["directory"] or {}
    facts = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>"
                    for k, v in sorted(directory.items()) if v not in (None, "", []))
    return (
        "<!DOCTYPE html><html lang=\"de\"><head><meta charset=\"utf-8\">"
        f"<title>Auskunft nach Art. 15 DSGVO / Access request: {e(ids.display_name or '')}"
        "</title><style>body{font-family:sans-serif;max-width:50rem;margin:2rem auto}"
        "td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Auskunft nach Art. 15 DSGVO · Access request (GDPR Art. 15)</h1>"
        f"<p>Erstellt / generated: {e(generated.isoformat(timespec='seconds'))}<br>"
        f"Person: <strong>{e(ids.display_name or '')}</strong>, Personalnummer / employee id "
        f"<code>{e(ids.employee_id)}</code>, Konto / account <code>{e(ids.user_id or '–')}"
        "</code></p>"
        "<h2>Verzeichnisdaten · Directory record</h2>"
        f"<table>{facts}</table>"
        "<h2>Inhalt des Archivs · Contents</h2>"
        f"<table><tr><th>Datei / file</th><th>Einträge / entries</th></tr>{rows}</table>"
        "<h2>Nachrichten und Dateien · Messages and files</h2>"
        "<p>Nachrichten in Ende-zu-Ende-verschlüsselten Räumen und Dateianhänge liegen auf "
        "dem Server nur verschlüsselt vor; der Server (und damit die Firma) kann sie nicht "
        "lesen. Die Einträge unter <code>messages/</code> sind daher Chiffretext; lesbar "
        "sind sie nur auf Ihren eigenen Geräten.</p>"
        "<p>Messages in end-to-end encrypted rooms and file attachments are stored on the "
        "server only in encrypted form; the server (and so the company) cannot read them. "
        "The entries under <code>messages/</code> are therefore ciphertext, readable only on "
        "your own devices.</p>"
        f"<p>Geräte / devices: {len((account or {}).get('devices', []))}</p>"
        "</body></html>")


async def export_person(settings: Settings, store: Store, target: str, out: Path, *,
                        actor: str) -> ExportReport:
    started = time.monotonic()
    if out.exists():
        raise ExportRefusedError(f"{out} exists: give a new file name (nothing is overwritten)")
    if not out.parent.is_dir():
        raise ExportRefusedError(f"{out.parent} is not a directory")
    subject = find_subject(store, target, pseudonym_key(settings))
    ids = subject.ids
    data = _store_rows(store, subject)
    report = ExportReport(path=out, employee_id=ids.employee_id, user_id=ids.user_id)
    tmp = out.with_name(f".{out.name}.partial")
    generated = datetime.now(UTC)
    account: dict[str, Any] | None = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            entries = report.entries
            entries.append(_json_entry(zf, "directory.json",
                                       {"record": data["directory"], "account_link": data["link"]},
                                       1 if data["directory"] else 0))
            if ids.user_id:
                token = await ensure_service_token(settings)
                async with SynapseAdmin(settings.homeserver_url, token) as admin:
                    account = await _synapse_account(admin, ids.user_id)
                    entries.append(_json_entry(zf, "account.json", account, 1))
                    entries.extend(await _rooms_and_messages(admin, zf, ids.user_id))
                    media = await user_media(admin, ids.user_id)
                    entries.append(_json_entry(zf, "files.json", media, len(media)))
            entries.append(_json_entry(zf, "acknowledgements.json", data["acknowledgements"],
                                       len(data["acknowledgements"])))
            targets = [t for t in (ids.employee_id, ids.user_id) if t]
            history = _Writer(zf, "history.jsonl")
            for row in _audit_rows(store, AuditRow.target.in_(targets)):
                history.line(row)
            entries.append(history.close())
            actions = _Writer(zf, "actions.jsonl")
            if ids.user_id:
                for row in _audit_rows(store, or_(AuditRow.actor == f"console:{ids.user_id}",
                                                  AuditRow.actor == ids.user_id)):
                    actions.line(row)
            entries.append(actions.close())
            summary = _summary_html(subject, data, account, list(entries), generated)
            entries.append(_text_entry(zf, "summary.html", summary))
            manifest = {"generated_at": generated.isoformat(), "employee_id": ids.employee_id,
                        "user_id": ids.user_id, "generated_by": actor,
                        "entries": [vars(x) for x in entries],
                        "note": "messages/ holds ciphertext of end-to-end encrypted rooms"}
            _json_entry(zf, "manifest.json", manifest, len(entries))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report.size = out.stat().st_size
    report.seconds = time.monotonic() - started
    with store.session() as session:
        repo.append_audit(session, actor=actor, action="gdpr.export", target=ids.employee_id,
                          now=datetime.now(UTC), reason="access request (GDPR Art. 15)",
                          details={"entries": report.counts(), "bytes": report.size})
    return report


def _text_entry(archive: zipfile.ZipFile, name: str, text: str) -> Entry:
    writer = _Writer(archive, name)
    writer.write(text.encode())
    writer.entry.count = 1
    return writer.close()


async def _synapse_account(admin: SynapseAdmin, user_id: str) -> dict[str, Any]:
    async def get(path: str) -> Any:
        resp = await admin.request("GET", path, ok=(200, 404))
        return resp.json() if resp.status_code == 200 else None

    base = f"/_synapse/admin/v2/users/{_q(user_id)}"
    user = await get(base) or {}
    devices = (await get(f"{base}/devices") or {}).get("devices", [])
    whois = await get(f"/_synapse/admin/v1/whois/{_q(user_id)}")
    account_data = await get(f"/_synapse/admin/v1/users/{_q(user_id)}/accountdata")
    pushers = (await get(f"/_synapse/admin/v1/users/{_q(user_id)}/pushers") or {}).get(
        "pushers", [])
    return {"user": user, "devices": devices, "connections": whois,
            "account_data": account_data, "pushers": pushers}


async def _rooms_and_messages(admin: SynapseAdmin, zf: zipfile.ZipFile,
                              user_id: str) -> list[Entry]:
    rooms = await admin.joined_rooms(user_id)
    entries: list[Entry] = []
    # One write handle at a time in a ZIP: the room list (small) is written last.
    listing: list[dict[str, Any]] = []
    for n, room_id in enumerate(sorted(rooms), start=1):
        resp = await admin.request(
            "GET", f"/_synapse/admin/v1/rooms/{_q(room_id)}/state", ok=(200, 404))
        state = resp.json().get("state", []) if resp.status_code == 200 else []
        member = next((e for e in state if e.get("type") == "m.room.member"
                       and e.get("state_key") == user_id), None)
        name = next((e.get("content", {}).get("name") for e in state
                     if e.get("type") == "m.room.name"), None)
        encrypted = any(e.get("type") == "m.room.encryption" for e in state)
        messages = _Writer(zf, f"messages/{n:04d}.jsonl")
        async for event in _paged_events(admin, room_id, user_id):
            messages.line(event)
        entry = messages.close()
        entries.append(entry)
        listing.append({"room_id": room_id, "name": name, "encrypted": encrypted,
                      "messages_file": entry.name, "messages": entry.count,
                      "membership": None if member is None else {
                          "membership": member.get("content", {}).get("membership"),
                          "since": datetime.fromtimestamp(
                              member.get("origin_server_ts", 0) / 1000, UTC).isoformat(),
                          "by": member.get("sender")}})
    rooms_entry = _Writer(zf, "rooms.jsonl")
    for item in listing:
        rooms_entry.line(item)
    entries.insert(0, rooms_entry.close())
    return entries
