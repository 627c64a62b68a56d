"""Initial sync of 10,000 employees from slapd, and a no-op re-sync, against a real Synapse.

One slapd is loaded offline (slapadd) with N inetOrgPerson employees; one Synapse (SQLite,
as `hauspost init` writes it) runs with test rate limits. In the same run:

- baseline (before): a bare admin-API create loop (`PUT /_synapse/admin/v2/users/…` with
  the same body the provisioner sends) at the same concurrency, for B accounts;
- sync:  `run_sync` end to end (LDAP read, account listing, plan, apply with audit rows in
  the SQLite store) creating N accounts;
- baseline (after): the bare loop again for B accounts (the database has grown; the mean of
  before and after is the baseline rate);
- re-sync: `run_sync` again: must plan nothing and make 0 admin-API writes.

    .venv/bin/python bench/bench_sync.py [--employees 10000] [--baseline 2000] [--concurrency 8]

Bounded: N + 2*B account creations at Synapse's pace (60-200/s here, depending on what
else runs on the machine): 2-5 min for the defaults. The machine is shared, so the rate of
the bare loop before and after is printed too: when they differ a lot, rerun.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import open_store  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from provisioner.sync_run import run_sync  # noqa: E402
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
    parser.add_argument("--baseline", type=int, default=4_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        slapd = start_slapd(work / "slapd", seed_ldif=people_ldif(make_people(args.employees)))
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

            cpu0 = time.process_time()
            before = asyncio.run(bare_create_loop(
                synapse.url, synapse.admin_token, synapse.server_name, args.baseline,
                "basea", args.concurrency))
            print(f"baseline before: {args.baseline} bare creates in {before:.1f} s = "
                  f"{args.baseline / before:.1f}/s")

            cpu_base = time.process_time() - cpu0
            cpu0 = time.process_time()
            first = asyncio.run(run_sync(settings, synapse.admin_token, actor="bench",
                                         progress=False, store=store))
            cpu_sync = time.process_time() - cpu0
            created = first.result.applied.get("create", 0)
            assert created == args.employees, first.result
            assert not first.result.failures
            print(f"initial sync: {created} accounts in {first.seconds:.1f} s = "
                  f"{created / first.seconds:.1f}/s ({first.writes} admin-API writes)")
            print("  phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in first.phases.items()))
            print(f"  client CPU per account: sync {cpu_sync / created * 1000:.2f} ms, "
                  f"bare loop {cpu_base / args.baseline * 1000:.2f} ms")

            after = asyncio.run(bare_create_loop(
                synapse.url, synapse.admin_token, synapse.server_name, args.baseline,
                "baseb", args.concurrency))
            print(f"baseline after:  {args.baseline} bare creates in {after:.1f} s = "
                  f"{args.baseline / after:.1f}/s")

            again = asyncio.run(run_sync(settings, synapse.admin_token, actor="bench",
                                         progress=False, store=store))
            with store.session() as session:
                audit_rows = len(repo.query_audit(session, repo.AuditQuery(run_id=again.run_id)))
            store.close()

            baseline_rate = (args.baseline / before + args.baseline / after) / 2
            sync_rate = created / first.seconds
            print()
            print(f"initial sync throughput: {sync_rate:.1f}/s vs bare loop "
                  f"{baseline_rate:.1f}/s at concurrency {args.concurrency}: "
                  f"ratio {sync_rate / baseline_rate:.2f} (target >= 0.9)")
            print("  re-sync phases: " + ", ".join(f"{k} {v:.2f} s"
                                                for k, v in again.phases.items()))
            print(f"no-op re-sync of {args.employees}: {again.seconds:.2f} s, "
                  f"{len(again.plan.actions)} actions, {again.writes} admin-API writes, "
                  f"{audit_rows} audit rows (target: 0 writes, <= 5 s)")
        finally:
            synapse.stop()
            slapd.stop()


if __name__ == "__main__":
    main()
