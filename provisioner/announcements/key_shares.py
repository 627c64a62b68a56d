"""Every device of a recipient can read an announcement while it is open for them.

*Open for a person*: the announcement requires acknowledgement, that person has not
acknowledged it, and its per-person data has not been purged yet (`retention_days` after the
deadline; until then the report lists them as missing and reminders may reach them). While
it is open, a device the person adds after sending (a new phone) gets the room key at the
next tick. Nobody else's device ever does: the bot answers no key requests (nio drops those
of other users, and nothing here adds an answer), and it sends keys only to the devices
Synapse lists for open recipients.

How: right after `announce` shared the room key, before the first message is encrypted, the
room's megolm session is pickled at index 0 (with the crypto store's key) into
`<data dir>/bot-store/announcement_keys.json` (0600), with the devices the key went to. Each
tick fetches the device lists Synapse reported as changed since the last one and sends the
session key as `m.room_key` - exactly what every device got at sending - to the open
recipients' devices that lack it. A person's device list is dropped once they acknowledged;
an entry is dropped when the announcement is open for nobody (all acknowledged, or purged).
Announcements without acknowledgement keep no per-person list (privacy), so they are never
open: like any chat message, they reach the devices that exist when they are sent.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from provisioner.announcements.bot import Bot, BotFiles
from provisioner.private_files import write_private
from provisioner.store import Store
from provisioner.store.announcement_models import AnnouncementRow, RecipientRow

logger = logging.getLogger(__name__)

KEYS_FILE = "announcement_keys.json"


@dataclass
class SessionEntry:
    """One announcement's megolm session in one room, and who has its key."""

    announcement_id: int
    room_id: str
    session_id: str
    pickle: str
    devices: dict[str, set[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"announcement_id": self.announcement_id, "room_id": self.room_id,
                "session_id": self.session_id, "pickle": self.pickle,
                "devices": {u: sorted(d) for u, d in sorted(self.devices.items())}}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SessionEntry:
        devices = data.get("devices")
        return cls(announcement_id=int(str(data["announcement_id"])),
                   room_id=str(data["room_id"]), session_id=str(data["session_id"]),
                   pickle=str(data["pickle"]),
                   devices={str(u): {str(d) for d in ds}
                            for u, ds in (devices.items() if isinstance(devices, dict) else [])})


# --- the pure core -----------------------------------------------------------------------

def prune(entries: list[SessionEntry], open_people: Mapping[int, set[str]]
          ) -> list[SessionEntry]:
    """Keep entries of announcements open for someone, and only those people's devices."""
    kept = []
    for entry in entries:
        people = open_people.get(entry.announcement_id, set())
        if people:
            entry.devices = {u: d for u, d in entry.devices.items() if u in people}
            kept.append(entry)
    return kept


def missing_devices(entry: SessionEntry, people: set[str],
                    current: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The devices of `people` (open recipients) that Synapse lists and that lack the key."""
    missing = {u: current.get(u, set()) - entry.devices.get(u, set()) for u in sorted(people)}
    return {u: d for u, d in missing.items() if d}


# --- the adapters --------------------------------------------------------------------------

def keys_file(bot: Bot) -> Path:
    return BotFiles.of(bot.settings).store / KEYS_FILE


def _load(path: Path) -> list[SessionEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    return [SessionEntry.from_json(e) for e in data.get("sessions", [])]


@contextmanager
def _entries(path: Path) -> Iterator[list[SessionEntry]]:
    """The entries, locked against `announce` and `tick` in other processes; written back
    when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _load(path)
        yield entries
        write_private(path, json.dumps({"sessions": [e.to_json() for e in entries]}) + "\n")


def remember_session(bot: Bot, announcement_id: int, room_id: str,
                     shared: set[tuple[str, str]]) -> bool:
    """Keep the room's session (still at index 0) and the recipients' devices that got it.
    Call after `Bot.share_keys` and before the first `Bot.send` into the room."""
    pickled = bot.pickled_room_session(room_id)
    if pickled is None:
        logger.warning("announcement %d: the session of %s has already encrypted a message; "
                       "devices added later will not get its key", announcement_id, room_id)
        return False
    session_id, pickle = pickled
    devices: dict[str, set[str]] = {}
    for user, device in shared:
        devices.setdefault(user, set()).add(device)
    with _entries(keys_file(bot)) as entries:
        entries.append(SessionEntry(announcement_id, room_id, session_id, pickle, devices))
    return True


def open_recipients(store: Store, announcement_ids: set[int]) -> dict[int, set[str]]:
    """Per announcement, the people it is open for (see the module docstring)."""
    if not announcement_ids:
        return {}
    with store.session() as session:
        rows = session.execute(
            select(RecipientRow.announcement_id, RecipientRow.user_id)
            .join(AnnouncementRow, AnnouncementRow.id == RecipientRow.announcement_id)
            .where(AnnouncementRow.id.in_(announcement_ids),
                   AnnouncementRow.requires_ack.is_(True), AnnouncementRow.status == "sent",
                   AnnouncementRow.purged_at.is_(None), RecipientRow.acked_at.is_(None))).all()
    people: dict[int, set[str]] = {}
    for announcement_id, user_id in rows:
        people.setdefault(announcement_id, set()).add(user_id)
    return people


async def share_with_new_devices(bot: Bot, store: Store) -> list[tuple[int, str, str]]:
    """The room key of every open announcement to open recipients' devices that lack it;
    returns (announcement, user, device) for each device it went to."""
    path = keys_file(bot)
    if not path.exists():
        return []
    shared: list[tuple[int, str, str]] = []
    with _entries(path) as entries:
        open_people = open_recipients(store, {e.announcement_id for e in entries})
        entries[:] = prune(entries, open_people)
        if not entries:
            return []
        current = await bot.current_devices(set().union(*open_people.values()))
        for entry in entries:
            missing = missing_devices(entry, open_people[entry.announcement_id], current)
            if not missing:
                continue
            sent = await bot.send_room_key(entry.room_id, entry.session_id,
                                           bot.session_key(entry.pickle), missing)
            for user, device in sent:
                entry.devices.setdefault(user, set()).add(device)
                shared.append((entry.announcement_id, user, device))
    if shared:
        logger.info("room keys of open announcements sent to %d new devices", len(shared))
    return shared
