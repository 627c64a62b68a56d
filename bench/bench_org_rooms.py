"""Org-chart rooms: 2,000 employees over 50 rooms, against a real slapd and a real Synapse
with our modules.

slapd is loaded offline (slapadd) with N employees (6 departments, 4 locations) and 39
`projekt-NN` groups (people dealt round-robin). The policy gives 50 rooms: a mandatory,
read-only announcements room for everyone, one room per department, per location and per
project group, so every employee is in 4 rooms (4 x N memberships). In the same run:

- initial sync: accounts, then rooms (creates, force joins), with its phase timings;
- baseline: a bare admin-API join loop (`POST /_synapse/admin/v1/join/<room>`, what the
  provisioner sends per membership) of B joins dealt over as many fresh rooms as the
  concurrency; the initial sync's join rate is compared with it;
- no-op re-sync: must plan nothing and make 0 writes; compared with an accounts-only
  no-op re-sync (the same run without `policies:`), so the cost of the room part shows;
- 1 % churn: N/100 employees change (department moves, location moves, hires, leavers),
  then one sync.

    .venv/bin/python bench/bench_org_rooms.py [--employees 2000] [--baseline 400]

Bounded by Synapse's join pace on SQLite (about 4 x N + B joins): several minutes for
the defaults on a shared two-core machine.
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
from urllib.parse import quote

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import open_store  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from provisioner.sync.run import SyncOutcome, run_sync  # noqa: E402
from tests.harness.ldap_seed import (  # noqa: E402
    DEPARTMENTS,
    add_people,
    delete_person,
    groups_ldif,
    make_people,
    modify_person,
    people_ldif,
)
from tests.harness.slapd_server import (  # noqa: E402
    ADMIN_DN,
    ADMIN_PASSWORD,
    GROUPS_DN,
    PEOPLE_DN,
    start_slapd,
)
from tests.harness.synapse_server import start_synapse  # noqa: E402

PROJECTS = 39
POLICY = """
rooms:
  - key: announcements
    name: Ankündigungen
    mandatory: true
    read_only: true
  - key: department
    for_each: department
    name: "Abteilung {value}"
    mandatory: true
  - key: location
    for_each: location
    name: "Standort {value}"
  - key: project
    for_each: group
    match: "^projekt-"
    name: "{value}"
"""


async def bare_join_loop(url: str, token: str, users: list[str], concurrency: int) -> float:
    """Seconds for admin-API joins of `users`, dealt round-robin over `concurrency` fresh
    invite-only rooms (one request in flight per room, as the sync interleaves rooms)."""
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        rooms = []
        for i in range(concurrency):
            resp = await http.post("/_matrix/client/v3/createRoom",
                                   json={"preset": "private_chat", "name": f"baseline {i}"})
            resp.raise_for_status()
            rooms.append(quote(resp.json()["room_id"], safe=""))

        async def one(index: int, user_id: str) -> None:
            async with semaphore:
                r = await http.post(f"/_synapse/admin/v1/join/{rooms[index % len(rooms)]}",
                                    json={"user_id": user_id})
                r.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))
        return time.monotonic() - started


def report(label: str, outcome: SyncOutcome) -> None:
    rooms = outcome.rooms
    counts = {k: v for k, v in (rooms.plan.counts() if rooms else {}).items() if v}
    failures = len(outcome.result.failures) + (len(rooms.result.failures) if rooms else 0)
    print(f"{label}: {outcome.seconds:.1f} s, {outcome.writes} writes, accounts "
          f"{dict(outcome.result.applied)}, rooms {counts}, {failures} failures")
    print("  phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in outcome.phases.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--employees", type=int, default=2_000)
    parser.add_argument("--baseline", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    n = args.employees
    people = make_people(n)
    groups = {f"projekt-{g:02d}": [p.uid for p in people[g::PROJECTS]] for g in range(PROJECTS)}

    with tempfile.TemporaryDirectory(prefix="bench-rooms-") as tmp:
        work = Path(tmp)
        slapd = start_slapd(work / "slapd", seed_ldif=people_ldif(people) + groups_ldif(groups))
        synapse = start_synapse(work / "synapse",
                                extra_config={"background_updates": {"sleep_enabled": False}})
        try:
            password_file = work / "bind_password"
            password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
            os.chmod(password_file, 0o600)
            (work / "policies").mkdir()
            (work / "policies" / "rooms.yaml").write_text(POLICY, encoding="utf-8")
            base = load_settings(synapse.data_dir)
            doc = {
                "server_name": synapse.server_name,
                "homeserver": {"url": base.homeserver_url,
                               "config": str(base.homeserver_config)},
                "service_account": {"localpart": base.service_localpart,
                                    "token_file": str(base.service_token_file)},
                "store": {"url": f"sqlite:///{work / 'hauspost.db'}"},
                "ldap": {"uri": slapd.uri, "base_dn": PEOPLE_DN, "bind_dn": ADMIN_DN,
                         "bind_password_file": str(password_file),
                         "group_mode": "group_of_names", "groups_base_dn": GROUPS_DN,
                         "paged_size": 1000},
                "sync": {"concurrency": args.concurrency},
                "policies": "policies",
            }
            (work / "hauspost.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True),
                                                encoding="utf-8")
            settings = load_settings(work)
            store = open_store(settings.store_url)

            def sync(use_settings: object = settings) -> SyncOutcome:
                return asyncio.run(run_sync(use_settings,  # type: ignore[arg-type]
                                            synapse.admin_token, actor="bench",
                                            progress=False, store=store))

            first = sync()
            report(f"initial sync of {n} employees", first)
            assert first.rooms is not None and not first.rooms.result.failures
            joins = first.rooms.plan.counts()["add_member"]
            rooms = first.rooms.plan.counts()["create_room"]
            room_seconds = first.phases["rooms"]
            print(f"  {rooms} rooms, {joins} memberships: room phase {room_seconds:.1f} s = "
                  f"{joins / room_seconds:.1f} joins/s")

            baseline_users = [synapse.mxid(p.uid) for p in people[:args.baseline]]
            bare = asyncio.run(bare_join_loop(synapse.url, synapse.admin_token,
                                              baseline_users, args.concurrency))
            bare_rate = len(baseline_users) / bare
            print(f"baseline: {len(baseline_users)} bare admin-API joins in "
                  f"{bare:.1f} s = {bare_rate:.1f}/s; sync joins/s vs baseline: "
                  f"{joins / room_seconds / bare_rate:.2f}")

            again = sync()
            with store.session() as session:
                audit_rows = len(repo.query_audit(session, repo.AuditQuery(run_id=again.run_id)))
            report("no-op re-sync", again)
            accounts_only = sync(replace(settings, policies=None))
            report("no-op re-sync, accounts only (baseline)", accounts_only)
            print(f"  no-op re-sync: {again.writes} writes, {audit_rows} audit rows "
                  f"(target 0); {again.seconds:.2f} s vs {accounts_only.seconds:.2f} s "
                  f"accounts-only: ratio {again.seconds / accounts_only.seconds:.2f}")

            churn = max(4, n // 100)
            movers, leavers = people[: churn // 2], people[-(churn // 4):]
            hires = churn - len(movers) - len(leavers)
            conn = slapd.connection()
            try:
                for i, p in enumerate(movers):
                    if i % 2 == 0:
                        new = DEPARTMENTS[(DEPARTMENTS.index(p.department or "Sales") + 1)
                                          % len(DEPARTMENTS)]
                        modify_person(conn, p.uid, {"departmentNumber": [new]}, PEOPLE_DN)
                    else:
                        modify_person(conn, p.uid, {"l": ["Köln"]}, PEOPLE_DN)
                for p in leavers:
                    delete_person(conn, p.uid, PEOPLE_DN)
                add_people(conn, make_people(hires, prefix="hire", start=n), PEOPLE_DN)
            finally:
                conn.unbind()
            print(f"churn: {len(movers)} moves, {hires} hires, {len(leavers)} leavers "
                  f"({churn} = 1 % of {n})")
            churned = sync()
            report("1 % churn sync", churned)
            final = sync()
            print(f"re-sync after churn: {final.writes} writes (target 0)")
            store.close()
        finally:
            synapse.stop()
            slapd.stop()


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    main()
