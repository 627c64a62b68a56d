"""Faults at chosen and seeded-random points, and the invariants that must hold afterwards.

One iteration: a directory of employees in an OU of its own with a store of its own, a
first complete sync, then a change (new hires, renames, leavers) whose `hauspost sync` is
hit by a SIGKILL — of the sync process itself, of Synapse, or of slapd — after a delay
drawn from the seed, at its first audit row (`first-change`) or at its first room join
row (`first-join`). The killed server is restarted, the sync re-run until it succeeds,
and the invariants checked:

- every active employee has exactly one active account, theirs, linked exactly once;
- every leaver's account is deactivated; nobody still employed is;
- display names are what the directory says;
- every account change that reached Synapse has its audit row (create or adopt, rename,
  deactivate), and no change is audited twice;
- the managed room (`all`, everybody) holds every active employee, and every member has
  exactly one `room.add_member` row for it: one that reached Synapse while the killed
  sync could not record it is recorded late by the re-run (provisioner.rooms.late), with
  `recorded_late` and the killed run's id;
- the run lock is free, no room intent is left, no run still says "running", and no
  second plan is pending (a re-run changes nothing).

Used by tests/integration/test_faults.py (a small fixed set) and bench/bench_faults.py
(50+ seeded iterations).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from provisioner.rooms.run import load_managed
from provisioner.store import repository as repo
from provisioner.store.models import AccountRow, RunLockRow, RunRow
from provisioner.store.rooms_models import RoomIntentRow
from tests.harness.ldap_seed import SeedPerson, modify_person, rename_person
from tests.harness.slapd_server import SlapdServer, find_slapd, wait_until_answering
from tests.harness.synapse_server import SynapseServer
from tests.integration.accounts_env import AccountsEnv

HAUSPOST = str(Path(sys.executable).parent / "hauspost")
TARGETS = ("sync", "synapse", "slapd")
ROOM_POLICY = "rooms:\n  - key: all\n    name: Alle\n    members: all\n"


def _edit_config(env: AccountsEnv, **sections: Any) -> None:
    path = env.workdir / "hauspost.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in sections.items():
        doc[key] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def manage_rooms(env: AccountsEnv) -> None:
    """One managed room everybody is in (hauspost.yaml `policies:`)."""
    (env.workdir / "policies").mkdir(exist_ok=True)
    (env.workdir / "policies" / "company.yaml").write_text(ROOM_POLICY, encoding="utf-8")
    _edit_config(env, policies="policies")


def route_homeserver(env: AccountsEnv, url: str) -> None:
    """Point the CLI's hauspost.yaml at `url` (a kill proxy) or back at Synapse."""
    path = env.workdir / "hauspost.yaml"
    homeserver = dict(yaml.safe_load(path.read_text(encoding="utf-8"))["homeserver"])
    homeserver["url"] = url
    _edit_config(env, homeserver=homeserver)


@dataclass
class Outcome:
    seed: int
    target: str
    point: str
    delay: float
    killed_exit: int | None
    reruns: int
    problems: list[str] = field(default_factory=list)
    #: Room changes the killed run made in Synapse that a later run recorded late.
    late: int = 0


def restart_slapd(server: SlapdServer) -> None:
    slapd, _ = find_slapd()
    log = open(server.workdir / "slapd.log", "ab")  # noqa: SIM115 - lives with the process
    server.proc = subprocess.Popen(
        [slapd, "-f", str(server.workdir / "slapd.conf"), "-h",
         f"ldap://127.0.0.1:{server.port}/", "-d", "0"], stdout=subprocess.DEVNULL, stderr=log)
    wait_until_answering(server)


def restart_synapse(server: SynapseServer) -> None:
    server.process.start()
    server.process.wait_healthy(timeout=90)


def spawn_sync(env: AccountsEnv) -> subprocess.Popen[bytes]:
    # Output to a file, not a pipe nobody reads while we wait (a full pipe would block it).
    log = open(env.workdir / "faulted-sync.log", "ab")  # noqa: SIM115 - closed by the child's exit
    return subprocess.Popen([HAUSPOST, "-q", "sync", "-d", str(env.workdir)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HAUSPOST_ACTOR": "fault@test"})


def change_directory(env: AccountsEnv, people: list[SeedPerson], rng: random.Random
                     ) -> tuple[list[SeedPerson], dict[str, str], set[str]]:
    """New hires, renames (umlauts included) and leavers; returns (hires, renames, leavers)."""
    hires = [env.person(1000 + i, cn=f"Neue Kollegin {i} Ørsted-Łukasz") for i in range(30)]
    env.seed(hires)
    shuffled = rng.sample(people, len(people))
    renames = {p.uid: f"{p.cn} Müller-Groß" for p in shuffled[:10]}
    leavers = {p.uid for p in shuffled[10:13]}  # under the guard's 10 % of 40
    conn = env.slapd.connection()
    try:
        for uid, cn in renames.items():
            rename_person(conn, uid, cn, env.ou)
        for uid in leavers:
            modify_person(conn, uid, {"employeeType": ["disabled"]}, env.ou)
    finally:
        conn.unbind()
    return hires, renames, leavers


POINTS = ("random", "first-change", "first-join")


def wait_for_first_change(env: AccountsEnv, timeout: float = 20.0,
                          action: str | None = None) -> None:
    """The chosen points: the faulted run has written its first audit row (mid-apply), or
    its first `action` row (`room.add_member`: mid-joins, where a kill leaves joins in
    Synapse whose rows are not written yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not env.audit(actor="fault@test", action=action):
        time.sleep(0.02)


def run_iteration(env: AccountsEnv, seed: int, target: str, *, point: str = "random",
                  people: int = 40, max_delay: float = 1.6) -> Outcome:
    rng = random.Random(seed)  # noqa: S311 - seeded fault injection, not cryptography
    staff = [env.person(i) for i in range(people)]
    env.seed(staff)
    manage_rooms(env)
    first = env.cli("sync", "-q")
    assert first.returncode == 0, first.stderr
    hires, renames, leavers = change_directory(env, staff, rng)
    delay = rng.uniform(0.2, max_delay)

    sync = spawn_sync(env)
    started = time.monotonic()
    if point in ("first-change", "first-join"):
        wait_for_first_change(env, action="room.add_member" if point == "first-join" else None)
        delay = time.monotonic() - started
    else:
        time.sleep(delay)
    if target == "sync":
        sync.send_signal(signal.SIGKILL)
    elif target == "synapse":
        env.synapse.process.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        env.synapse.process.proc.wait()  # type: ignore[union-attr]
    else:
        env.slapd.proc.send_signal(signal.SIGKILL)
        env.slapd.proc.wait()
    hung = False
    try:
        sync.wait(timeout=180)
    except subprocess.TimeoutExpired:
        hung = True
        sync.kill()
        sync.wait()
    finally:
        if target == "synapse":
            restart_synapse(env.synapse)
        elif target == "slapd":
            restart_slapd(env.slapd)
    outcome = Outcome(seed=seed, target=target, point=point, delay=delay,
                      killed_exit=sync.returncode, reruns=0)
    if hung:
        outcome.problems.append(f"the faulted sync did not end within 180 s of killing "
                                f"{target}")
    for _ in range(3):  # a re-run finishes the job; more than one would be a finding
        outcome.reruns += 1
        rerun = env.cli("sync", "-q")
        if rerun.returncode == 0:
            break
        outcome.problems.append(f"re-run {outcome.reruns} exited {rerun.returncode}: "
                                f"{rerun.stderr.strip()[-300:]}")
    outcome.problems.extend(check_invariants(env, [*staff, *hires], renames, leavers))
    outcome.late = recorded_late(env)
    return outcome


def check_invariants(env: AccountsEnv, everyone: list[SeedPerson], renames: dict[str, str],
                     leavers: set[str]) -> list[str]:
    problems: list[str] = []
    with env.synapse.admin() as c:
        users = c.get("/_synapse/admin/v2/users", params={
            "limit": 10000, "name": env.prefix, "deactivated": "true"}).json()["users"]
    accounts = {u["name"]: u for u in users}
    with env.store.session() as s:
        links = Counter(row.user_id for row in s.query(AccountRow).all())
        lock = s.query(RunLockRow).count()
    for person in everyone:
        user_id = env.mxid(person)
        account = accounts.get(user_id)
        if person.uid in leavers:
            if account is None or not account["deactivated"]:
                problems.append(f"leaver {user_id} is not deactivated")
            continue
        if account is None or account["deactivated"]:
            problems.append(f"employee {user_id} has no active account")
            continue
        if links[user_id] != 1:
            problems.append(f"employee {user_id} is linked {links[user_id]} times")
        want = renames.get(person.uid, person.cn)
        if account["displayname"] != want:
            problems.append(f"{user_id} shows {account['displayname']!r}, directory {want!r}")
    extra = {u for u, a in accounts.items() if not a["deactivated"]} - {
        env.mxid(p) for p in everyone if p.uid not in leavers}
    if extra:
        problems.append(f"active accounts nobody in the directory explains: {sorted(extra)}")
    with env.store.session() as s:
        rows = list(repo.query_audit(s, repo.AuditQuery()))
    made = Counter(r.target for r in rows if r.action in ("account.create", "account.link"))
    for person in everyone:
        if made[env.mxid(person)] != 1:
            problems.append(f"{env.mxid(person)} has {made[env.mxid(person)]} create/adopt rows")
    deactivated = Counter(r.target for r in rows if r.action == "account.deactivate")
    for uid in leavers:
        if deactivated[env.synapse.mxid(uid.lower())] != 1:
            problems.append(f"leaver {uid} has {deactivated[env.synapse.mxid(uid.lower())]} "
                            "deactivate rows")
    renamed = Counter(r.target for r in rows if r.action == "account.set_display_name")
    for uid in renames:
        if uid not in leavers and renamed[env.synapse.mxid(uid.lower())] != 1:
            problems.append(f"rename of {uid} audited {renamed[env.synapse.mxid(uid.lower())]}"
                            " times")
    if lock:
        problems.append("the run lock is still held after the last sync")
    problems.extend(check_room_records(env, [env.mxid(p) for p in everyone
                                             if p.uid not in leavers], rows))
    again = env.cli("plan")
    if again.returncode != 0:
        problems.append(f"a plan after recovery is not empty (exit {again.returncode}): "
                        f"{again.stdout[-300:]}")
    return problems



def room_members(env: AccountsEnv, key: str = "all") -> set[str]:
    """The joined members of a managed room, as Synapse lists them (the service account
    and the bot aside: only this test's people)."""
    room = load_managed(env.store).get(key)
    if room is None:
        return set()
    with env.synapse.admin() as c:
        resp = c.get(f"/_synapse/admin/v1/rooms/{quote(room.room_id)}/members")
    resp.raise_for_status()
    return {m for m in resp.json()["members"] if env.prefix in m}


def check_room_records(env: AccountsEnv, active: Sequence[str], rows: Sequence[Any]
                       ) -> list[str]:
    """The managed room holds every active person, each member has exactly one
    `room.add_member` row for it (a late one says so), nothing is left undecided."""
    problems: list[str] = []
    room = load_managed(env.store).get("all")
    if room is None:
        return ["the managed room `all` was never created"]
    members = room_members(env)
    missing = set(active) - members
    if missing:
        problems.append(f"active people not in the room: {sorted(missing)}")
    adds = Counter(r.target for r in rows if r.action == "room.add_member"
                   and (r.details or {}).get("room_id") == room.room_id)
    for user_id in sorted(members):
        if adds[user_id] != 1:
            problems.append(f"{user_id} is in the room with {adds[user_id]} add_member rows")
    with env.store.session() as s:
        intents = s.query(RoomIntentRow).count()
        running = [(r.id, r.kind) for r in s.query(RunRow).filter(RunRow.status == "running")]
    if intents:
        problems.append(f"{intents} room intent(s) left undecided after the last sync")
    if running:
        problems.append(f"runs still marked running after the last sync: {running}")
    return problems


def recorded_late(env: AccountsEnv) -> int:
    """Audit rows a run recorded late for an interrupted one (provisioner.rooms.late)."""
    return sum(1 for r in env.audit() if (r.details or {}).get("recorded_late"))
