"""Drive real `matrix-nio[e2e]` clients (vodozemac) against the test Synapse.

Typical use in an async test:

    alice = await e2ee_login(synapse, synapse.create_user(), store_dir)
    bob = await e2ee_login(synapse, synapse.create_user(), store_dir)
    room_id = await create_encrypted_room(alice, invite=[bob.user_id])
    await join_and_sync(bob, room_id)
    await sync_all(alice, bob)
    await send_text(alice, room_id, "hello")
    event = await wait_for_decrypted(bob, room_id, body="hello")
    await close_all(alice, bob)
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    JoinResponse,
    LoginResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)

from tests.harness.synapse_server import SynapseServer, TestUser


class E2EEError(AssertionError):
    pass


async def e2ee_login(server: SynapseServer, user: TestUser, store_dir: Path,
                     device_name: str = "nio-test") -> AsyncClient:
    """Log `user` in with its password (a fresh device), upload keys, do a first sync."""
    store = store_dir / user.localpart
    store.mkdir(parents=True, exist_ok=True)
    client = AsyncClient(server.url, user.user_id, store_path=str(store),
                         config=AsyncClientConfig(store_sync_tokens=True,
                                                  encryption_enabled=True))
    resp = await client.login(user.password, device_name=device_name)
    if not isinstance(resp, LoginResponse):
        await client.close()
        raise E2EEError(f"login of {user.user_id} failed: {resp}")
    if client.should_upload_keys:
        await client.keys_upload()
    await client.sync(timeout=0, full_state=True)
    return client


async def create_encrypted_room(client: AsyncClient, *, invite: list[str] | None = None,
                                is_direct: bool = False, name: str | None = None,
                                encrypted: bool = True) -> str:
    """Create a room; with `encrypted`, put m.room.encryption in initial_state."""
    initial_state: list[dict[str, Any]] = []
    if encrypted:
        initial_state.append({"type": "m.room.encryption", "state_key": "",
                              "content": {"algorithm": "m.megolm.v1.aes-sha2"}})
    resp = await client.room_create(invite=invite or [], is_direct=is_direct, name=name,
                                    initial_state=initial_state)
    if not isinstance(resp, RoomCreateResponse):
        raise E2EEError(f"createRoom failed: {resp}")
    await client.sync(timeout=0)
    return str(resp.room_id)


async def join_and_sync(client: AsyncClient, room_id: str) -> None:
    resp = await client.join(room_id)
    if not isinstance(resp, JoinResponse):
        raise E2EEError(f"{client.user_id} could not join {room_id}: {resp}")
    await client.sync(timeout=0)


async def sync_all(*clients: AsyncClient) -> None:
    """One sync round for every client (device lists and room state catch up)."""
    for client in clients:
        resp = await client.sync(timeout=0)
        if not isinstance(resp, SyncResponse):
            raise E2EEError(f"sync of {client.user_id} failed: {resp}")


async def send_text(client: AsyncClient, room_id: str, body: str,
                    msgtype: str = "m.text") -> str:
    """Send an encrypted text message (room keys shared with every member's devices)."""
    return await send_content(client, room_id, "m.room.message",
                              {"msgtype": msgtype, "body": body})


async def send_content(client: AsyncClient, room_id: str, event_type: str,
                       content: dict[str, Any]) -> str:
    if client.should_query_keys:
        await client.keys_query()
    resp = await client.room_send(room_id, event_type, content, ignore_unverified_devices=True)
    if not isinstance(resp, RoomSendResponse):
        raise E2EEError(f"send into {room_id} failed: {resp}")
    return str(resp.event_id)


async def upload_encrypted(client: AsyncClient, data: bytes, *, content_type: str,
                           filename: str) -> tuple[str, dict[str, Any]]:
    """Encrypt and upload `data`; returns (mxc URI, decryption info for the `file` field)."""
    resp, keys = await client.upload(io.BytesIO(data), content_type=content_type,
                                     filename=filename, encrypt=True, filesize=len(data))
    if not isinstance(resp, UploadResponse) or keys is None:
        raise E2EEError(f"upload failed: {resp}")
    return str(resp.content_uri), dict(keys)


async def send_encrypted_file(client: AsyncClient, room_id: str, data: bytes, *,
                              content_type: str = "application/pdf",
                              filename: str = "contract.pdf") -> tuple[str, str]:
    """Upload an encrypted attachment and post it; returns (event_id, mxc URI)."""
    mxc, keys = await upload_encrypted(client, data, content_type=content_type,
                                       filename=filename)
    file_info = {**keys, "url": mxc}
    content = {"msgtype": "m.file", "body": filename, "file": file_info,
               "info": {"mimetype": content_type, "size": len(data)}}
    event_id = await send_content(client, room_id, "m.room.message", content)
    return event_id, mxc


async def wait_for_event(client: AsyncClient, room_id: str,
                         predicate: Callable[[Event], bool], *,
                         timeout: float = 20.0) -> Event:
    """Sync until an event in `room_id` matching `predicate` arrives (decrypted by nio)."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: list[Event] = []
    while asyncio.get_running_loop().time() < deadline:
        resp = await client.sync(timeout=500)
        if isinstance(resp, SyncResponse):
            room = resp.rooms.join.get(room_id)
            if room is not None:
                for event in room.timeline.events:
                    seen.append(event)
                    if predicate(event):
                        return event
    kinds = ", ".join(type(e).__name__ for e in seen) or "none"
    raise E2EEError(f"{client.user_id}: no matching event in {room_id} within {timeout} s "
                    f"(saw: {kinds})")


async def wait_for_decrypted(client: AsyncClient, room_id: str, *, body: str,
                             timeout: float = 20.0) -> RoomMessageText:
    """Wait until `body` arrives and was decrypted (an undecryptable MegolmEvent fails)."""
    def match(event: Event) -> bool:
        if isinstance(event, MegolmEvent):
            raise E2EEError(f"{client.user_id} could not decrypt {event.event_id}")
        return isinstance(event, RoomMessageText) and event.body == body

    event = await wait_for_event(client, room_id, match, timeout=timeout)
    assert isinstance(event, RoomMessageText)
    return event


async def close_all(*clients: AsyncClient) -> None:
    for client in clients:
        await client.close()
