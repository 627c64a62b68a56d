"""The provisioner's bot: one matrix-nio[e2e] client with ONE stable device.

* Account `@hauspost-bot` (announcements.yaml `bot_localpart`), created through the admin
  API with a random password kept in `keys/bot_password` (0600). Admin login-as tokens
  have no device and can't upload E2EE keys, so the bot logs in with that password once.
* Device id and access token are kept in `keys/bot_device.json` (0600); every later run
  restores that login over the persistent crypto store `<data dir>/bot-store` (0700,
  pickled with the key in `keys/bot_store_key`). Only if Synapse says the token was revoked
  does the bot log in again, *with the same device id*, so Synapse keeps the device and its
  keys; any other failure stops the command (a login per command would hit Synapse's login
  limit of the address).
* The account is exempt from Synapse's per-user rate limits (checked at every start, one
  GET; set where missing), so reminders to hundreds of people are never throttled.
* Room keys are shared with every member's devices with `ignore_unverified_devices=True`:
  nobody verifies a bot's counterparts by emoji, and an announcement that silently skips
  unverified devices (most employees' phones) would not reach people. The devices are
  still the ones Synapse lists for accounts on our own server (federation is off), and
  the server never sees plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import aiohttp
from nio import (
    Api,
    AsyncClient,
    AsyncClientConfig,
    JoinedMembersResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomSendResponse,
    ShareGroupSessionResponse,
    SyncResponse,
    UploadResponse,
    WhoamiResponse,
)
from nio.crypto import Olm, OutboundGroupSession

# Re-exported: the account helpers live without nio for the room sync's sake.
from provisioner.accounts.bot_account import PASSWORD_FILE as PASSWORD_FILE
from provisioner.accounts.bot_account import _read_secret, bot_user_id
from provisioner.accounts.bot_account import _secret as _secret
from provisioner.accounts.bot_account import ensure_bot_account as ensure_bot_account
from provisioner.announcements.config import AnnouncementConfig
from provisioner.errors import HauspostError
from provisioner.homeserver.service_account import exempt_user
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.private_files import write_private
from provisioner.settings import Settings

logger = logging.getLogger(__name__)

BOT_STORE_DIR = "bot-store"
DEVICE_FILE = "bot_device.json"
STORE_KEY_FILE = "bot_store_key"
DEVICE_NAME = "Hauspost announcements"

#: Events per room per sync; a busier room is read back page by page (ack.backfill_signals).
TIMELINE_LIMIT = 200
#: Device messages per to-device request: one request carries the room keys of many rooms.
TO_DEVICE_BATCH = 200
#: To-device requests in flight at once.
TO_DEVICE_CONCURRENCY = 4


def sync_filter() -> dict[str, Any]:
    return {"room": {"timeline": {"limit": TIMELINE_LIMIT}}}


class BotError(HauspostError):
    pass


SyncHandler = Callable[["Bot", SyncResponse], Awaitable[None]]


@dataclass(frozen=True)
class RoomKey:
    """A megolm session key of one room, for these devices (user -> device ids)."""

    room_id: str
    session_id: str
    session_key: str
    devices: Mapping[str, set[str]]


@dataclass(frozen=True)
class DeviceMessage:
    """One Olm-encrypted to-device message and the room whose key it carries."""

    user_id: str
    device_id: str
    room_id: str
    content: dict[str, Any]


def to_device_batches(messages: Iterable[DeviceMessage], size: int = TO_DEVICE_BATCH
                      ) -> list[list[DeviceMessage]]:
    """`sendToDevice` requests of at most `size` messages; a device that gets two messages
    (keys of two rooms) gets them in two requests, as one body holds one per device."""
    batches: list[list[DeviceMessage]] = []
    current: list[DeviceMessage] = []
    seen: set[tuple[str, str]] = set()
    for message in messages:
        target = (message.user_id, message.device_id)
        if len(current) >= size or target in seen:
            batches.append(current)
            current, seen = [], set()
        current.append(message)
        seen.add(target)
    if current:
        batches.append(current)
    return batches


def to_device_body(batch: Sequence[DeviceMessage]) -> dict[str, Any]:
    body: dict[str, dict[str, Any]] = {}
    for message in batch:
        body.setdefault(message.user_id, {})[message.device_id] = message.content
    return {"messages": body}


@dataclass(frozen=True)
class BotFiles:
    keys: Path
    store: Path

    @classmethod
    def of(cls, settings: Settings) -> BotFiles:
        return cls(keys=settings.service_token_file.parent,
                   store=settings.data_dir / BOT_STORE_DIR)

    @property
    def device(self) -> Path:
        return self.keys / DEVICE_FILE

    @property
    def password(self) -> Path:
        return self.keys / PASSWORD_FILE

    @property
    def store_key(self) -> Path:
        return self.keys / STORE_KEY_FILE


class Bot:
    """A logged-in bot client. Use `async with await open_bot(...) as bot:`."""

    def __init__(self, client: AsyncClient, settings: Settings, admin_token: str,
                 on_sync: SyncHandler | None = None) -> None:
        self.client = client
        self.settings = settings
        self.admin_token = admin_token
        #: Sees every sync response (acknowledgements and receipts must never be skipped).
        self.on_sync = on_sync
        #: What this start changed about the bot's account (for the audit log), or None.
        self.account_change: str | None = None
        self._full_state_done = False
        self._sync_lock = asyncio.Lock()  # concurrent senders may each find a room unknown

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    async def __aenter__(self) -> Bot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.close()

    # --- sync ----------------------------------------------------------------------

    async def sync(self, timeout_ms: int = 0) -> SyncResponse:
        """One sync; the first one after start-up asks for full room state, because nio
        keeps room state only in memory and a restored login would not know its rooms."""
        async with self._sync_lock:
            resp = await self.client.sync(timeout=timeout_ms, sync_filter=sync_filter(),
                                          full_state=not self._full_state_done)
            if not isinstance(resp, SyncResponse):
                raise BotError(f"the bot's sync failed: {resp}")
            self._full_state_done = True
            if self.on_sync is not None:
                await self.on_sync(self, resp)
            return resp

    async def query_device_keys(self) -> None:
        """Fetch the device lists nio marked as changed (no-op when none did)."""
        if self.client.should_query_keys:
            await self.client.keys_query()

    # --- rooms ---------------------------------------------------------------------

    async def create_room(self, *, name: str, invite: Iterable[str] = (), read_only: bool,
                          is_direct: bool = False, extra_power: dict[str, int] | None = None
                          ) -> str:
        """An encrypted room owned by the bot.

        Read-only (announcements): only the bot posts; reactions and redactions stay open
        to everyone so ✅ works (Element Web sends reactions unencrypted, which the
        encryption policy allows for exactly this reason).
        """
        # Room version 12: the creator has unlimited power and must not be listed.
        power: dict[str, Any] = {"users": dict(extra_power or {})}
        if read_only:
            power.update({"events_default": 50,
                          "events": {"m.reaction": 0, "m.room.redaction": 0,
                                     "m.room.name": 100, "m.room.power_levels": 100}})
        initial_state = [{"type": "m.room.encryption", "state_key": "",
                          "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                         {"type": "m.room.history_visibility", "state_key": "",
                          "content": {"history_visibility": "invited"}}]
        resp = await self.client.room_create(name=name, invite=list(invite),
                                             is_direct=is_direct, initial_state=initial_state,
                                             power_level_override=power)
        if not isinstance(resp, RoomCreateResponse):
            raise BotError(f"the bot could not create room {name!r}: {resp}")
        return str(resp.room_id)

    async def force_join(self, room_id: str, user_ids: Iterable[str], *,
                         concurrency: int = 8) -> list[str]:
        """Make `user_ids` members through the admin API (no invitation to accept).

        The admin API joins people only into rooms the service account is in; if it is not,
        the bot invites it for the joins and it leaves again afterwards, so a room of the
        bot's own holds exactly the people it is for and the bot (its power level stays, so
        the bot can bring it back to manage the room). Returns the users that could not be
        joined (logged).
        """
        service = self.settings.service_user_id
        async with SynapseAdmin(self.settings.homeserver_url, self.admin_token) as admin:
            listed = await admin.request("GET",
                                         f"/_synapse/admin/v1/rooms/{quote(room_id)}/members")
            members = set(listed.json().get("members", []))
            missing = [u for u in user_ids if u not in members]
            if not missing:
                return []
            brought_in = service not in members
            if brought_in:
                await self.client.room_invite(room_id, service)
                await admin.request("POST", f"/_matrix/client/v3/join/{quote(room_id)}",
                                    json={})
            failed: list[str] = []
            limit = asyncio.Semaphore(concurrency)

            async def join(user_id: str) -> None:
                async with limit:
                    try:
                        await admin.request("POST", f"/_synapse/admin/v1/join/{quote(room_id)}",
                                            json={"user_id": user_id})
                    except HauspostError as exc:
                        logger.warning("could not put %s into %s: %s", user_id, room_id, exc)
                        failed.append(user_id)

            try:
                await asyncio.gather(*(join(u) for u in missing))
            finally:
                if brought_in:
                    await admin.request("POST",
                                        f"/_matrix/client/v3/rooms/{quote(room_id)}/leave",
                                        json={})
        return failed

    def members(self, room_id: str) -> set[str]:
        """Joined and invited members as of the bot's last sync (empty for a room it has not
        synced since creating it)."""
        room = self.client.rooms.get(room_id)
        return set(room.users) if room is not None else set()

    async def invite_direct(self, room_id: str, user_id: str) -> None:
        """Invite `user_id` into the bot's direct chat, marked as direct (Element lists it
        under people). The membership is a state event, which the policy modules check like
        any invitation."""
        path = (f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.member/"
                f"{quote(user_id)}")
        await self._put(path, {"membership": "invite", "is_direct": True},
                        what=f"inviting {user_id} into {room_id}")

    async def can_post(self, room_id: str) -> bool:
        """Judged from the room's state as the service account reads it (the compact room
        read, else the admin API; members are not needed): works before the bot joined."""
        async with SynapseAdmin(self.settings.homeserver_url, self.admin_token) as admin:
            state = await admin.room_state(room_id)
        if state is None:
            raise BotError(f"room {room_id} does not exist on this server")
        return may_post(self.user_id, state)

    # --- sending -------------------------------------------------------------------

    async def share_keys(self, room_id: str) -> frozenset[tuple[str, str]]:
        """Share a fresh room key with every member's devices; returns (user, device) pairs."""
        client = self.client
        if room_id not in client.rooms:
            await self.sync()
        started = time.perf_counter()
        resp = await client.joined_members(room_id)
        if not isinstance(resp, JoinedMembersResponse):
            raise BotError(f"cannot list the members of {room_id}: {resp}")
        members = time.perf_counter()
        if client.should_query_keys:
            await client.keys_query()
        queried = time.perf_counter()
        database = getattr(client.store, "database", None)
        # One store transaction for the hundreds of Olm sessions nio saves one by one. On a
        # failure it rolls back: those devices just get a fresh Olm session next time.
        with database.atomic() if database is not None else contextlib.nullcontext():
            shared = await client.share_group_session(room_id, ignore_unverified_devices=True)
        if not isinstance(shared, ShareGroupSessionResponse):
            raise BotError(f"sharing the room key of {room_id} failed: {shared}")
        logger.info("room key of %s shared with %d devices: members %.2f s, device keys "
                    "%.2f s, claim+encrypt+send %.2f s", room_id, len(shared.users_shared_with),
                    members - started, queried - members, time.perf_counter() - queried)
        return frozenset(shared.users_shared_with)

    # --- the room key for devices added later (nio internals, only here) --------------

    def pickled_room_session(self, room_id: str) -> tuple[str, str] | None:
        """(session id, pickle) of the room's outbound megolm session while it has encrypted
        nothing yet (index 0), pickled with the crypto store's key; None once it has."""
        session = self.client.olm.outbound_group_sessions.get(room_id)
        if session is None or session.message_index != 0:
            return None
        return session.id, session.pickle(self.client.config.pickle_key).decode()

    def session_key(self, pickle: str) -> str:
        """The signed session key at index 0 from a `pickled_room_session` pickle."""
        session = OutboundGroupSession.from_pickle(pickle.encode(), self.client.config.pickle_key)
        return str(session.session_key)

    async def current_devices(self, user_ids: Iterable[str]) -> dict[str, set[str]]:
        """Each user's devices as Synapse lists them now. Device lists nio saw change in a
        sync (and users it never asked about) are fetched; the rest come from the store."""
        olm = self.client.olm
        wanted = set(user_ids)
        untracked = wanted - olm.tracked_users
        if untracked:
            olm.add_changed_users(untracked)
        await self.query_device_keys()
        return {u: {d.device_id for d in olm.device_store.active_user_devices(u)} for u in wanted}

    async def send_room_key(self, room_id: str, session_id: str, session_key: str,
                            devices: dict[str, set[str]]) -> list[tuple[str, str]]:
        """`m.room_key` to these devices; returns the (user, device) pairs it went to."""
        sent = await self.send_room_keys([RoomKey(room_id, session_id, session_key, devices)])
        return sent.get(room_id, [])

    async def send_room_keys(self, keys: Sequence[RoomKey]) -> dict[str, list[tuple[str, str]]]:
        """Each room's `m.room_key` to its devices, Olm-encrypted exactly as nio does when
        it shares a session (one-time keys claimed at once where there is no Olm session
        yet), many rooms' keys per to-device request; per room, the (user, device) pairs
        the key went to."""
        olm = self.client.olm
        targets = [(key, olm.device_store[u][d]) for key in keys
                   for u, ds in sorted(key.devices.items())
                   for d in sorted(ds) if d in olm.device_store[u]]
        missing: dict[str, list[str]] = {}
        for _key, device in targets:
            if olm.session_store.get(device.curve25519) is None \
                    and device.device_id not in missing.get(device.user_id, []):
                missing.setdefault(device.user_id, []).append(device.device_id)
        if missing:
            await self.client.keys_claim(missing)
        messages: list[DeviceMessage] = []
        for key, device in targets:
            session = olm.session_store.get(device.curve25519)
            if session is None:
                logger.warning("no Olm session with %s's device %s (no one-time key left)",
                               device.user_id, device.device_id)
                continue
            content = {"algorithm": Olm._megolm_algorithm, "room_id": key.room_id,
                       "session_id": key.session_id, "session_key": key.session_key}
            messages.append(DeviceMessage(device.user_id, device.device_id, key.room_id,
                                          olm._olm_encrypt(session, device, "m.room_key",
                                                           content)))
        sent: dict[str, list[tuple[str, str]]] = {}
        limit = asyncio.Semaphore(TO_DEVICE_CONCURRENCY)

        async def post(batch: list[DeviceMessage]) -> None:
            async with limit:
                try:
                    await self._put(f"/_matrix/client/v3/sendToDevice/m.room.encrypted/"
                                    f"{uuid4()}", to_device_body(batch),
                                    what=f"room keys for {len(batch)} devices")
                except BotError as exc:
                    logger.warning("%s", exc)
                    return
            for message in batch:
                sent.setdefault(message.room_id, []).append((message.user_id,
                                                             message.device_id))

        await asyncio.gather(*(post(b) for b in to_device_batches(messages)))
        return sent

    def new_room_session(self, room_id: str) -> tuple[str, str]:
        """A fresh outbound megolm session for the room (replacing any earlier one), marked
        as shared: the caller sends its key with `send_room_keys` before `send_prepared`.
        Returns (session id, session key)."""
        olm = self.client.olm
        olm.create_outbound_group_session(room_id)
        session = olm.outbound_group_sessions[room_id]
        session.shared = True
        return str(session.id), str(session.session_key)

    async def send_prepared(self, room_id: str, content: dict[str, Any],
                            event_type: str = "m.room.message") -> str:
        """Encrypt with the room's session from `new_room_session` and send; no member
        list, key query or key sharing on the way (the caller did those for many rooms at
        once)."""
        encrypted = self.client.olm.group_encrypt(room_id, {"content": content,
                                                            "type": event_type})
        body = await self._put(f"/_matrix/client/v3/rooms/{quote(room_id)}/send/"
                               f"m.room.encrypted/{uuid4()}", encrypted,
                               what=f"sending into {room_id}")
        return str(body["event_id"])

    async def _put(self, path: str, body: dict[str, Any], *, what: str) -> dict[str, Any]:
        """One authenticated PUT as the bot; its JSON answer, or BotError naming `what`."""
        client = self.client
        headers = {"Authorization": f"Bearer {client.access_token}"}
        try:
            resp = await client.send("PUT", path, Api.to_json(body), headers=headers)
            answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise BotError(f"{what} failed: {exc}") from None
        if resp.status != 200 or not isinstance(answer, dict):
            raise BotError(f"{what} failed: HTTP {resp.status} {answer}")
        return answer

    async def send(self, room_id: str, content: dict[str, Any],
                   event_type: str = "m.room.message") -> str:
        """Send encrypted (room keys shared first by `share_keys` or here by nio)."""
        if room_id not in self.client.rooms:
            await self.sync()
        resp = await self.client.room_send(room_id, event_type, content,
                                           ignore_unverified_devices=True)
        if not isinstance(resp, RoomSendResponse):
            raise BotError(f"sending into {room_id} failed: {resp}")
        return str(resp.event_id)

    async def upload_encrypted(self, data: bytes, *, filename: str,
                               mimetype: str) -> tuple[str, dict[str, Any]]:
        resp, keys = await self.client.upload(io.BytesIO(data), content_type=mimetype,
                                              filename=filename, encrypt=True,
                                              filesize=len(data))
        if not isinstance(resp, UploadResponse) or keys is None:
            raise BotError(f"uploading {filename} failed: {resp}")
        return str(resp.content_uri), dict(keys)


def may_post(user_id: str, state: list[dict[str, Any]]) -> bool:
    """Whether `user_id` may send encrypted messages, judged from the room's state events."""
    by_type = {e.get("type"): e for e in state if e.get("state_key") == ""}
    create = by_type.get("m.room.create", {})
    creators = {create.get("sender"), *create.get("content", {}).get("additional_creators", [])}
    power = by_type.get("m.room.power_levels", {}).get("content", {})
    users = power.get("users", {})
    if user_id in creators and user_id not in users:
        return True  # room version 12: creators outrank every power level and aren't listed
    level = int(users.get(user_id, power.get("users_default", 0)))
    needed = int(power.get("events", {}).get("m.room.encrypted",
                                              power.get("events_default", 0)))
    return level >= needed


def _client(settings: Settings, files: BotFiles, user_id: str,
            device_id: str | None) -> AsyncClient:
    files.store.mkdir(parents=True, exist_ok=True)
    os.chmod(files.store, 0o700)
    config = AsyncClientConfig(store_sync_tokens=True, encryption_enabled=True,
                               pickle_key=_secret(files.store_key))
    return AsyncClient(settings.homeserver_url, user_id, device_id=device_id,
                       store_path=str(files.store), config=config)


def _save_device(files: BotFiles, user_id: str, device_id: str, token: str) -> None:
    write_private(files.device, json.dumps(
        {"user_id": user_id, "device_id": device_id, "access_token": token}) + "\n")


async def open_bot(settings: Settings, config: AnnouncementConfig, admin_token: str,
                   on_sync: SyncHandler | None = None) -> Bot:
    """Log the bot in (first run) or restore its one device (every later run)."""
    files = BotFiles.of(settings)
    user_id = bot_user_id(config, settings.server_name)
    saved: dict[str, str] | None = None
    raw = _read_secret(files.device)
    if raw is not None:
        try:
            saved = json.loads(raw)
        except ValueError:
            raise BotError(f"{files.device} is not valid JSON; move it away to start the bot "
                           "with a new device") from None
    if saved is not None and saved.get("user_id") == user_id:
        client = _client(settings, files, user_id, saved["device_id"])
        client.restore_login(user_id, saved["device_id"], saved["access_token"])
        who = await client.whoami()
        if isinstance(who, WhoamiResponse):
            async with SynapseAdmin(settings.homeserver_url, admin_token) as admin:
                lifted = await exempt_user(admin, user_id)
            bot = await _ready(client, settings, admin_token, on_sync)
            bot.account_change = "rate limits lifted" if lifted else None
            return bot
        if not _token_revoked(who):
            # Anything but a revoked token (Synapse restarting, overloaded): a new login
            # would only spend the address's login budget and change nothing.
            await client.close()
            raise BotError(f"the bot {user_id} could not check its stored login: {who}")
        logger.warning("the bot's access token no longer works; logging in again on device %s",
                       saved["device_id"])
        await client.close()
        device_id: str | None = saved["device_id"]
    else:
        device_id = None
    async with SynapseAdmin(settings.homeserver_url, admin_token) as admin:
        password, account_change = await ensure_bot_account(
            admin, user_id, config.bot_display_name, files.password)
    client = _client(settings, files, user_id, device_id)
    resp = await client.login(password, device_name=DEVICE_NAME)
    if not isinstance(resp, LoginResponse):
        await client.close()
        raise BotError(f"the bot {user_id} cannot log in: {resp}")
    _save_device(files, user_id, str(resp.device_id), str(resp.access_token))
    logger.info("bot %s logged in on device %s", user_id, resp.device_id)
    bot = await _ready(client, settings, admin_token, on_sync)
    bot.account_change = account_change
    return bot


def _token_revoked(resp: object) -> bool:
    transport = getattr(resp, "transport_response", None)
    return (getattr(resp, "status_code", None) in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN")
            or getattr(transport, "status", None) == 401)


def _fast_crypto_store(client: AsyncClient) -> None:
    """WAL and synchronous=NORMAL for the bot's crypto store.

    nio saves every Olm session in its own transaction; with SQLite's defaults that is
    one fsync per device, which made sharing a room key with 1,000 devices take tens of
    seconds. WAL + NORMAL never corrupts the store; only an OS crash or power cut can lose
    the last transactions (then a few devices get a new Olm session next time).
    """
    database = getattr(client.store, "database", None)
    if database is not None:
        database.pragma("journal_mode", "wal", permanent=True)
        database.pragma("synchronous", 1, permanent=True)


#: The matrix-nio internals `Bot` relies on to give a device added after sending the room
#: key (nio has no public API for it); checked at every start, so a nio upgrade that drops
#: one stops the bot at once instead of leaving new devices without the key.
NIO_INTERNALS = ((Olm, "_olm_encrypt"), (Olm, "_megolm_algorithm"),
                 (Olm, "create_outbound_group_session"), (Olm, "group_encrypt"),
                 (OutboundGroupSession, "from_pickle"), (OutboundGroupSession, "pickle"))


#: Attributes of nio's Olm machine (set per instance, so checked on the client's).
NIO_OLM_ATTRIBUTES = ("outbound_group_sessions", "session_store", "device_store",
                      "tracked_users", "add_changed_users")


def check_nio_internals(client: AsyncClient) -> None:
    gone = [f"{owner.__name__}.{name}" for owner, name in NIO_INTERNALS
            if not hasattr(owner, name)]
    gone += [f"Olm.{name}" for name in NIO_OLM_ATTRIBUTES if not hasattr(client.olm, name)]
    if gone:
        raise BotError(f"this matrix-nio lacks {', '.join(gone)}, which the bot needs to give "
                       "new devices of recipients the room key; install matrix-nio 0.26")


async def _ready(client: AsyncClient, settings: Settings, admin_token: str,
                 on_sync: SyncHandler | None) -> Bot:
    check_nio_internals(client)
    _fast_crypto_store(client)
    if client.should_upload_keys:
        await client.keys_upload()
    bot = Bot(client, settings, admin_token, on_sync)
    await bot.sync()
    return bot
