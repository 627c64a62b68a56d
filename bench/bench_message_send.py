"""Message send throughput and latency with our policy modules vs without, same run.

Two real Synapses, both configured by `hauspost init`: one loads the membership and
encryption policies (the hot path: `check_event_allowed` on every event), the baseline
loads no modules (`modules=[]`). On each, Alice sends Megolm-shaped `m.room.encrypted`
events into a room she shares with Bob (the server can't tell fake ciphertext from real,
and plaintext would be refused by the policy). Rounds alternate between the servers so
machine noise hits both alike.

    .venv/bin/python bench/bench_message_send.py [--rounds 3] [--sends 200] [--concurrency 4]

Bounded: rounds x sends events per server (600 by default), well under a minute.
Target: throughput with modules / baseline >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.homeserver.module_configs import encryption_policy, membership_policy  # noqa: E402
from tests.harness.synapse_server import SynapseServer, start_synapse  # noqa: E402

SERVER_NAME = "hauspost.test"
SERVICE_USER = f"@hauspost:{SERVER_NAME}"


@dataclass
class Target:
    label: str
    server: SynapseServer
    token: str
    room_id: str
    throughput: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


def prepare(server: SynapseServer, label: str) -> Target:
    alice, bob = server.create_user("alice"), server.create_user("bob")
    room = server.create_room(alice, invite=[bob.user_id], initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    server.join(bob, room).raise_for_status()
    return Target(label, server, alice.token, room)


def ciphertext(i: int) -> dict[str, str]:
    return {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "K" * 43,
            "device_id": "BENCH", "session_id": "S" * 43, "ciphertext": f"{i:08d}" + "A" * 200}


async def one_round(target: Target, round_no: int, sends: int, concurrency: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(sends):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            path = f"/_matrix/client/v3/rooms/{target.room_id}/send/m.room.encrypted/r{round_no}t{i}"
            started = time.perf_counter()
            resp = await client.put(path, json=ciphertext(i))
            target.latencies_ms.append((time.perf_counter() - started) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"{target.label}: {resp.status_code} {resp.text[:200]}")

    headers = {"Authorization": f"Bearer {target.token}"}
    async with httpx.AsyncClient(base_url=target.server.url, headers=headers,
                                 timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        target.throughput.append(sends / (time.perf_counter() - started))


async def measure(targets: list[Target], rounds: int, sends: int, concurrency: int) -> None:
    for target in targets:  # warm-up: caches, connection pools, JIT-free but lazy imports
        await one_round(target, -1, 20, concurrency)
        target.throughput.clear()
        target.latencies_ms.clear()
    for r in range(rounds):
        for target in (targets if r % 2 == 0 else list(reversed(targets))):
            await one_round(target, r, sends, concurrency)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    policies = [membership_policy(SERVICE_USER), encryption_policy()]
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        policed = start_synapse(Path(tmp) / "policed", server_name=SERVER_NAME,
                                modules=policies)
        try:
            baseline = start_synapse(Path(tmp) / "baseline", server_name=SERVER_NAME,
                                     modules=[])
            try:
                targets = [prepare(policed, "modules"), prepare(baseline, "baseline")]
                # The policy is really on in one and off in the other.
                for target, expected in ((targets[0], 403), (targets[1], 200)):
                    with target.server.client(target.token) as c:
                        resp = c.put(f"/_matrix/client/v3/rooms/{target.room_id}/send/"
                                     "m.room.message/probe", json={"msgtype": "m.text",
                                                                   "body": "plaintext"})
                        assert resp.status_code == expected, (target.label, resp.text)
                asyncio.run(measure(targets, args.rounds, args.sends, args.concurrency))
            finally:
                baseline.stop()
        finally:
            policed.stop()

    print(f"message send (m.room.encrypted), {args.rounds} alternating rounds x {args.sends} "
          f"sends, concurrency {args.concurrency}")
    print(f"{'server':>9} {'sends/s (median round)':>23} {'p50 ms':>8} {'p95 ms':>8}")
    for t in targets:
        print(f"{t.label:>9} {statistics.median(t.throughput):23.1f} "
              f"{percentile(t.latencies_ms, 50):8.1f} {percentile(t.latencies_ms, 95):8.1f}")
    ratio = statistics.median(targets[0].throughput) / statistics.median(targets[1].throughput)
    print(f"throughput ratio modules/baseline: {ratio:.3f} (target >= 0.95): "
          + ("met" if ratio >= 0.95 else "NOT met"))


if __name__ == "__main__":
    main()
