"""Scale-out figures, same machine, same run: one process vs workers; PostgreSQL vs SQLite.

`send`: message send throughput (Megolm-shaped `m.room.encrypted` events, our policy
modules loaded everywhere) on
  - one Synapse process on PostgreSQL (the same database engine as the layout),
  - one Synapse process on SQLite (what `hauspost init` writes by default),
  - the worker layout of `hauspost init --workers 2` on PostgreSQL + Redis, through the
    generated nginx routing (the tests' harness: tests/harness/synapse_workers.py).
Each has S senders, each in its own room with a colleague (events of one room are
serialised by Synapse, so several rooms are what a company sends into). Rounds alternate
the order of the servers so machine noise hits all alike.

`sync`: the provisioner's initial sync of N employees from slapd (run_sync end to end:
LDAP read, account listing, plan, admin-API creates with audit rows) on
  - Synapse + provisioner store on SQLite,
  - Synapse + provisioner store on PostgreSQL,
in R paired rounds (round k creates the next N/R accounts on both, alternating order).

    .venv/bin/python bench/bench_workers.py send [--rounds 3] [--sends 150] [--senders 4]
    .venv/bin/python bench/bench_workers.py sync [--employees 10000] [--rounds 4]

Bounded: `send` 3 x 150 events per server plus three start-ups, about 2 min; `sync`
2 x N account creations at Synapse's pace (60-200/s here): 2-6 min for 10,000.
The machine has 2 cores shared with other work: a worker layout cannot show its
multi-core gain here (7 processes on 2 cores), only its overhead; see docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import open_store  # noqa: E402
from provisioner.sync.run import run_sync  # noqa: E402
from tests.harness.ldap_seed import make_people, people_ldif  # noqa: E402
from tests.harness.postgres_server import PostgresServer, start_postgres  # noqa: E402
from tests.harness.slapd_server import (  # noqa: E402
    ADMIN_DN,
    ADMIN_PASSWORD,
    PEOPLE_DN,
    start_slapd,
)
from tests.harness.synapse_server import SynapseServer, start_synapse  # noqa: E402
from tests.harness.synapse_workers import start_synapse_workers  # noqa: E402


def on_postgres(postgres: PostgresServer, database: str) -> Callable[[dict[str, Any]], None]:
    """A `start_synapse(edit=...)` that points homeserver.yaml at a PostgreSQL database."""
    postgres.create_database(database)

    def edit(config: dict[str, Any]) -> None:
        config["database"] = {"name": "psycopg2", "args": {
            "database": database, "host": postgres.host, "port": postgres.port,
            "user": postgres.user, "cp_min": 5, "cp_max": 10}}

    return edit


# --- send ---------------------------------------------------------------------------------


@dataclass
class SendTarget:
    label: str
    server: SynapseServer
    senders: list[tuple[str, str]]  # (token, room_id)
    throughput: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


def prepare_send(server: SynapseServer, label: str, senders: int) -> SendTarget:
    pairs = []
    for _ in range(senders):
        alice, bob = server.create_user(), server.create_user()
        room = server.create_room(alice, invite=[bob.user_id])
        server.join(bob, room).raise_for_status()
        pairs.append((alice.token, room))
    return SendTarget(label, server, pairs)


def ciphertext(i: int) -> dict[str, str]:
    return {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "K" * 43,
            "device_id": "BENCH", "session_id": "S" * 43, "ciphertext": f"{i:08d}" + "A" * 200}


async def send_round(target: SendTarget, round_no: int, sends: int) -> None:
    """`sends` events spread over the senders, each sender sending one at a time."""
    per_sender = sends // len(target.senders)

    async def sender(token: str, room_id: str) -> None:
        async with httpx.AsyncClient(base_url=target.server.url, timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            for i in range(per_sender):
                path = (f"/_matrix/client/v3/rooms/{room_id}/send/m.room.encrypted/"
                        f"r{round_no}t{i}")
                started = time.perf_counter()
                resp = await http.put(path, json=ciphertext(i))
                target.latencies_ms.append((time.perf_counter() - started) * 1000)
                if resp.status_code != 200:
                    raise RuntimeError(f"{target.label}: {resp.status_code} {resp.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(sender(t, r) for t, r in target.senders))
    target.throughput.append(per_sender * len(target.senders)
                             / (time.perf_counter() - started))


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def bench_send(rounds: int, sends: int, senders: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        work = Path(tmp)
        postgres = start_postgres()
        servers: list[SynapseServer] = []
        try:
            started = time.monotonic()
            single_pg = start_synapse(work / "single-pg",
                                      edit=on_postgres(postgres, "single"))
            servers.append(single_pg)
            print(f"one process on PostgreSQL up in {time.monotonic() - started:.1f} s")
            started = time.monotonic()
            single_sqlite = start_synapse(work / "single-sqlite")
            servers.append(single_sqlite)
            print(f"one process on SQLite up in {time.monotonic() - started:.1f} s")
            started = time.monotonic()
            layout = start_synapse_workers(work / "workers", client_workers=2)
            servers.append(layout)
            print(f"worker layout (main, 2 client workers, persister, media, background; "
                  f"PostgreSQL, Redis, nginx) up in {time.monotonic() - started:.1f} s")
            targets = [prepare_send(single_pg, "1 process, PostgreSQL", senders),
                       prepare_send(single_sqlite, "1 process, SQLite", senders),
                       prepare_send(layout, "workers, PostgreSQL", senders)]

            async def measure() -> None:
                for target in targets:  # warm-up
                    await send_round(target, -1, 4 * senders)
                    target.throughput.clear()
                    target.latencies_ms.clear()
                for r in range(rounds):
                    for target in (targets if r % 2 == 0 else list(reversed(targets))):
                        await send_round(target, r, sends)

            asyncio.run(measure())
        finally:
            for server in servers:
                server.stop()
            postgres.stop()

    print()
    print(f"message send (m.room.encrypted, policy modules on), {rounds} alternating rounds "
          f"x {sends} sends, {senders} senders in {senders} rooms")
    print(f"{'server':>24} {'sends/s (median)':>17} {'p50 ms':>8} {'p95 ms':>8}")
    for t in targets:
        print(f"{t.label:>24} {statistics.median(t.throughput):17.1f} "
              f"{percentile(t.latencies_ms, 50):8.1f} {percentile(t.latencies_ms, 95):8.1f}")
    base = statistics.median(targets[0].throughput)
    for t in targets[1:]:
        print(f"ratio {t.label} / {targets[0].label}: "
              f"{statistics.median(t.throughput) / base:.2f}")


# --- sync ---------------------------------------------------------------------------------


@dataclass
class SyncTarget:
    label: str
    server: SynapseServer
    settings: Any
    store: Any
    seconds: float = 0.0
    created: int = 0
    phases: dict[str, float] = field(default_factory=dict)


def prepare_sync(work: Path, label: str, server: SynapseServer, store_url: str,
                 slapd_uri: str, password_file: Path, concurrency: int) -> SyncTarget:
    base = load_settings(server.data_dir)
    doc = {
        "server_name": server.server_name,
        "homeserver": {"url": base.homeserver_url, "config": str(base.homeserver_config)},
        "service_account": {"localpart": base.service_localpart,
                            "token_file": str(base.service_token_file)},
        "store": {"url": store_url},
        "ldap": {"uri": slapd_uri, "base_dn": PEOPLE_DN, "bind_dn": ADMIN_DN,
                 "bind_password_file": str(password_file), "group_mode": "none",
                 "paged_size": 1000},
        "sync": {"concurrency": concurrency},
    }
    cfg = work / label.replace(" ", "-").replace("+", "")
    cfg.mkdir()
    (cfg / "hauspost.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    settings = load_settings(cfg)
    return SyncTarget(label, server, settings, open_store(settings.store_url))


def bench_sync(employees: int, rounds: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-workers-sync-") as tmp:
        work = Path(tmp)
        people = [replace(p, extra={"ou": [f"r{i * rounds // employees}"]})
                  for i, p in enumerate(make_people(employees))]
        slapd = start_slapd(work / "slapd", seed_ldif=people_ldif(people))
        postgres = start_postgres()
        servers: list[SynapseServer] = []
        targets: list[SyncTarget] = []
        try:
            quiet = {"background_updates": {"sleep_enabled": False}}
            servers.append(start_synapse(work / "sqlite", modules=[], extra_config=quiet))
            servers.append(start_synapse(work / "pg", modules=[], extra_config=quiet,
                                         edit=on_postgres(postgres, "synapse")))
            postgres.create_database("hauspost")
            password_file = work / "bind_password"
            password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
            os.chmod(password_file, 0o600)
            targets = [
                prepare_sync(work, "SQLite", servers[0], f"sqlite:///{work / 'hauspost.db'}",
                             slapd.uri, password_file, concurrency),
                prepare_sync(work, "PostgreSQL", servers[1],
                             postgres.url("hauspost", driver="postgresql+psycopg2"),
                             slapd.uri, password_file, concurrency),
            ]
            for k in range(rounds):
                wanted = "".join(f"(ou=r{j})" for j in range(k + 1))
                size = sum(1 for i in range(employees) if i * rounds // employees == k)
                for target in (targets if k % 2 == 0 else list(reversed(targets))):
                    assert target.settings.ldap is not None
                    round_settings = replace(target.settings, ldap=replace(
                        target.settings.ldap,
                        user_filter=f"(&(objectClass=inetOrgPerson)(|{wanted}))"))
                    out = asyncio.run(run_sync(round_settings, target.server.admin_token,
                                               actor="bench", progress=False,
                                               store=target.store))
                    created = out.result.applied.get("create", 0)
                    assert created == size and not out.result.failures, (target.label,
                                                                           out.result)
                    target.seconds += out.seconds
                    target.created += created
                    for phase, value in out.phases.items():
                        target.phases[phase] = target.phases.get(phase, 0.0) + value
                    print(f"round {k + 1}/{rounds} {target.label:>10}: {created} new, "
                          f"{created / out.seconds:6.1f}/s")
        finally:
            for target in targets:
                target.store.close()
            for server in servers:
                server.stop()
            postgres.stop()
            slapd.stop()

    print()
    print(f"initial sync of {employees} employees from slapd in {rounds} paired rounds, "
          f"concurrency {concurrency}")
    for t in targets:
        print(f"{t.label:>10}: {t.created / t.seconds:6.1f} accounts/s, {t.seconds:6.1f} s  ["
              + ", ".join(f"{p} {v:.1f} s" for p, v in t.phases.items()) + "]")
    print(f"ratio PostgreSQL / SQLite: "
          f"{(targets[1].created / targets[1].seconds) / (targets[0].created / targets[0].seconds):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    send = sub.add_parser("send", help="message send throughput: one process vs workers")
    send.add_argument("--rounds", type=int, default=3)
    send.add_argument("--sends", type=int, default=150)
    send.add_argument("--senders", type=int, default=4)
    sync = sub.add_parser("sync", help="initial sync: PostgreSQL vs SQLite")
    sync.add_argument("--employees", type=int, default=10_000)
    sync.add_argument("--rounds", type=int, default=4)
    sync.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.what == "send":
        bench_send(args.rounds, args.sends, args.senders)
    else:
        bench_sync(args.employees, args.rounds, args.concurrency)


if __name__ == "__main__":
    main()
