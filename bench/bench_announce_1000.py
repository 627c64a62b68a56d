"""Reminders at full speed under Synapse's own rate limits: 1,000 people, 1,000 new chats.

One Synapse (SQLite, the default modules) with **Synapse's default per-user rate limits**
(`rc_message`, `rc_room_creation`, `rc_invites`, … — the test relaxations are removed);
only `rc_login` is relaxed, because setting up 1,000 employees logs in 1,000 devices from
this one address (that is set-up, not measured; the bot itself logs in once). `hauspost run`
exempts the service account and the bot; here `start_synapse` creates the service account
(exempted as `ensure_service_token` does) and the bot's first start exempts the bot.

1. An acknowledgement-required announcement to 1,000 recipients, each with one E2EE device,
   into a room that already holds them all (like the org policy's all-hands room; the
   admin joins are set-up and reported apart). **Baseline**: this send, from the start of
   `announce()` until it returns, and until the sampled devices decrypted it.
2. Ticks before any reminder is due (`hauspost tick --now <sent + 10 min>`, each its own
   process, as cron or `hauspost serve` runs them): each opens, within
   `direct_chats_ahead_seconds` (default 30), the direct chats the reminders will need.
   Reported: how many ticks, the longest, and the chats' total time.
3. `hauspost tick --now <deadline - 23 h>` as a separate process: the 24 h reminder is due
   for all 1,000 (nobody acknowledged), each in a chat nobody has been invited to yet.
   Measured from the start of the process: when it returned (the last reminder sent) and
   when the last of the sampled devices (full matrix-nio clients, online during the tick)
   accepted the bot's invitation and decrypted its reminder.
   With `--cold`, step 2 is skipped (`direct_chats_ahead_seconds: 0`): the due tick opens
   all 1,000 chats itself, as it did before chats were opened ahead.
4. 429s: every request Synapse answered with 429 during the run, counted in its request
   log (target 0), and the bot's devices afterwards (target 1: it logged in once).

The other devices are bare vodozemac accounts that uploaded device keys and signed
one-time keys exactly as a client does (see bench_announce.py).

    .venv/bin/python bench/bench_announce_1000.py [--employees 1000] [--sample 20] [--cold]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml
from nio import AsyncClient, MegolmEvent, RoomMessageText, SyncResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_announce import decrypted, device_client, make_devices  # noqa: E402

from provisioner.announcements.bot import open_bot  # noqa: E402
from provisioner.announcements.compose import validate_request  # noqa: E402
from provisioner.announcements.config import (  # noqa: E402
    ANNOUNCEMENTS_FILE,
    AnnouncementConfig,
)
from provisioner.announcements.send import announce  # noqa: E402
from provisioner.announcements.targets import ExplicitRoom, Person, Target  # noqa: E402
from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import open_store  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from tests.harness.synapse_server import (  # noqa: E402
    TEST_RATE_LIMITS,
    SynapseServer,
    start_synapse,
)

CONFIG = AnnouncementConfig()
HAUSPOST = str(Path(sys.executable).parent / "hauspost")
TITLE = "Neue Arbeitsschutzunterweisung"
#: Synapse's request log: '... 2B 429 "POST /_matrix/client/v3/createRoom HTTP/1.1" ...'
REQUEST = re.compile(r' (\d{3}) "([A-Z]+) ([^ ?"]+)')


def production_limits(config: dict[str, Any]) -> None:
    """Synapse's default per-user limits: drop every test relaxation except logins."""
    for key in TEST_RATE_LIMITS:
        config.pop(key, None)
    config["rc_login"] = TEST_RATE_LIMITS["rc_login"]


def synapse_log(server: SynapseServer) -> Path:
    log_config = yaml.safe_load((server.data_dir / "log.config").read_text(encoding="utf-8"))
    return Path(log_config["handlers"]["file"]["filename"])


def rate_limited(log: Path, offset: int) -> Counter[str]:
    """429 answers in Synapse's request log after byte `offset`, by method and path."""
    with log.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode("utf-8", errors="replace")
    found: Counter[str] = Counter()
    for match in REQUEST.finditer(text):
        if match.group(1) == "429":
            path = re.sub(r"/(![^/]+|%21[^/]+|@[^/]+|%40[^/]+|[0-9]+)(?=/|$)", "/…",
                          match.group(3))
            found[f"{match.group(2)} {path}"] += 1
    return found


async def reminder_decrypted(client: AsyncClient, bot: str, start: float,
                             timeout: float = 600) -> float:
    """Accept the bot's invitation, then sync until its reminder is decrypted; seconds
    since `start`."""
    while time.perf_counter() - start < timeout:
        resp = await client.sync(timeout=1000)
        if not isinstance(resp, SyncResponse):
            continue
        for room_id, invited in list(client.invited_rooms.items()):
            if invited.inviter == bot or bot in invited.users:
                await client.join(room_id)
        for room in resp.rooms.join.values():
            for event in room.timeline.events:
                if isinstance(event, MegolmEvent):
                    event = client.decrypt_event(event)  # the key came in this sync
                if isinstance(event, RoomMessageText) and event.sender == bot \
                        and TITLE in event.body:
                    return time.perf_counter() - start
    raise RuntimeError(f"{client.user_id} did not decrypt a reminder in {timeout} s")


async def run_tick_process(server: SynapseServer, now: str) -> tuple[dict[str, Any], str]:
    """`hauspost tick --now` in its own process: its JSON and its log."""
    proc = await asyncio.create_subprocess_exec(
        HAUSPOST, "-v", "tick", "-d", str(server.data_dir), "--now", now, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"tick failed ({proc.returncode}): {err.decode()[-2000:]}")
    return json.loads(out), err.decode()


async def bot_devices(server: SynapseServer, bot: str) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers={
            "Authorization": f"Bearer {server.admin_token}"}) as http:
        resp = await http.get(f"/_synapse/admin/v2/users/{quote(bot)}/devices")
        resp.raise_for_status()
        return int(resp.json()["total"])


async def run(args: argparse.Namespace, tmp: Path, server: SynapseServer) -> dict[str, Any]:
    settings = load_settings(server.data_dir)
    store = open_store(settings.store_url)
    log = synapse_log(server)
    figures: dict[str, Any] = {}
    stores = tmp / "clients"
    t = time.perf_counter()
    devices = await make_devices(server, "emp", args.employees, stores, live=args.sample)
    figures["setup_accounts_s"] = time.perf_counter() - t
    user_ids = [u for u, _, _ in devices]

    bot = await open_bot(settings, CONFIG, server.admin_token)  # first start: logs in once
    try:
        room_id = await bot.create_room(name="Alle", read_only=True,
                                        extra_power={settings.service_user_id: 100})
        bot_id = bot.user_id
        t = time.perf_counter()
        await bot.force_join(room_id, user_ids)
        figures["setup_joins_s"] = time.perf_counter() - t
    finally:
        await bot.close()

    clients = []
    for user_id, device_id, token in devices[:args.sample]:
        client = device_client(server, user_id, stores)
        client.restore_login(user_id, device_id, token)
        await client.sync(timeout=0, full_state=True)
        clients.append(client)
    people = [Person(user_id=u, employee_id=f"E{i:04d}", display_name=f"P {i}",
                     localpart=u[1:].split(":")[0]) for i, u in enumerate(user_ids)]
    # As after a sync: every recipient's account is linked in the store (`announce` takes
    # its recipients from those links; the tick opens chats only for active accounts).
    with store.session() as session:
        for p in people:
            repo.insert_link(session, employee_id=p.employee_id, user_id=p.user_id,
                             now=datetime.now(UTC), run_id=None, display_name=p.display_name,
                             email=None)
    log_start = log.stat().st_size

    # 1. The announcement (baseline).
    sent_at = datetime.now(UTC)
    deadline = sent_at + timedelta(hours=48)
    request = validate_request(f"# {TITLE}\n\nBitte bis Freitag lesen.", deadline, sent_at)
    start = time.perf_counter()
    result = await announce(settings, CONFIG, store, admin_token=server.admin_token,
                            targets=[Target("all")], people=people, request=request,
                            rooms=ExplicitRoom(room_id), actor="bench", now=sent_at)
    figures["announce_s"] = time.perf_counter() - start
    times = await asyncio.gather(*(decrypted(c, room_id, result.event_ids[0], start)
                                   for c in clients))
    figures["announce_last_decrypt_s"] = max(times)
    figures["announce_devices"] = result.devices

    # 2. Ticks before the first reminder is due open the chats ahead.
    ahead_ticks: list[tuple[int, float]] = []
    early = (sent_at + timedelta(minutes=10)).isoformat()
    while not args.cold:
        start = time.perf_counter()
        tick, _ = await run_tick_process(server, early)
        ahead_ticks.append((tick["direct_chats_ahead"], time.perf_counter() - start))
        if tick["direct_chats_ahead"] == 0 or len(ahead_ticks) > 100:
            break
    figures["ahead_ticks"] = ahead_ticks

    # 3. The reminder tick, as `hauspost tick --now` in its own process.
    due = (deadline - timedelta(hours=23)).isoformat()
    start = time.perf_counter()
    watchers = [asyncio.create_task(reminder_decrypted(c, bot_id, start)) for c in clients]
    tick, err = await run_tick_process(server, due)
    figures["tick_s"] = time.perf_counter() - start
    figures["tick_log"] = [line for line in err.splitlines()
                           if "tick:" in line or "bot ready" in line or "logged in" in line]
    figures["reminders"] = len(tick["reminders"])
    figures["failed"] = len(tick["failed"])
    times = await asyncio.gather(*watchers)
    figures["tick_last_decrypt_s"] = max(times)
    figures["tick_median_decrypt_s"] = sorted(times)[len(times) // 2]

    figures["rate_limited"] = rate_limited(log, log_start)
    figures["bot_devices"] = await bot_devices(server, bot_id)
    for client in clients:
        await client.close()
    store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--employees", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--cold", action="store_true",
                        help="no chats opened ahead: the due tick opens all of them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-announce-1000-") as tmp:
        server = start_synapse(Path(tmp) / "synapse", edit=production_limits, extra_config={
            "bcrypt_rounds": 4, "background_updates": {"sleep_enabled": False}})
        if args.cold:
            (server.data_dir / ANNOUNCEMENTS_FILE).write_text(
                "direct_chats_ahead_seconds: 0\n", encoding="utf-8")
        try:
            f = asyncio.run(run(args, Path(tmp), server))
        finally:
            server.stop()
    n = args.employees
    print(f"set-up: {n} accounts with one E2EE device each {f['setup_accounts_s']:.1f} s, "
          f"admin joins into the all-hands room {f['setup_joins_s']:.1f} s")
    ahead = f["ahead_ticks"]
    if ahead:
        print(f"chats opened ahead: {sum(c for c, _ in ahead)} in {len(ahead)} ticks "
              f"(the last opened none), {sum(t for _, t in ahead):.1f} s in all, longest tick "
              f"{max(t for _, t in ahead):.1f} s: "
              + ", ".join(f"{c}/{t:.0f}s" for c, t in ahead))
    kind = "chats opened ahead" if ahead else "new direct chats"
    print(f"{'':<58}{'seconds':>10}")
    rows = [("announcement to {n} (baseline): announce() returned", f["announce_s"]),
            ("  last of {s} sampled devices decrypted it", f["announce_last_decrypt_s"]),
            ("reminder tick, {n} " + kind + ": process returned", f["tick_s"]),
            ("  median sampled device decrypted its reminder", f["tick_median_decrypt_s"]),
            ("  last of {s} sampled devices decrypted its reminder", f["tick_last_decrypt_s"])]
    for name, value in rows:
        print(f"{name.format(n=n, s=args.sample):<58}{value:>10.2f}")
    limited = f["rate_limited"]
    print(f"announcement reached {f['announce_devices']} devices; reminders sent "
          f"{f['reminders']}, failed {f['failed']}")
    print(f"429 answers in Synapse's request log during the run: {sum(limited.values())}"
          + "".join(f"\n  {count:>5}  {what}" for what, count in limited.most_common()))
    print(f"the bot's devices afterwards: {f['bot_devices']}")
    for line in f["tick_log"]:
        print(f"  tick log: {line}")
    end = max(f["tick_s"], f["tick_last_decrypt_s"])
    print(f"ratio tick / announcement: {f['tick_s'] / f['announce_s']:.1f}x; "
          f"last reminder sent and decrypted within 60 s with no 429: "
          f"{'yes' if end <= 60 and not limited else 'NO'} ({end:.1f} s)")


if __name__ == "__main__":
    main()
