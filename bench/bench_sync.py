"""Initial sync of 10,000 employees from slapd, and a no-op re-sync, against a real Synapse.

One slapd is loaded offline (slapadd) with N inetOrgPerson employees; one Synapse (SQLite,
as `hauspost init` writes it) runs with test rate limits. The machine is shared, so the
sync and its baseline run in R paired rounds, in alternating order:

- bare loop: `PUT /_synapse/admin/v2/users/…` with the body the provisioner sends, at the
  same concurrency, for N/R accounts, nothing else;
- sync: `run_sync` end to end (LDAP read, account listing, plan, apply with audit rows in
  the SQLite store); round k's directory holds the people of rounds 0..k (an LDAP filter
  on their `ou`), so each round creates the next N/R accounts and the last reads all N.
  `--rounds 1` is a single initial sync of all N.

Then a re-sync of all N must plan nothing and make 0 admin-API writes.

    .venv/bin/python bench/bench_sync.py [--employees 10000] [--rounds 5] [--concurrency 8]

Bounded: 2 x N account creations at Synapse's pace (60-200/s here, depending on what else
runs on the machine): 2-6 min for the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import open_store  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from provisioner.sync.run import run_sync  # noqa: E402
from tests.harness.ldap_seed import make_people, people_ldif  # noqa: E402
from tests.harness.slapd_server import (  # noqa: E402
    ADMIN_DN,
    ADMIN_PASSWORD,
    PEOPLE_DN,
    start_slapd,
)
from tests.harness.synapse_server import start_synapse  # noqa: E402


async def bare_create_loop(url: str, token: str, server_name: str, count: int, prefix: str,
                           concurrency: int) -> float:
    """Seconds for `count` admin-API creates at `concurrency`, nothing else."""
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"},
                                 limits=httpx.Limits(max_connections=32)) as http:
        async def one(i: int) -> None:
            user_id = f"@{prefix}{i:05d}:{server_name}"
            body: dict[str, Any] = {"displayname": f"Baseline {i:05d}", "admin": False,
                                    "threepids": [{"medium": "email",
                                                   "address": f"{prefix}{i:05d}@{server_name}"}]}
            async with semaphore:
                resp = await http.put(f"/_synapse/admin/v2/users/{quote(user_id, safe='')}",
                                      json=body)
                resp.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5,
                        help="paired rounds of bare loop and sync (1: one sync of all N)")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        people = [replace(p, extra={"ou": [f"r{i * args.rounds // args.employees}"]})
                  for i, p in enumerate(make_people(args.employees))]
        slapd = start_slapd(work / "slapd", seed_ldif=people_ldif(people))
        print(f"slapd with {args.employees} employees ready in "
              f"{time.monotonic() - started:.1f} s (slapadd)")
        synapse = start_synapse(work / "synapse", modules=[],
                                extra_config={"background_updates": {"sleep_enabled": False}})
        try:
            password_file = work / "bind_password"
            password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
            os.chmod(password_file, 0o600)
            base = load_settings(synapse.data_dir)
            doc = {
                "server_name": synapse.server_name,
                "homeserver": {"url": base.homeserver_url,
                               "config": str(base.homeserver_config)},
                "service_account": {"localpart": base.service_localpart,
                                    "token_file": str(base.service_token_file)},
                "store": {"url": f"sqlite:///{work / 'hauspost.db'}"},
                "ldap": {"uri": slapd.uri, "base_dn": PEOPLE_DN, "bind_dn": ADMIN_DN,
                         "bind_password_file": str(password_file), "group_mode": "none",
                         "paged_size": 1000},
                "sync": {"concurrency": args.concurrency},
            }
            (work / "hauspost.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
            settings = load_settings(work)
            store = open_store(settings.store_url)

            # Round k syncs the people of rounds 0..k (an LDAP filter on their `ou`), so
            # each round creates the next slice and the last one sees all N employees.
            bare_s = sync_s = 0.0
            bare_n = sync_n = 0
            bare_cpu = sync_cpu = 0.0
            last = None
            for k in range(args.rounds):
                wanted = "".join(f"(ou=r{j})" for j in range(k + 1))
                assert settings.ldap is not None
                round_settings = replace(settings, ldap=replace(
                    settings.ldap, user_filter=f"(&(objectClass=inetOrgPerson)(|{wanted}))"))
                size = sum(1 for i in range(args.employees)
                           if i * args.rounds // args.employees == k)

                def bare(k: int = k, size: int = size) -> tuple[float, float]:
                    c0 = time.process_time()
                    t = asyncio.run(bare_create_loop(
                        synapse.url, synapse.admin_token, synapse.server_name, size,
                        f"base{k}x", args.concurrency))
                    return t, time.process_time() - c0

                def sync(rs: Any = round_settings) -> tuple[Any, float]:
                    c0 = time.process_time()
                    out = asyncio.run(run_sync(rs, synapse.admin_token, actor="bench",
                                               progress=False, store=store))
                    return out, time.process_time() - c0

                # Alternate the order so a trend in machine load hits both alike.
                if k % 2 == 0:
                    (bt, bc), (out, sc) = bare(), sync()
                else:
                    (out, sc), (bt, bc) = sync(), bare()
                created = out.result.applied.get("create", 0)
                assert created == size and not out.result.failures, out.result
                bare_s, bare_n, bare_cpu = bare_s + bt, bare_n + size, bare_cpu + bc
                sync_s, sync_n, sync_cpu = sync_s + out.seconds, sync_n + created, sync_cpu + sc
                last = round_settings
                print(f"round {k + 1}/{args.rounds}: bare loop {size / bt:6.1f}/s, sync of "
                      f"{created} new (directory of {len(out.plan.actions) and sync_n}) "
                      f"{created / out.seconds:6.1f}/s  [" + ", ".join(
                          f"{p} {v:.2f} s" for p, v in out.phases.items()) + "]")

            assert last is not None
            again = asyncio.run(run_sync(last, synapse.admin_token, actor="bench",
                                         progress=False, store=store))
            with store.session() as session:
                audit_rows = len(repo.query_audit(session, repo.AuditQuery(run_id=again.run_id)))
            store.close()

            sync_rate, bare_rate = sync_n / sync_s, bare_n / bare_s
            print()
            print(f"initial sync of {sync_n} employees in {args.rounds} round(s): "
                  f"{sync_rate:.1f}/s vs bare admin-API create loop {bare_rate:.1f}/s "
                  f"(same concurrency {args.concurrency}, same run): ratio "
                  f"{sync_rate / bare_rate:.2f} (target >= 0.9)")
            print(f"client CPU per account: sync {sync_cpu / sync_n * 1000:.2f} ms, "
                  f"bare loop {bare_cpu / bare_n * 1000:.2f} ms")
            print(f"no-op re-sync of {args.employees}: {again.seconds:.2f} s, "
                  f"{len(again.plan.actions)} actions, {again.writes} admin-API writes, "
                  f"{audit_rows} audit rows (target: 0 writes, <= 5 s)  [" + ", ".join(
                      f"{p} {v:.2f} s" for p, v in again.phases.items()) + "]")
        finally:
            synapse.stop()
            slapd.stop()


if __name__ == "__main__":
    main()
