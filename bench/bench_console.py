"""Console page render times for a company of 10,000 employees.

The store holds 10,000 employees with accounts (names from a German company: umlauts,
Turkish, Polish, Greek and Chinese names), 20 departments, 10 locations, 50 project groups;
a stored access review of an all-hands room (10,000 members), the department, location and
group rooms and 3,000 rooms employees made themselves; an announcement to all 10,000 with
6,200 acknowledgements. The console runs in-process on loopback behind its real aiohttp
application (sessions, CSRF, roles, templates); the client is httpx, one request at a time.

Printed per page: the first request (cold: templates compiled, the people index and the
reach report built), then p50, p95 and max in ms over the following requests, and p95 as a
multiple of the baseline measured in the same run (the console's static style sheet: the
HTTP floor). Between requests nothing changes, so the people index and the report cache
stay warm, as they do between a person's clicks.
Target (issue 12): people search and access review p95 under 300 ms.

    .venv/bin/python bench/bench_console.py [--employees 10000] [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import yaml
from aiohttp import web
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.console.app import add_console  # noqa: E402
from provisioner.console.web import COOKIE  # noqa: E402
from provisioner.employee import Employee  # noqa: E402
from provisioner.homeserver.synapse_process import free_port  # noqa: E402
from provisioner.review.collect import AccessReview, RoomReview, store_review  # noqa: E402
from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import Store, open_store  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from provisioner.store.announcement_models import AnnouncementRow, RecipientRow  # noqa: E402
from provisioner.store.models import AccountRow  # noqa: E402

FIRST = ["Jürgen", "Anna", "Mehmet", "Zoë", "Łukasz", "Sophie", "Dimitris", "李", "Ayşe",
         "Björn", "Fatma", "Krzysztof", "Ingrid", "Ömer", "Chloé", "Nikolaos", "Małgorzata",
         "Hans-Peter", "Ana", "明"]
LAST = ["Müller", "Schäfer", "Yılmaz", "Ørsted", "Nowak", "Weiß", "Papadopoulos", "王",
        "Öztürk", "Groß", "Kowalski", "Lindqvist", "Sánchez", "Hoffmann", "Çelik", "Braun",
        "Zielińska", "Krüger", "Wagner", "陈"]
SERVER = "bench.test"


def employees(n: int) -> list[Employee]:
    rng = random.Random(12)
    out = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        groups = {f"projekt-{rng.randrange(50):02d}" for _ in range(rng.randrange(0, 3))}
        if i == 0:
            groups |= {"personal", "datenschutz", "kommunikation", "it-admins"}
        out.append(Employee(employee_id=f"E{i:05d}", localpart=f"user{i:05d}",
                            display_name=f"{first} {last}", email=f"user{i:05d}@{SERVER}",
                            department=f"Abteilung {i % 20:02d}", location=f"Standort {i % 10}",
                            groups=frozenset(groups)))
    return out


def populate(store: Store, people: list[Employee]) -> None:
    now = datetime.now(UTC)
    with store.session() as session:
        repo.save_employees(session, people, source="bench", now=now)
        session.execute(insert(AccountRow), [
            {"user_id": f"@{e.localpart}:{SERVER}", "employee_id": e.employee_id,
             "created_at": now, "display_name": e.display_name, "email": e.email,
             "active": i % 97 != 5, "hold": i % 97 == 5}
            for i, e in enumerate(people)])
        ann = AnnouncementRow(created_at=now - timedelta(days=1), actor="bench", sender="@bot:x",
                              target={"targets": ["all"]}, title="Betriebsversammlung",
                              requires_ack=True, deadline=now + timedelta(days=1),
                              status="sent", recipients_total=len(people),
                              delivered_total=len(people), devices_total=len(people))
        session.add(ann)
        session.flush()
        session.execute(insert(RecipientRow), [
            {"announcement_id": ann.id, "user_id": f"@{e.localpart}:{SERVER}",
             "employee_id": e.employee_id, "display_name": e.display_name,
             "department": e.department, "devices": 1 + i % 3,
             "seen_at": now - timedelta(hours=20) if i % 10 < 8 else None,
             "acked_at": now - timedelta(minutes=i % 1200) if i % 50 < 31 else None,
             "ack_via": "reaction" if i % 50 < 31 else None}
            for i, e in enumerate(people)])
    users = [f"@{e.localpart}:{SERVER}" for e in people]
    rng = random.Random(7)

    def room(key: str, members: list[str]) -> RoomReview:
        chosen = tuple(sorted(rng.sample(users, 3)))
        return RoomReview(room_id=f"!{key.replace('/', '-')}:{SERVER}", kind="room", key=key,
                          name=key, rule=key, joined=len(members) + 3,
                          mandatory=tuple(members), chosen=chosen, missing=())

    managed = [room("all-hands", users)]
    managed += [room(f"department/{d:02d}", users[d::20]) for d in range(20)]
    managed += [room(f"location/{loc}", users[loc::10]) for loc in range(10)]
    managed += [room(f"project/{g:02d}", users[g::500]) for g in range(50)]
    unmanaged = tuple(RoomReview(room_id=f"!dm{i}:{SERVER}", kind="room", key=None, name=None,
                                 rule=None, joined=2 + i % 5) for i in range(3000))
    store_review(store, AccessReview(
        at=datetime.now(UTC), actor="bench", managed=tuple(managed), unmanaged=unmanaged,
        unexplained=(f"@old-admin:{SERVER}",), admins=(f"@hauspost:{SERVER}",),
        protected=(f"@hauspost:{SERVER}",), accounts_active=len(users),
        accounts_deactivated=0, names={u: e.display_name for u, e in zip(users, people,
                                                                          strict=True)}))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(n: int, requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        data = Path(tmp)
        (data / "hauspost.yaml").write_text(yaml.safe_dump({
            "server_name": SERVER, "homeserver": {"url": "http://127.0.0.1:9"},
            "store": {"url": f"sqlite:///{data / 'hauspost.db'}"},
            "console": {"roles": {"hr": ["personal"], "auditor": ["datenschutz"],
                                  "comms": ["kommunikation"], "it": ["it-admins"]}}}),
            encoding="utf-8")
        settings = load_settings(data)
        store = open_store(settings.store_url)
        people = employees(n)
        t0 = time.perf_counter()
        populate(store, people)
        print(f"store: {n} employees, accounts, review, one announcement to all in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        assert settings.console is not None
        app = web.Application()
        console = add_console(app, settings, store, settings.console,
                              time_zone=ZoneInfo("Europe/Berlin"), on_queued=lambda: None)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        session = console.sessions.sign_in(
            console.sessions.anonymous(), user_id=f"@user00000:{SERVER}", employee_id="E00000",
            display_name=people[0].display_name,
            roles=frozenset({"hr", "auditor", "comms", "it"}))
        held = next(e for i, e in enumerate(people) if i % 97 == 5)
        pages = [("baseline: static style sheet", "/console/static/console.css"),
                 ("people: search 'müller'", "/console/people?q=m%C3%BCller"),
                 ("people: search 'an' (thousands match)", "/console/people?q=an"),
                 ("people: no query (first 50 of all)", "/console/people"),
                 ("people: search by employee id", "/console/people?q=E09876"),
                 ("person page (offboarded, held)", f"/console/people/{held.employee_id}"),
                 ("access review", "/console/review"),
                 (f"reach: announcement to {n:,}", "/console/announcements/1")]
        results: dict[str, list[float]] = {}
        cold: dict[str, float] = {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     cookies={COOKIE: session.sid}, timeout=60) as client:
            for label, path in pages:
                times = []
                for i in range(requests + 3):
                    started = time.perf_counter()
                    response = await client.get(path)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
                    if i == 0:
                        cold[label] = elapsed
                    if i >= 3:  # warm-up: template compilation, caches
                        times.append(elapsed)
                results[label] = times
        await runner.cleanup()
        store.close()
    base = pct(results[pages[0][0]], 0.95)
    print(f"Console render, {n} employees, {requests} requests per page (after 3 warm-up)")
    print(f"{'page':42} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
          f"{'p95/base':>9}")
    for label, times in results.items():
        p95 = pct(times, 0.95)
        print(f"{label:42} {cold[label]:9.1f} {statistics.median(times):8.1f} {p95:8.1f} "
              f"{max(times):8.1f} {p95 / base:9.1f}")
    worst = max(pct(t, 0.95) for label, t in results.items() if not label.startswith("base"))
    print(f"worst p95 {worst:.1f} ms — target under 300 ms: {'met' if worst < 300 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(measure(args.employees, args.requests))


if __name__ == "__main__":
    main()
