"""Faults at chosen and seeded-random points, and the invariants that must hold afterwards.

One iteration: a directory of employees in an OU of its own with a store of its own, a
first complete sync, then a change (new hires, renames, leavers) whose `hauspost sync` is
hit by a SIGKILL — of the sync process itself, of Synapse, or of slapd — after a delay
drawn from the seed. The killed server is restarted, the sync re-run until it succeeds,
and the invariants checked:

- every active employee has exactly one active account, theirs, linked exactly once;
- every leaver's account is deactivated; nobody still employed is;
- display names are what the directory says;
- every account change that reached Synapse has its audit row (create or adopt, rename,
  deactivate), and no change is audited twice;
- the run lock is free and no second plan is pending (a re-run changes nothing).

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
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.store import repository as repo
from provisioner.store.models import AccountRow, RunLockRow
from tests.harness.ldap_seed import SeedPerson, modify_person, rename_person
from tests.harness.slapd_server import SlapdServer, find_slapd, wait_until_answering
from tests.harness.synapse_server import SynapseServer
from tests.integration.accounts_env import AccountsEnv

HAUSPOST = str(Path(sys.executable).parent / "hauspost")
TARGETS = ("sync", "synapse", "slapd")


@dataclass
class Outcome:
    seed: int
    target: str
    point: str
    delay: float
    killed_exit: int | None
    reruns: int
    problems: list[str] = field(default_factory=list)


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


POINTS = ("random", "first-change")


def wait_for_first_change(env: AccountsEnv, timeout: float = 20.0) -> None:
    """The chosen point: the faulted run has written its first audit row (mid-apply)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not env.audit(actor="fault@test"):
        time.sleep(0.02)


def run_iteration(env: AccountsEnv, seed: int, target: str, *, point: str = "random",
                  people: int = 40, max_delay: float = 1.6) -> Outcome:
    rng = random.Random(seed)  # noqa: S311 - seeded fault injection, not cryptography
    staff = [env.person(i) for i in range(people)]
    env.seed(staff)
    first = env.cli("sync", "-q")
    assert first.returncode == 0, first.stderr
    hires, renames, leavers = change_directory(env, staff, rng)
    delay = rng.uniform(0.2, max_delay)

    sync = spawn_sync(env)
    started = time.monotonic()
    if point == "first-change":
        wait_for_first_change(env)
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
    again = env.cli("plan")
    if again.returncode != 0:
        problems.append(f"a plan after recovery is not empty (exit {again.returncode}): "
                        f"{again.stdout[-300:]}")
    return problems

