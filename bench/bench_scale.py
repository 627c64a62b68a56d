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
4. 1 % churn (moves, hires, leavers) and one sync: time and writes;
5. one announcement to all (`announce()` into the policy's all-hands room, as
   `hauspost announce --to all` does) after `--sample` employees (default 1,000) logged in
   with their LDAP password and uploaded device keys (20 of them full matrix-nio clients,
   the rest bare vodozemac keys): time until `announce()` returned, how many of the sampled
   devices hold the bot's room key in their to-device inbox (read from Synapse's
   `device_inbox`: they can decrypt), and when the last live client decrypted it. Baseline
   in the same run: the same for an announcement to one department (its room).

    .venv/bin/python bench/bench_scale.py [--employees 10000] [--concurrency 8]
        [--baseline-joins 400] [--no-spaces] [--accounts-only] [--sample 1000] [--postgres]

`--postgres` runs Synapse and the provisioner's store on PostgreSQL (a private `postgres`
on loopback, tests/harness/postgres_server.py, with PostgreSQL's own crash-safe defaults:
fsync and synchronous commit on), as docs/scale-out.md recommends for a company of
thousands; the baselines then run against the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_announce import (  # noqa: E402
    decrypted,
    device_client,
    inbox_devices,
    login_devices,
    max_inbox_stream,
)
from bench.bench_org_rooms import bare_join_loop  # noqa: E402
from bench.bench_sync import bare_create_loop  # noqa: E402
from bench.bench_workers import on_postgres  # noqa: E402
from provisioner.announcements.bot import open_bot  # noqa: E402
from provisioner.announcements.compose import validate_request  # noqa: E402
from provisioner.announcements.config import AnnouncementConfig  # noqa: E402
from provisioner.announcements.org_rooms import org_rooms  # noqa: E402
from provisioner.announcements.send import announce, load_people  # noqa: E402
from provisioner.announcements.targets import Target  # noqa: E402
from provisioner.settings import LdapSettings, Settings, load_settings  # noqa: E402
from provisioner.store import Store, open_store  # noqa: E402
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
from tests.harness.postgres_server import PostgresServer, start_postgres  # noqa: E402
from tests.harness.slapd_server import (  # noqa: E402
    ADMIN_DN,
    ADMIN_PASSWORD,
    GROUPS_DN,
    PEOPLE_DN,
    start_slapd,
)
from tests.harness.synapse_server import SynapseServer, start_synapse  # noqa: E402

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


#: Sampled devices that are full matrix-nio clients (the rest are bare vodozemac keys).
LIVE = 20


async def announce_to_all(synapse: SynapseServer, settings: Settings, store: Store,
                          people: list[SeedPerson], sample: int, stores: Path) -> list[str]:
    """Step 5: devices for the first `sample` of `people` (as the directory has them now),
    then an announcement to one department (baseline) and one to all; the printed lines."""
    user_ids = [synapse.mxid(p.uid) for p in people[:sample]]
    t = time.perf_counter()
    devices = await login_devices(synapse, user_ids, stores, live=min(LIVE, sample))
    lines = [f"announcement set-up: {sample} LDAP logins with key upload "
             f"{time.perf_counter() - t:.1f} s"]
    clients = []
    for user_id, device_id, token in devices[:LIVE]:
        client = device_client(synapse, user_id, stores)
        client.restore_login(user_id, device_id, token)
        await client.sync(timeout=0, full_state=True)
        clients.append(client)
    # The bot's first start (account, login, key upload) is set-up, not part of a send.
    await (await open_bot(settings, AnnouncementConfig(), synapse.admin_token)).close()
    first = {synapse.mxid(p.uid) for p in people[:sample] if p.department == DEPARTMENTS[0]}
    cases = [(f"department {DEPARTMENTS[0]} (baseline)", Target("department", DEPARTMENTS[0]),
              first), ("all", Target("all"), set(user_ids))]
    try:
        for label, target, sampled in cases:
            rooms = org_rooms(settings, store)
            assert rooms is not None, "the bench's policy has org rooms"  # noqa: S101
            now = datetime.now(UTC)
            request = validate_request(f"# Bench {label}\n\nBitte lesen.", None, now)
            before = max_inbox_stream(synapse)
            start = time.perf_counter()
            result = await announce(settings, AnnouncementConfig(), store,
                                    admin_token=synapse.admin_token, targets=[target],
                                    people=load_people(settings, store), request=request,
                                    rooms=rooms, actor="bench", now=now)
            send = time.perf_counter() - start
            holders = inbox_devices(synapse, "", before)
            (room_id,) = result.rooms
            live = [c for c in clients if c.user_id in sampled]
            times = await asyncio.gather(*(decrypted(c, room_id, result.event_ids[0], start)
                                           for c in live))
            lines.append(
                f"announcement to {label}: {result.recipients} recipients; announce() "
                f"returned {send:.1f} s; sampled devices holding the room key {holders} of "
                f"{len(sampled)}; last of {len(live)} live clients decrypted "
                f"{max(times):.1f} s")
    finally:
        for client in clients:
            await client.close()
    return lines


def main() -> None:
    # matrix-nio warns once per sampled device it holds no Olm session with yet (a
    # thousand lines before the figures); the figures say whether the keys arrived.
    logging.getLogger("nio").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-joins", type=int, default=400)
    parser.add_argument("--no-spaces", action="store_true",
                        help="rooms only (4 x N memberships instead of 8 x N)")
    parser.add_argument("--sample", type=int, default=1000,
                        help="employees with a device for the announcement (0: skip it)")
    parser.add_argument("--accounts-only", action="store_true",
                        help="no room policy: accounts, no-op and churn only")
    parser.add_argument("--postgres", action="store_true",
                        help="Synapse and the store on PostgreSQL instead of SQLite")
    args = parser.parse_args()
    n = args.employees
    started = time.monotonic()
    people, groups = company(n)

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        slapd = start_slapd(work / "slapd", seed_ldif=people_ldif(people) + groups_ldif(groups))
        password_file = work / "bind_password"
        password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
        os.chmod(password_file, 0o600)
        postgres: PostgresServer | None = (start_postgres(crash_safe=True) if args.postgres
                                           else None)
        store_url = f"sqlite:///{work / 'hauspost.db'}"
        if postgres is not None:
            postgres.create_database("hauspost")
            store_url = postgres.url("hauspost", driver="postgresql+psycopg2")
        # Employees log in with their directory password, as in production (step 5).
        synapse = start_synapse(work / "synapse", ldap=LdapSettings(
            uri=slapd.uri, base_dn=PEOPLE_DN, bind_dn=ADMIN_DN, bind_password_file=password_file),
            extra_config={"background_updates": {"sleep_enabled": False}},
            edit=on_postgres(postgres, "synapse") if postgres is not None else None)
        try:
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
                "store": {"url": store_url},
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
                  f"concurrency {args.concurrency}; "
                  f"{'PostgreSQL' if postgres is not None else 'SQLite'}; "
                  f"set-up {time.monotonic() - started:.1f} s")

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

            # 5: one announcement to all (not with --accounts-only: no all-hands room).
            if args.sample and not args.accounts_only:
                for text in asyncio.run(announce_to_all(
                        synapse, settings, store, people[len(movers):],
                        min(args.sample, n - len(movers) - len(leavers)), work / "devices")):
                    print(text)
            store.close()
        finally:
            synapse.stop()
            slapd.stop()
            if postgres is not None:
                postgres.stop()
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    main()
