"""Download throughput with the media gate vs without, two real Synapses in the same run.

Both servers are configured by `hauspost init` with the default modules; the baseline
simply leaves out synapse_modules.media_gate.MediaGate. On each server Bob downloads a
file Alice uploaded into a room they share - the gate's full path (one database
statement per download). Rounds alternate between the servers so machine noise hits
both alike; the figure is the median round. Target: gate / baseline >= 0.95.

    .venv/bin/python bench/bench_media_download.py [--rounds 9] [--concurrency 4]

Bounded: at most rounds x (requests per size) downloads per server, ~1-2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.synapse_server import SynapseServer, start_synapse  # noqa: E402


@dataclass(frozen=True)
class Workload:
    name: str
    size: int
    per_round: int
    distinct: bool  # every request a file nobody fetched before (the gate's cold path)


WORKLOADS = (
    Workload("64 KiB, same file", 64 * 1024, 300, distinct=False),
    Workload("1 MiB, same file", 1024 * 1024, 120, distinct=False),
    Workload("64 KiB, first fetch", 64 * 1024, 300, distinct=True),
)


def without_media_gate(config: dict[str, Any]) -> None:
    config["modules"] = [m for m in config["modules"]
                         if m["module"] != "synapse_modules.media_gate.MediaGate"]


@dataclass
class Target:
    label: str
    server: SynapseServer
    reader_token: str
    paths: dict[str, list[str]]


def prepare(server: SynapseServer, label: str, rounds: int) -> Target:
    """Alice uploads; Bob, her room-mate, will download (the gate's full check)."""
    alice, bob = server.create_user("alice"), server.create_user("bob")
    room = server.create_room(alice, invite=[bob.user_id], initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    server.join(bob, room).raise_for_status()
    paths: dict[str, list[str]] = {}
    with server.client(alice.token) as client:
        for work in WORKLOADS:
            paths[work.name] = []
            # +1 per round: each round's first request only warms the connection.
            for _ in range(rounds * (work.per_round + 1) if work.distinct else 1):
                resp = client.post("/_matrix/media/v3/upload", content=os.urandom(work.size),
                                   headers={"Content-Type": "application/octet-stream"})
                resp.raise_for_status()
                media_id = resp.json()["content_uri"].rsplit("/", 1)[1]
                paths[work.name].append(
                    f"/_matrix/client/v1/media/download/{server.server_name}/{media_id}")
    return Target(label, server, bob.token, paths)


def cpu_seconds(server: SynapseServer) -> float:
    """User + system CPU time of the Synapse process so far (Linux /proc)."""
    assert server.process.proc is not None
    fields = Path(f"/proc/{server.process.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_round(target: Target, work: Workload, concurrency: int) -> tuple[float, float]:
    """(downloads per second, Synapse CPU milliseconds per download) for one burst."""
    pool = target.paths[work.name]
    if work.distinct:
        batch = [pool.pop() for _ in range(work.per_round + 1)]
    else:
        batch = pool * (work.per_round + 1)
    warm_up, todo = batch[0], batch[1:]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for path in todo:
        queue.put_nowait(path)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                path = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            resp = await client.get(path)
            if resp.status_code != 200 or len(resp.content) != work.size:
                raise RuntimeError(f"{target.label}: {resp.status_code} {resp.text[:200]}")

    headers = {"Authorization": f"Bearer {target.reader_token}"}
    async with httpx.AsyncClient(base_url=target.server.url, headers=headers,
                                 timeout=60) as client:
        await client.get(warm_up)
        cpu_before = cpu_seconds(target.server)
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        return len(todo) / elapsed, (cpu_seconds(target.server) - cpu_before) * 1000 / len(todo)


Results = dict[str, dict[str, list[tuple[float, float]]]]


async def measure(targets: list[Target], rounds: int, concurrency: int) -> Results:
    results: Results = {t.label: {w.name: [] for w in WORKLOADS} for t in targets}
    for r in range(rounds):
        order = targets if r % 2 == 0 else list(reversed(targets))
        for work in WORKLOADS:
            for target in order:
                results[target.label][work.name].append(
                    await one_round(target, work, concurrency))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        servers: list[SynapseServer] = []
        try:
            servers.append(start_synapse(Path(tmp) / "gate"))
            servers.append(start_synapse(Path(tmp) / "baseline", edit=without_media_gate))
            # A second baseline measures the noise floor of this machine in this run.
            servers.append(start_synapse(Path(tmp) / "control", edit=without_media_gate))
            gated, baseline, control = servers
            targets = [prepare(gated, "gate", args.rounds),
                       prepare(baseline, "baseline", args.rounds),
                       prepare(control, "control", args.rounds)]
            # The baseline really serves files to non-room-mates; the gate doesn't.
            for server, target, expected in ((baseline, targets[1], 200),
                                             (gated, targets[0], 404)):
                stranger = server.create_user("carol")
                with server.client(stranger.token) as c:
                    assert c.get(target.paths[WORKLOADS[0].name][0]).status_code == expected
            results = asyncio.run(measure(targets, args.rounds, args.concurrency))
        finally:
            for server in servers:
                server.stop()

    print(f"media download throughput, {args.rounds} rounds (servers back to back, order "
          f"alternating), concurrency {args.concurrency}")
    print("ratio = median over rounds of X/baseline throughput (control: a second server "
          "without the gate = noise floor); CPU = Synapse CPU ms per download")
    print(f"{'workload':>20} {'base/s':>8} {'gate/s':>8} {'MB/s base':>10} {'MB/s gate':>10}"
          f" {'ratio':>6} {'control':>8} {'CPU base':>9} {'CPU gate':>9}")
    worst = float("inf")
    for work in WORKLOADS:
        base_runs = results["baseline"][work.name]
        gate_runs = results["gate"][work.name]
        control_runs = results["control"][work.name]
        base = statistics.median(rate for rate, _ in base_runs)
        gate = statistics.median(rate for rate, _ in gate_runs)
        ratio = statistics.median(g[0] / b[0] for g, b in zip(gate_runs, base_runs, strict=True))
        noise = statistics.median(c[0] / b[0]
                                  for c, b in zip(control_runs, base_runs, strict=True))
        cpu_base = statistics.fmean(cpu for _, cpu in base_runs)
        cpu_gate = statistics.fmean(cpu for _, cpu in gate_runs)
        worst = min(worst, ratio)
        print(f"{work.name:>20} {base:8.1f} {gate:8.1f} {base * work.size / 1e6:10.1f}"
              f" {gate * work.size / 1e6:10.1f} {ratio:6.3f} {noise:8.3f} {cpu_base:9.3f}"
              f" {cpu_gate:9.3f}")
    print(f"worst throughput ratio gate/baseline: {worst:.3f} (target >= 0.95): "
          + ("met" if worst >= 0.95 else "NOT met"))


if __name__ == "__main__":
    main()
