"""Announcement reach: time from send until every device can decrypt, and report speed.

One Synapse (SQLite, the default policy modules, as `hauspost init` writes them; test-only
relaxed rate limits and `bcrypt_rounds: 4` so that creating 1,000 password logins stays
bounded). N employees, one E2EE device each (matrix-nio, vodozemac: keys uploaded).

Key distribution, measured as `hauspost announce` does it (the bot's `announce()` into a
room that already holds everyone, like the org policy's all-hands room):

- `send`: from the start of `announce()` until it returns: bot start (restored device),
  posting check, key sharing to every device (one /keys/claim, one Olm message per device,
  to-device requests of 20 devices each, in parallel), the encrypted event, the store.
- `all inboxes`: proof that *every* device can decrypt: each of the N devices has the
  bot's Olm-encrypted room key in its to-device inbox (read from Synapse's `device_inbox`
  table right after `send`; the number of distinct devices must equal N).
- `live decrypt`: S of the devices belong to full matrix-nio clients (re-opened on their
  stores, synced once before the send); they sync and decrypt the announcement; time from
  the start of the send until the last of them shows the plaintext. The other devices are
  bare vodozemac accounts that uploaded device keys and a signed one-time key exactly as a
  client does: to Synapse and to the bot they are indistinguishable. Running 1,000 live
  clients on a shared two-core machine would measure the clients, not the delivery.

Baseline in the same run: the same measurement for an announcement to a room of 20.

Report: `build_report` + text + CSV + JSON + HTML (with the SVG chart) for 10,000
recipients in a SQLite store; baseline: fetching the same 10,000 rows with one SELECT.

    .venv/bin/python bench/bench_announce.py [--employees 1000] [--sample 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml
from nio import AsyncClient, AsyncClientConfig, MegolmEvent, RoomMessageText, SyncResponse
from vodozemac import Account

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.announcements.bot import open_bot  # noqa: E402
from provisioner.announcements.compose import validate_request  # noqa: E402
from provisioner.announcements.config import AnnouncementConfig  # noqa: E402
from provisioner.announcements.report import (  # noqa: E402
    build_report,
    render_csv,
    render_html,
    render_text,
)
from provisioner.announcements.send import announce  # noqa: E402
from provisioner.announcements.targets import ExplicitRoom, Person, Target  # noqa: E402
from provisioner.settings import Settings, load_settings  # noqa: E402
from provisioner.store import Store, open_store  # noqa: E402
from provisioner.store.announcement_models import AnnouncementRow, RecipientRow  # noqa: E402
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, start_synapse  # noqa: E402

CONFIG = AnnouncementConfig()


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def raw_device_keys(user_id: str, device_id: str) -> dict[str, Any]:
    """Device keys and one signed one-time key from a bare vodozemac account: what a client
    uploads, minus the client (devices that are not live-checked need no store)."""
    account = Account()
    device: dict[str, Any] = {
        "user_id": user_id, "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": account.curve25519_key.to_base64(),
                 f"ed25519:{device_id}": account.ed25519_key.to_base64()}}
    device["signatures"] = {user_id: {
        f"ed25519:{device_id}": account.sign(canonical(device)).to_base64()}}
    account.generate_one_time_keys(2)
    one_time: dict[str, Any] = {}
    for key_id, key in account.one_time_keys.items():
        signed: dict[str, Any] = {"key": key.to_base64()}
        signed["signatures"] = {user_id: {
            f"ed25519:{device_id}": account.sign(canonical(signed)).to_base64()}}
        one_time[f"signed_curve25519:{key_id}"] = signed
    return {"device_keys": device, "one_time_keys": one_time}


async def make_devices(server: SynapseServer, prefix: str, n: int, stores: Path, live: int,
                       concurrency: int = 12) -> list[tuple[str, str, str]]:
    """N accounts with one E2EE device each: (user_id, device_id, token). The first `live`
    get a matrix-nio client store (for live decrypt checks); the rest bare keys."""
    user_ids = [server.mxid(f"{prefix}{i:04d}") for i in range(n)]
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency * 2)) as http:
        async def create(i: int, user_id: str) -> None:
            async with limit:
                resp = await http.put(f"/_synapse/admin/v2/users/{quote(user_id)}",
                                      headers=headers,
                                      json={"password": TEST_PASSWORD, "displayname": f"P {i}"})
                resp.raise_for_status()

        await asyncio.gather(*(create(i, u) for i, u in enumerate(user_ids)))
    return await login_devices(server, user_ids, stores, live, concurrency)


async def login_devices(server: SynapseServer, user_ids: list[str], stores: Path, live: int,
                        concurrency: int = 12) -> list[tuple[str, str, str]]:
    """One E2EE device each for existing accounts, by password login (an LDAP login for
    synced employees) and a key upload: (user_id, device_id, token) in the order of
    `user_ids`. The first `live` get a matrix-nio client store; the rest bare keys."""
    out: list[tuple[str, str, str]] = [("", "", "")] * len(user_ids)
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency * 2)) as http:
        async def one(i: int, user_id: str) -> None:
            async with limit:
                login = await http.post("/_matrix/client/v3/login", json={
                    "type": "m.login.password", "password": TEST_PASSWORD,
                    "identifier": {"type": "m.id.user", "user": user_id}})
                login.raise_for_status()
                data = login.json()
                if i < live:
                    client = device_client(server, user_id, stores)
                    client.restore_login(user_id, data["device_id"], data["access_token"])
                    await client.keys_upload()
                    await client.close()
                else:
                    upload = await http.post(
                        "/_matrix/client/v3/keys/upload",
                        headers={"Authorization": f"Bearer {data['access_token']}"},
                        json=raw_device_keys(user_id, data["device_id"]))
                    upload.raise_for_status()
                out[i] = (user_id, data["device_id"], data["access_token"])

        await asyncio.gather(*(one(i, u) for i, u in enumerate(user_ids)))
    return out


def device_client(server: SynapseServer, user_id: str, stores: Path) -> AsyncClient:
    path = stores / user_id.split(":")[0][1:]
    path.mkdir(parents=True, exist_ok=True)
    return AsyncClient(server.url, user_id, store_path=str(path),
                       config=AsyncClientConfig(store_sync_tokens=True, encryption_enabled=True))


async def admin_join(server: SynapseServer, room_id: str, user_ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    limit = asyncio.Semaphore(12)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, headers=headers) as http:
        async def one(user_id: str) -> None:
            async with limit:
                (await http.post(f"/_synapse/admin/v1/join/{quote(room_id)}",
                                 json={"user_id": user_id})).raise_for_status()
        await asyncio.gather(*(one(u) for u in user_ids))


def synapse_rows(server: SynapseServer, sql: str, params: tuple[Any, ...] = ()
                 ) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on Synapse's database, SQLite or PostgreSQL (from its
    homeserver.yaml); `sql` uses `?` placeholders."""
    config = yaml.safe_load((server.data_dir / "homeserver.yaml").read_text(encoding="utf-8"))
    database = config.get("database") or {}
    if database.get("name") == "psycopg2":
        import psycopg2

        args = database["args"]
        conn = psycopg2.connect(dbname=args["database"], host=args["host"], port=args["port"],
                                user=args["user"])
        try:
            with conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return list(cur.fetchall())
        finally:
            conn.close()
    db = sqlite3.connect(f"file:{server.data_dir / 'homeserver.db'}?mode=ro", uri=True)
    try:
        return list(db.execute(sql, params).fetchall())
    finally:
        db.close()


def inbox_devices(server: SynapseServer, bot_device: str, stream_after: int) -> int:
    """Distinct devices holding an Olm message from the bot's device since `stream_after`."""
    rows = synapse_rows(server, "SELECT user_id, device_id, message_json FROM device_inbox "
                        "WHERE stream_id > ?", (stream_after,))
    devices = set()
    for user_id, device_id, message in rows:
        content = json.loads(message)
        if content.get("type") == "m.room.encrypted" and \
                content.get("content", {}).get("sender_key") and \
                content.get("sender") and content["sender"].startswith("@hauspost-bot"):
            devices.add((user_id, device_id))
    _ = bot_device
    return len(devices)


def max_inbox_stream(server: SynapseServer) -> int:
    rows = synapse_rows(server, "SELECT COALESCE(MAX(stream_id), 0) FROM device_inbox")
    return int(rows[0][0])


async def decrypted(client: AsyncClient, room_id: str, event_id: str, start: float,
                    timeout: float = 120) -> float:
    pending: MegolmEvent | None = None
    while time.perf_counter() - start < timeout:
        resp = await client.sync(timeout=500)
        if isinstance(resp, SyncResponse):
            room = resp.rooms.join.get(room_id)
            for event in room.timeline.events if room else []:
                if event.event_id == event_id:
                    if isinstance(event, RoomMessageText):
                        return time.perf_counter() - start
                    pending = event if isinstance(event, MegolmEvent) else pending
            if pending is not None:
                event = client.decrypt_event(pending)
                if isinstance(event, RoomMessageText):
                    return time.perf_counter() - start
    raise RuntimeError(f"{client.user_id} did not decrypt {event_id} in {timeout} s")


async def measure(server: SynapseServer, settings: Settings, store: Store, stores: Path,
                  devices: list[tuple[str, str, str]], sample: int, label: str) -> dict[str, Any]:
    user_ids = [u for u, _, _ in devices]
    bot = await open_bot(settings, CONFIG, server.admin_token)
    try:
        room_id = await bot.create_room(name=f"bench {label}", read_only=True,
                                        extra_power={settings.service_user_id: 100})
        t = time.perf_counter()
        await bot.force_join(room_id, user_ids)
        setup = time.perf_counter() - t
        bot_device = bot.device_id
    finally:
        await bot.close()
    picked = devices[:sample]  # the ones with a client store (make_devices' `live`)
    clients = []
    for user_id, device_id, token in picked:
        client = device_client(server, user_id, stores)
        client.restore_login(user_id, device_id, token)
        await client.sync(timeout=0, full_state=True)
        clients.append(client)
    people = [Person(user_id=u, employee_id=u, display_name=u, localpart=u) for u in user_ids]
    figures: dict[str, Any] = {"devices": len(devices), "setup_joins_s": setup,
                               "live_sample": len(clients)}
    # First: the bot has no Olm session with any device yet (claims a one-time key per
    # device). Again: the next announcement into the same room reuses those sessions.
    for round_name in ("first", "again"):
        request = validate_request(f"Bench announcement {label} {round_name}", None,
                                   datetime.now(UTC))
        stream_before = max_inbox_stream(server)
        start = time.perf_counter()
        result = await announce(settings, CONFIG, store, admin_token=server.admin_token,
                                targets=[Target("all")], people=people, request=request,
                                rooms=ExplicitRoom(room_id), actor="bench",
                                now=datetime.now(UTC))
        send = time.perf_counter() - start
        inboxes = inbox_devices(server, bot_device, stream_before)
        times = await asyncio.gather(*(decrypted(c, room_id, result.event_ids[0], start)
                                       for c in clients))
        figures.update({f"{round_name}_send_s": send, f"{round_name}_shared": result.devices,
                        f"{round_name}_inbox": inboxes,
                        f"{round_name}_median_live_s": sorted(times)[len(times) // 2],
                        f"{round_name}_last_live_s": max(times)})
    for client in clients:
        await client.close()
    return figures


def bench_report(tmp: Path, recipients: int) -> dict[str, float]:
    store = open_store(f"sqlite:///{tmp / 'report.db'}")
    t0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    rnd = random.Random(3)
    with store.session() as session:
        session.add(AnnouncementRow(id=1, created_at=t0, actor="bench", sender="@bot:x",
                                    target={"targets": ["all"]}, title="Bench", requires_ack=True,
                                    deadline=t0 + timedelta(days=2), status="sent",
                                    recipients_total=recipients, delivered_total=recipients,
                                    devices_total=recipients))
        session.flush()
        rows = []
        for i in range(recipients):
            acked = rnd.random() < 0.8
            at = t0 + timedelta(minutes=rnd.randint(1, 2880))
            rows.append(RecipientRow(announcement_id=1, user_id=f"@p{i:05d}:x", employee_id=str(i),
                                     display_name=f"Person {i:05d}", department=f"D{i % 40}",
                                     devices=1, seen_at=at, acked_at=at if acked else None,
                                     ack_via="reaction" if acked else None))
        session.add_all(rows)
    from sqlalchemy import select

    t = time.perf_counter()
    with store.session() as session:
        fetched = session.execute(select(RecipientRow.user_id, RecipientRow.acked_at)
                                  .where(RecipientRow.announcement_id == 1)).all()
    baseline = time.perf_counter() - t
    assert len(fetched) == recipients
    t = time.perf_counter()
    report = build_report(store, 1)
    built = time.perf_counter() - t
    t = time.perf_counter()
    render_text(report)
    render_csv(report)
    json.dumps(report.to_json())
    page = render_html(report)
    rendered = time.perf_counter() - t
    store.close()
    return {"baseline_select_s": baseline, "build_s": built, "render_all_s": rendered,
            "html_kb": len(page) / 1024}


async def run(args: argparse.Namespace, tmp: Path, server: SynapseServer) -> None:
    try:
        settings = load_settings(server.data_dir)
        store = open_store(settings.store_url)
        stores = tmp / "clients"
        t = time.perf_counter()
        small = await make_devices(server, "base", 20, stores, live=min(args.sample, 20))
        big = await make_devices(server, "emp", args.employees, stores, live=args.sample)
        print(f"prepared {len(small) + len(big)} accounts with one E2EE device each in "
              f"{time.perf_counter() - t:.1f} s", file=sys.stderr)
        baseline = await measure(server, settings, store, stores, small, min(args.sample, 20),
                                 "baseline")
        full = await measure(server, settings, store, stores, big, args.sample, "full")
        store.close()
    finally:
        server.stop()
    report = bench_report(tmp, args.report_recipients)
    print(f"{'':<44}{'baseline (20)':>14}{f'announce ({args.employees})':>18}")
    rows = [("setup_joins_s", "room set-up: admin joins [s]"),
            ("live_sample", "live decrypt checks (nio clients)")]
    for r, what in (("first", "first announcement (new Olm sessions)"),
                    ("again", "next announcement (sessions reused)")):
        rows += [(None, what),
                 (f"{r}_send_s", "  send incl. key sharing [s]"),
                 (f"{r}_shared", "  devices the key was shared with"),
                 (f"{r}_inbox", "  devices holding the key (inbox)"),
                 (f"{r}_median_live_s", "  median send->decrypt [s]"),
                 (f"{r}_last_live_s", "  last send->decrypt [s]")]
    for key, name in rows:
        if key is None:
            print(name)
            continue
        b, f = baseline[key], full[key]
        fmt = "{:>14.2f}{:>18.2f}" if isinstance(f, float) else "{:>14}{:>18}"
        print(f"{name:<44}" + fmt.format(b, f))
    for r in ("first", "again"):
        ok = full[f"{r}_inbox"] == args.employees and full[f"{r}_last_live_s"] <= 15
        print(f"{r}: send time ratio {args.employees} vs 20 devices "
              f"{full[f'{r}_send_s'] / baseline[f'{r}_send_s']:.1f}x; every device holds the "
              f"key and the sample decrypted within 15 s: {'yes' if ok else 'NO'}")
    print(f"report for {args.report_recipients} recipients: build {report['build_s']:.3f} s, "
          f"text+CSV+JSON+HTML {report['render_all_s']:.3f} s (HTML {report['html_kb']:.0f} KiB); "
          f"baseline one SELECT of the rows {report['baseline_select_s']:.3f} s "
          f"(x{(report['build_s'] + report['render_all_s']) / report['baseline_select_s']:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--employees", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=50)
    parser.add_argument("--report-recipients", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-announce-") as tmp:
        server = start_synapse(Path(tmp) / "synapse", extra_config={
            "bcrypt_rounds": 4, "background_updates": {"sleep_enabled": False}})
        asyncio.run(run(args, Path(tmp), server))


if __name__ == "__main__":
    main()
