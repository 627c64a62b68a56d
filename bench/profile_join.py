"""Where a join into a big room spends its time: py-spy on Synapse while admin-API joins
fill one invite-only, encrypted room (the default modules, as `hauspost init` writes them).

N accounts (batched path), one room; joins in windows of 200 at concurrency 8, joins/s and
p50 per window; py-spy (`pip install py-spy`) records the window that starts at `--at`
members and the breakdown is printed per thread as shares of that window's wall time.
The table in docs/scale-out.md "Where a join spends its time" comes from

    .venv/bin/python bench/profile_join.py --members 2000 --at 0
    .venv/bin/python bench/profile_join.py --members 2000 --at 1800
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.synapse_server import SynapseServer, start_synapse  # noqa: E402

WINDOW = 200
HZ = 200
# First match wins, so the more specific frames come first.
CATEGORIES = [
    ("idle: reactor waiting", ("_reactor_metrics.py:87", "doPoll")),
    ("idle: database thread waiting", ("Condition.wait", "untilConcludes")),
    ("SQLite commit (fsync)", ("LoggingDatabaseConnection.commit",)),
    ("module check_event_allowed: whole room state loaded per event",
     ("ThirdPartyEventRulesModuleApiCallbacks.check_event_allowed",)),
    ("state groups", ("_get_state_groups_from_groups_txn", "store_state_group",
                      "StateGroupDataStore")),
    ("event persistence", ("_persist_events_txn", "persist_events", "calculate_chain_cover")),
    ("user directory", ("user_directory",)),
    ("push rules", ("bulk_push_rule_evaluator",)),
    ("presence", ("presence",)),
    ("event auth / state", ("event_auth", "state/__init__", "compute_state_after_events",
                            "calculate_context_info")),
    ("admin join servlet (state read, invite)", ("JoinRoomAliasServlet",)),
    ("garbage collection", ("_maybe_gc",)),
    ("HTTP, JSON, logging", ("synapse/http/", "logging/")),
]


def breakdown(raw: Path, seconds: float) -> str:
    per_thread: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    for row in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = ("main" if "MainThread" in frames[0] else
                  "database" if "PoolThread" in frames[0] and "reactor" not in frames[0]
                  else "other")
        name = next((n for n, keys in CATEGORIES if any(k in stack for k in keys)), "other")
        per_thread[thread][name] += int(count)
    wall = seconds * HZ
    lines = []
    for thread in ("main", "database"):
        counts = per_thread[thread]
        lines.append(f"{thread} thread: samples for {sum(counts.values()) / wall * 100:.0f} % "
                     "of the window (py-spy leaves out sleeping samples)")
        lines.extend(f"  {v / wall * 100:5.1f} % of wall  {k}" for k, v in counts.most_common())
    return "\n".join(lines)


async def fill(server: SynapseServer, members: int, at: int, out: Path, batch: int) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=300, headers=headers) as http:
        for start in range(0, members, 500):
            resp = await http.post("/_synapse/client/hauspost/accounts/batch", json={
                "accounts": [{"localpart": f"u{i:05d}", "display_name": f"User {i}"}
                             for i in range(start, min(members, start + 500))]})
            resp.raise_for_status()
        room = (await http.post("/_matrix/client/v3/createRoom", json={
            "preset": "private_chat", "name": "all hands", "initial_state": [
                {"type": "m.room.encryption", "state_key": "",
                 "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]})).json()["room_id"]
        users = [server.mxid(f"u{i:05d}") for i in range(members)]
        slots = asyncio.Semaphore(8)

        async def join(user_id: str, latencies: list[float]) -> None:
            async with slots:
                t = time.monotonic()
                resp = await http.post(f"/_synapse/admin/v1/join/{quote(room, safe='')}",
                                       json={"user_id": user_id})
                resp.raise_for_status()
                latencies.append(time.monotonic() - t)

        async def batched(window: list[str], latencies: list[float]) -> None:
            for i in range(0, len(window), batch):
                t = time.monotonic()
                resp = await http.post("/_synapse/client/hauspost/rooms/members/batch",
                                       json={"room_id": room, "user_ids": window[i:i + batch]})
                resp.raise_for_status()
                assert all("error" not in r for r in resp.json()["results"]), resp.text
                latencies.append(time.monotonic() - t)

        for start in range(0, members, WINDOW):
            window = users[start:start + WINDOW]
            spy = None
            if start == at:
                assert server.process.proc is not None
                spy = subprocess.Popen(  # noqa: S603 - fixed argv
                    [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                     "record", "-p", str(server.process.proc.pid), "-r", str(HZ), "-f", "raw",
                     "-o", str(out), "--threads", "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await asyncio.sleep(1.0)
            latencies: list[float] = []
            started = time.monotonic()
            if batch:
                await batched(window, latencies)
            else:
                await asyncio.gather(*(join(u, latencies) for u in window))
            seconds = time.monotonic() - started
            latencies.sort()
            print(f"members {start:5d} -> {start + len(window):5d}: "
                  f"{len(window) / seconds:5.1f} joins/s, p50 "
                  f"{latencies[len(latencies) // 2] * 1000:.0f} ms")
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
                print(breakdown(out, seconds + 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--at", type=int, default=1800,
                        help="profile the window that starts at this many members")
    parser.add_argument("--batch", type=int, default=0,
                        help="join through synapse_modules.members_batch, this many per "
                             "request (0: the admin API, one per request, 8 at a time)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="profile-join-") as tmp:
        server = start_synapse(Path(tmp) / "synapse",
                               extra_config={"background_updates": {"sleep_enabled": False}})
        try:
            asyncio.run(fill(server, args.members, args.at - args.at % WINDOW,
                             Path(tmp) / "join.raw", args.batch))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    main()
