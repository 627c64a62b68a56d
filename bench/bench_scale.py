"""A company of N end to end: accounts, spaces and rooms of the example policy's shape, each
step against its bare baseline in the same run, on a real slapd and a real Synapse with the
default modules (as `hauspost init` writes them; test-only relaxed rate limits).

Shape (policies/muster-gmbh.yaml): spaces company > departments, locations, projects; an
all-hands room for everyone (mandatory, read-only), one room per department (20), per
location (10) and per `projekt-NN` LDAP group (50, people dealt round-robin). Every
employee is in 4 rooms and, through them, 4 spaces: 8 x N memberships.

1. accounts: the initial sync's account phase (batched path, synapse_modules.accounts_batch)
   against a bare admin-API create loop (`PUT /_synapse/admin/v2/users/…`, the body the
   provisioner sends) of the same N at the same concurrency;
2. rooms: the same sync's room phase, joins/s, against a bare admin-API join loop
   (`POST /_synapse/admin/v1/join/<room>`) of B joins dealt over as many fresh rooms as
   the concurrency (one request in flight per room);
3. no-op re-sync: time and Synapse writes (target 0 writes, <= 5 s at 10,000);
4. 1 % churn (moves, hires, leavers) and one sync: time and writes.

The announcement to all with 1,000 sampled devices is not part of this script (see the
closing note in docs/scale-out.md "Benchmarks"); bench/bench_announce.py measures it.

    .venv/bin/python bench/bench_scale.py [--employees 10000] [--concurrency 8]
        [--baseline-joins 400] [--no-spaces] [--accounts-only]
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_org_rooms import bare_join_loop  # noqa: E402
from bench.bench_sync import bare_create_loop  # noqa: E402
from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import open_store  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from provisioner.sync.run import SyncOutcome, run_sync  # noqa: E402
from tests.harness.ldap_seed import (  # noqa: E402
    SeedPerson,
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

DEPARTMENTS = [f"Abteilung-{i:02d}" for i in range(20)]
LOCATIONS = [f"Standort-{i:02d}" for i in range(10)]
GROUPS = 50

SPACES = """
spaces:
  - key: company
    name: Muster GmbH
  - key: locations
    name: Standorte
    parent: company
  - key: departments
    name: Abteilungen
    parent: company
  - key: projects
    name: Projekte
    parent: company
"""
ROOMS = """
rooms:
  - key: announcements
    name: Ankündigungen
    {space}company
    members: all
    mandatory: true
    read_only: true
  - key: department
    for_each: department
    name: "Abteilung {{value}}"
    {space}departments
    mandatory: true
  - key: location
    for_each: location
    name: "Standort {{value}}"
    {space}locations
  - key: project
    for_each: group
    match: "^projekt-"
    name: "{{value}}"
    {space}projects
"""


def policy(spaces: bool) -> str:
    rooms = ROOMS.format(space="space: " if spaces else "# no space: ")
    return (SPACES if spaces else "") + rooms


def company(n: int) -> tuple[list[SeedPerson], dict[str, list[str]]]:
    people = [replace(p, department=DEPARTMENTS[i % len(DEPARTMENTS)],
                      location=LOCATIONS[(i // 7) % len(LOCATIONS)])
              for i, p in enumerate(make_people(n))]
    groups = {f"projekt-{g:02d}": [p.uid for p in people[g::GROUPS]] for g in range(GROUPS)}
    return people, groups


def line(label: str, outcome: SyncOutcome) -> str:
    rooms = outcome.rooms
    counts = {k: v for k, v in (rooms.plan.counts() if rooms else {}).items() if v}
    failures = len(outcome.result.failures) + (len(rooms.result.failures) if rooms else 0)
    return (f"{label}: {outcome.seconds:.1f} s, {outcome.writes} Synapse writes, accounts "
            f"{dict(outcome.result.applied)}, rooms {counts}, {failures} failures\n  phases: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in outcome.phases.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-joins", type=int, default=400)
    parser.add_argument("--no-spaces", action="store_true",
                        help="rooms only (4 x N memberships instead of 8 x N)")
    parser.add_argument("--accounts-only", action="store_true",
                        help="no room policy: accounts, no-op and churn only")
    args = parser.parse_args()
    n = args.employees
    started = time.monotonic()
    people, groups = company(n)

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        slapd = start_slapd(work / "slapd", seed_ldif=people_ldif(people) + groups_ldif(groups))
        synapse = start_synapse(work / "synapse",
                                extra_config={"background_updates": {"sleep_enabled": False}})
        try:
            password_file = work / "bind_password"
            password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
            os.chmod(password_file, 0o600)
            (work / "policies").mkdir()
            (work / "policies" / "rooms.yaml").write_text(policy(not args.no_spaces),
                                                          encoding="utf-8")
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
                "sync": {"concurrency": args.concurrency,
                         "guard": {"max_count": n, "max_share": 1.0}},
            }
            if not args.accounts_only:
                doc["policies"] = "policies"
            (work / "hauspost.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True),
                                                encoding="utf-8")
            settings = load_settings(work)
            store = open_store(settings.store_url)
            print(f"{n} employees, {len(DEPARTMENTS)} departments, {len(LOCATIONS)} "
                  f"locations, {GROUPS} groups, spaces {'off' if args.no_spaces else 'on'}; "
                  f"concurrency {args.concurrency}; set-up {time.monotonic() - started:.1f} s")

            def sync() -> SyncOutcome:
                return asyncio.run(run_sync(settings, synapse.admin_token, actor="bench",
                                            progress=False, store=store))

            # 1 + 2: the initial sync (accounts, then rooms), then its baselines.
            cpu = time.process_time()
            first = sync()
            cpu = time.process_time() - cpu
            print(line(f"initial sync of {n}", first) + f"\n  client CPU (the provisioner, "
                  f"LDAP client and store included): {cpu:.1f} s = "
                  f"{cpu / first.seconds * 100:.0f} % of the sync's wall time")
            assert not first.result.failures
            assert first.rooms is None or not first.rooms.result.failures
            accounts_s = first.phases["apply"]
            bare_accounts = asyncio.run(bare_create_loop(
                synapse.url, synapse.admin_token, synapse.server_name, n, "bare",
                args.concurrency))
            print(f"accounts: {n} in {accounts_s:.1f} s = {n / accounts_s:.1f}/s (batched) vs "
                  f"bare admin-API create loop {bare_accounts:.1f} s = "
                  f"{n / bare_accounts:.1f}/s: ratio {bare_accounts / accounts_s:.2f} "
                  f"(> 1: faster than the loop)")
            if first.rooms is not None:
                joins = first.rooms.plan.counts()["add_member"]
                rooms_s = first.phases["rooms"]
                baseline_users = [synapse.mxid(f"bare{i:05d}")
                                  for i in range(min(args.baseline_joins, n))]
                bare_joins = asyncio.run(bare_join_loop(synapse.url, synapse.admin_token,
                                                        baseline_users, args.concurrency))
                join_rate, bare_rate = joins / rooms_s, len(baseline_users) / bare_joins
                print(f"rooms: {joins} memberships in {rooms_s:.1f} s = {join_rate:.1f} "
                      f"joins/s vs bare admin-API join loop {len(baseline_users)} in "
                      f"{bare_joins:.1f} s = {bare_rate:.1f}/s: ratio "
                      f"{join_rate / bare_rate:.2f}")

            # 3: no-op.
            again = sync()
            with store.session() as session:
                audit_rows = len(repo.query_audit(session, repo.AuditQuery(run_id=again.run_id)))
            print(line("no-op re-sync", again) + f"\n  {audit_rows} audit rows "
                  f"(target: 0 writes, <= 5 s at 10,000)")

            # 4: 1 % churn.
            churn = max(4, n // 100)
            movers, leavers = people[: churn // 2], people[-(churn // 4):]
            hires = make_people(churn - len(movers) - len(leavers), prefix="hire", start=n)
            conn = slapd.connection()
            try:
                for i, p in enumerate(movers):
                    if i % 2 == 0:
                        new = DEPARTMENTS[(DEPARTMENTS.index(p.department or "") + 1)
                                          % len(DEPARTMENTS)]
                        modify_person(conn, p.uid, {"departmentNumber": [new]}, PEOPLE_DN)
                    else:
                        modify_person(conn, p.uid, {"l": [LOCATIONS[-1]]}, PEOPLE_DN)
                for p in leavers:
                    delete_person(conn, p.uid, PEOPLE_DN)
                add_people(conn, [replace(h, department=DEPARTMENTS[0], location=LOCATIONS[0])
                                  for h in hires], PEOPLE_DN)
            finally:
                conn.unbind()
            churned = sync()
            print(line(f"1 % churn ({len(movers)} moves, {len(hires)} hires, {len(leavers)} "
                       "leavers)", churned))
            final = sync()
            print(f"re-sync after churn: {final.seconds:.1f} s, {final.writes} writes "
                  "(target 0)")
            store.close()
        finally:
            synapse.stop()
            slapd.stop()
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    main()
