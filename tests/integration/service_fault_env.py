"""Faults of PostgreSQL and `hauspost serve`: SIGKILLs during SCIM jobs, the service's
directory and room sync, and offboardings, then a restart and the invariants.

One iteration has a directory of its own (an OU in the shared slapd), a store of its own
(a fresh database on the shared PostgreSQL, started with synchronous_commit on so a kill
loses nothing it acknowledged) and its own `hauspost serve` (SCIM, HR webhook, directory
sources `ldap` + `scim`, one managed room everybody is in). The phases:

- `scim`: new SCIM users (201) and PATCH active:false of earlier ones (200) are sent; the
  kill comes when all were answered (`accepted`: before or while the worker applies
  them), at the first account the worker created (`first-change`), or after a seeded
  delay while requests are still arriving (`random`);
- `sync`: the service's own directory sync (queued at start, `sync_interval_minutes`)
  of hires, renames and leavers, with the room sync that follows it;
- `offboard`: HR-webhook leavers (202) handled by the worker and, with PostgreSQL as the
  target, a `hauspost offboard` on the command line at the same time.

A killed `serve` is started again; a killed PostgreSQL is started again while `serve`
keeps running (the service must find its store again by itself). A request that was not
answered with success is sent again afterwards, as an HR system would. Then, after the
queue has settled, the invariants (`check_service_invariants`):

- every active person (LDAP or SCIM) has exactly one active account, linked once; leavers
  (LDAP disabled, SCIM inactive, offboarded by HR) none; nobody still employed was
  deactivated; no active account nobody explains;
- every accepted SCIM/webhook change is applied exactly once in effect: its job is done,
  none failed, one create/adopt row per person, one offboarding or deactivation row per
  leaver;
- every change that reached Synapse has its audit row: every member of the managed room
  has exactly one `room.add_member` row (one the killed run could not write is recorded
  late by the next room sync, marked `recorded_late`), every account a create/adopt row,
  every renamed account a `account.set_display_name` row;
- the store is consistent: the run lock is free, no job pending, what SCIM answers is what
  the store holds, a `hauspost sync` afterwards changes nothing in Synapse, and after it no
  room intent is left undecided and no run still says "running".

Used by tests/integration/test_service_faults.py (a small fixed set) and
bench/bench_faults.py (seeded iterations next to the sync kills of fault_env.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from provisioner.settings import load_settings
from provisioner.store import open_store
from provisioner.store import repository as repo
from provisioner.store.models import AccountRow, RunLockRow
from provisioner.store.service_models import ScimResourceRow, ServiceJobRow
from tests.harness.ldap_seed import SeedPerson, modify_person, rename_person
from tests.harness.postgres_server import PostgresServer, start_postgres
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import SynapseServer
from tests.integration.accounts_env import AccountsEnv, make_env
from tests.integration.fault_env import check_room_records, recorded_late, room_members
from tests.integration.service_env import (
    PATCH_SCHEMA,
    ServiceConfig,
    ServiceProcess,
    configure_service,
    scim_user,
    start_service,
)

HAUSPOST = str(Path(sys.executable).parent / "hauspost")
TARGETS = ("serve", "postgres")
PHASES = ("scim", "sync", "offboard")
POINTS = ("accepted", "first-change", "random")
SCIM_ACTOR = "scim:okta-test"
SERVICE_ACTOR = "hauspost-service"
WEBHOOK_ACTOR = "webhook:hr-webhook"
POLICY = "rooms:\n  - key: all\n    name: Alle\n    members: all\n"


@dataclass
class ServiceOutcome:
    seed: int
    target: str
    phase: str
    point: str
    delay: float
    #: Requests answered with success before the kill, and those sent again afterwards.
    accepted: int = 0
    resent: int = 0
    problems: list[str] = field(default_factory=list)
    #: Room changes the killed run made in Synapse that a later run recorded late.
    late: int = 0


@dataclass
class ServiceFaultEnv:
    env: AccountsEnv
    postgres: PostgresServer
    config: ServiceConfig
    service: ServiceProcess | None = None
    #: SCIM userName -> SCIM id, for every user the client created.
    scim_ids: dict[str, str] = field(default_factory=dict)
    #: The SCIM users the client wants active / inactive at the end.
    scim_active: set[str] = field(default_factory=set)
    scim_inactive: set[str] = field(default_factory=set)

    @property
    def workdir(self) -> Path:
        return self.env.workdir

    def start(self) -> ServiceProcess:
        self.service = start_service(self.workdir, self.config, timeout=60)
        return self.service

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def set_sync_interval(self, seconds: float | None) -> None:
        """With an interval, `serve` queues a directory sync at start and every interval."""
        path = self.workdir / "hauspost.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if seconds is None:
            doc["service"].pop("sync_interval_minutes", None)
        else:
            doc["service"]["sync_interval_minutes"] = max(1, round(seconds / 60))
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")

    def scim_client(self) -> httpx.Client:
        assert self.service is not None
        return self.service.scim()

    def scim_mxid(self, user_name: str) -> str:
        return self.env.synapse.mxid(user_name.lower())


def make_service_env(synapse: SynapseServer, slapd: SlapdServer, postgres: PostgresServer,
                     workdir: Path) -> Iterator[ServiceFaultEnv]:
    for base in make_env(synapse, slapd, workdir):
        database = "hp_" + base.prefix.replace("-", "_").lower()
        postgres.create_database(database)
        path = workdir / "hauspost.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["store"] = {"url": postgres.url(database, driver="postgresql+psycopg2")}
        doc["directory"] = {"sources": ["ldap", "scim"], "time_zone": "Europe/Berlin"}
        (workdir / "policies").mkdir()
        (workdir / "policies" / "company.yaml").write_text(POLICY, encoding="utf-8")
        doc["policies"] = "policies"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        config = configure_service(workdir, tick=600, retry_max=1.0)
        settings = load_settings(workdir)
        store = open_store(settings.store_url)
        fenv = ServiceFaultEnv(env=replace(base, settings=settings, store=store),
                               postgres=postgres, config=config)
        try:
            yield fenv
        finally:
            fenv.stop()
            store.close()


# --- requests that may meet a kill ---------------------------------------------------------


@dataclass
class Request:
    """One SCIM or webhook request the HR side wants applied; `ok` once answered 2xx."""

    kind: str  # "create" | "deactivate" | "leaver"
    key: str  # SCIM userName, or the employee id
    ok: bool = False
    answer: str = ""


def send_request(fenv: ServiceFaultEnv, request: Request) -> None:
    service = fenv.service  # the killer may set it to None while we send
    if service is None:  # killed a moment ago: not answered, sent again later
        request.answer = "serve is down"
        return
    try:
        if request.kind == "create":
            with service.scim() as c:
                resp = c.post("/Users", json=scim_user(
                    request.key, external_id=f"X-{request.key}",
                    display_name=f"SCIM {request.key} Ærø"))
            if resp.status_code == 201:
                fenv.scim_ids[request.key] = str(resp.json()["id"])
            elif resp.status_code == 409:
                # Stored before the kill although the answer was lost: the client looks
                # it up, as Okta does after a conflict.
                with service.scim() as c:
                    found = c.get("/Users", params={
                        "filter": f'userName eq "{request.key}"'}).json()
                if found.get("totalResults") == 1:
                    fenv.scim_ids[request.key] = str(found["Resources"][0]["id"])
                    resp = httpx.Response(201)
        elif request.kind == "deactivate":
            with service.scim() as c:
                resp = c.patch(f"/Users/{fenv.scim_ids[request.key]}", json={
                    "schemas": [PATCH_SCHEMA],
                    "Operations": [{"op": "replace", "value": {"active": False}}]})
        else:
            yesterday = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
            resp = service.send_hook({"employee_id": request.key, "event": "leaver",
                                           "effective_date": yesterday,
                                           "event_id": f"ev-{request.key}-{time.time_ns()}"})
        request.ok = resp.status_code in (200, 201, 202)
        request.answer = f"{resp.status_code} {resp.text[:200]}"
    except httpx.HTTPError as exc:
        request.answer = f"{type(exc).__name__}: {exc}"


def _send_all(fenv: ServiceFaultEnv, requests: list[Request]) -> None:
    for request in requests:
        send_request(fenv, request)


# --- kills ---------------------------------------------------------------------------------


def kill_serve(fenv: ServiceFaultEnv) -> None:
    assert fenv.service is not None
    fenv.service.process.send_signal(signal.SIGKILL)
    fenv.service.process.wait()
    fenv.service.stop()  # closes its log
    fenv.service = None


def count_audit(fenv: ServiceFaultEnv, actions: tuple[str, ...], actor: str) -> int:
    with fenv.env.store.session() as s:
        return sum(1 for r in repo.query_audit(s, repo.AuditQuery(actor=actor))
                   if r.action in actions)


def wait_for_audit(fenv: ServiceFaultEnv, actions: tuple[str, ...], actor: str, *,
                   before: int, timeout: float = 30.0) -> None:
    """The chosen point: a new audit row of one of `actions` by `actor` (mid-apply)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if count_audit(fenv, actions, actor) > before:
                return
        except Exception:  # noqa: BLE001, S110 - the store may be the thing being killed
            pass
        time.sleep(0.02)


def settle(fenv: ServiceFaultEnv, timeout: float = 120.0) -> list[str]:
    """Wait until no job is pending; a problem when the service never gets there."""
    deadline = time.monotonic() + timeout
    pending = -1
    while time.monotonic() < deadline:
        try:
            with fenv.env.store.session() as s:
                pending = int(s.scalar(select(func.count()).select_from(ServiceJobRow)
                                       .where(ServiceJobRow.state == "pending")) or 0)
        except Exception:  # noqa: BLE001 - PostgreSQL may still be recovering
            pending = -1
        if pending == 0:
            return []
        time.sleep(0.2)
    tail = fenv.service.log()[-1500:] if fenv.service else ""
    return [f"{pending} job(s) still pending {timeout:.0f} s after the restart; serve log: "
            f"{tail}"]


# --- one iteration -------------------------------------------------------------------------


@dataclass
class Expectation:
    """Who must end active or not, and who was renamed, for the invariants."""

    ldap_active: list[SeedPerson]
    ldap_leavers: list[SeedPerson]
    renames: dict[str, str]


def run_service_iteration(fenv: ServiceFaultEnv, seed: int, target: str, phase: str, *,
                          point: str = "random", max_delay: float = 1.2) -> ServiceOutcome:
    rng = random.Random(seed)  # noqa: S311 - seeded fault injection, not cryptography
    env = fenv.env
    staff = [env.person(i) for i in range(16)]
    env.seed(staff)
    first = env.cli("sync", "-q")
    assert first.returncode == 0, first.stderr
    expect = Expectation(ldap_active=list(staff), ldap_leavers=[], renames={})
    outcome = ServiceOutcome(seed=seed, target=target, phase=phase, point=point, delay=0.0)
    requests: list[Request] = []
    cli_offboard: subprocess.Popen[bytes] | None = None
    offboarded_by_cli: SeedPerson | None = None

    if phase == "scim":
        fenv.start()
        earlier = [f"{env.prefix}-s{i}" for i in range(3)]
        _send_all(fenv, setup := [Request("create", name) for name in earlier])
        assert all(r.ok for r in setup), [r.answer for r in setup]
        problems = settle(fenv)
        assert not problems, problems
        requests = [Request("create", f"{env.prefix}-n{i}") for i in range(8)]
        requests += [Request("deactivate", name) for name in earlier[:2]]
        rng.shuffle(requests)
        fenv.scim_active.update(earlier[2:], (r.key for r in requests if r.kind == "create"))
        fenv.scim_inactive.update(earlier[:2])
    elif phase == "sync":
        hires = [env.person(100 + i, cn=f"Neu {i} Łukasz-Ørsted") for i in range(8)]
        env.seed(hires)
        shuffled = rng.sample(staff, len(staff))
        expect.renames = {p.uid: f"{p.cn} Müller-Groß" for p in shuffled[:5]}
        leavers = shuffled[5:6]
        conn = env.slapd.connection()
        try:
            for uid, cn in expect.renames.items():
                rename_person(conn, uid, cn, env.ou)
            for person in leavers:
                modify_person(conn, person.uid, {"employeeType": ["disabled"]}, env.ou)
        finally:
            conn.unbind()
        expect.ldap_active = [p for p in [*staff, *hires] if p not in leavers]
        expect.ldap_leavers = leavers
        fenv.set_sync_interval(3600)  # queued at start: the sync under test
        fenv.start()
    else:
        fenv.start()
        shuffled = rng.sample(staff, len(staff))
        hooked = shuffled[:2]
        requests = [Request("leaver", str(p.employee_number)) for p in hooked]
        expect.ldap_leavers = list(hooked)
        if target == "postgres":
            offboarded_by_cli = shuffled[2]
            expect.ldap_leavers.append(offboarded_by_cli)
        expect.ldap_active = [p for p in staff if p not in expect.ldap_leavers]

    wanted = {"scim": (("account.create",), SCIM_ACTOR),
              "sync": (("account.create", "room.add_member", "account.set_display_name"),
                       SERVICE_ACTOR),
              "offboard": (("account.offboard",), WEBHOOK_ACTOR)}[phase]
    before = count_audit(fenv, *wanted)
    # The fault. Requests go out from a thread so a kill can land between them.
    sender = threading.Thread(target=_send_all, args=(fenv, requests), daemon=True)
    started = time.monotonic()
    sender.start()
    if offboarded_by_cli is not None:
        log = open(fenv.workdir / "offboard.log", "ab")  # noqa: SIM115 - closed at exit
        cli_offboard = subprocess.Popen(
            [HAUSPOST, "offboard", "-d", str(fenv.workdir), env.mxid(offboarded_by_cli),
             "--reason", "fristlos", "--no-wait"], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "HAUSPOST_ACTOR": "hr@test"})
    if point == "accepted":
        sender.join(60)
    elif point == "first-change":
        wait_for_audit(fenv, *wanted, before=before)
    else:
        time.sleep(rng.uniform(0.05, max_delay))
    outcome.delay = time.monotonic() - started
    if target == "serve":
        kill_serve(fenv)
    else:
        fenv.postgres.kill()
        time.sleep(rng.uniform(0.1, 0.8))
    sender.join(60)
    outcome.accepted = sum(r.ok for r in requests)
    if target == "serve":
        fenv.start()
    else:
        fenv.postgres.restart()
    if cli_offboard is not None and offboarded_by_cli is not None:
        cli_offboard.wait(120)
        if cli_offboard.returncode != 0:  # the operator runs it again
            again = env.cli("offboard", env.mxid(offboarded_by_cli), "--reason", "fristlos",
                            "--no-wait")
            if again.returncode != 0:
                outcome.problems.append(f"offboard re-run exited {again.returncode}: "
                                        f"{again.stderr.strip()[-300:]}")
    # What was not answered with success is sent again, as the HR system would.
    for request in requests:
        if not request.ok:
            outcome.resent += 1
            send_request(fenv, request)
            if not request.ok:
                outcome.problems.append(f"{request.kind} {request.key} sent again after the "
                                        f"restart: {request.answer}")
    outcome.problems.extend(settle(fenv))
    outcome.problems.extend(check_service_invariants(fenv, expect))
    outcome.late = recorded_late(fenv.env)
    fenv.stop()
    return outcome


# --- invariants ----------------------------------------------------------------------------


def _synapse_accounts(fenv: ServiceFaultEnv) -> dict[str, dict[str, Any]]:
    with fenv.env.synapse.admin() as c:
        users = c.get("/_synapse/admin/v2/users", params={
            "limit": 10000, "name": fenv.env.prefix, "deactivated": "true"}).json()["users"]
    return {u["name"]: u for u in users}


def check_service_invariants(fenv: ServiceFaultEnv, expect: Expectation) -> list[str]:
    env = fenv.env
    problems: list[str] = []
    accounts = _synapse_accounts(fenv)
    active = {env.mxid(p) for p in expect.ldap_active} | {
        fenv.scim_mxid(n) for n in fenv.scim_active}
    leavers = {env.mxid(p) for p in expect.ldap_leavers} | {
        fenv.scim_mxid(n) for n in fenv.scim_inactive}
    with env.store.session() as s:
        links = Counter(row.user_id for row in s.query(AccountRow).all())
        lock = s.query(RunLockRow).count()
        jobs = Counter(state for (state,) in s.execute(select(ServiceJobRow.state)))
        failed = [(j.kind, j.target, j.last_error) for j in s.scalars(
            select(ServiceJobRow).where(ServiceJobRow.state == "failed"))]
        stored_scim = {str(r.body.get("userName")): (r.id, r.body.get("active") is not False)
                       for r in s.scalars(select(ScimResourceRow))
                       if r.resource_type == "User"}
        rows = list(repo.query_audit(s, repo.AuditQuery()))
    for user_id in sorted(active):
        account = accounts.get(user_id)
        if account is None or account["deactivated"]:
            problems.append(f"{user_id} is employed but has no active account")
        elif links[user_id] != 1:
            problems.append(f"{user_id} is linked {links[user_id]} times")
    for user_id in sorted(leavers):
        account = accounts.get(user_id)
        if account is not None and not account["deactivated"]:
            problems.append(f"leaver {user_id} still has an active account")
    extra = {u for u, a in accounts.items() if not a["deactivated"]} - active
    if extra:
        problems.append(f"active accounts nobody in the directory explains: {sorted(extra)}")
    for person in expect.ldap_active:
        want = expect.renames.get(person.uid, person.cn)
        got = (accounts.get(env.mxid(person)) or {}).get("displayname")
        if got != want:
            problems.append(f"{env.mxid(person)} shows {got!r}, the directory {want!r}")
    # Exactly once in effect, and an audit row for every change that reached Synapse.
    made = Counter(r.target for r in rows if r.action in ("account.create", "account.link"))
    for user_id in sorted(active | leavers):
        if user_id in accounts and made[user_id] != 1:
            problems.append(f"{user_id} has {made[user_id]} create/adopt rows")
    ended = Counter(r.target for r in rows
                    if r.action in ("account.offboard", "account.deactivate"))
    for user_id in sorted(leavers):
        if user_id in accounts and ended[user_id] != 1:
            problems.append(f"leaver {user_id} has {ended[user_id]} offboard/deactivate rows")
    renamed = Counter(r.target for r in rows if r.action == "account.set_display_name")
    for uid in expect.renames:
        user_id = env.synapse.mxid(uid.lower())
        if user_id in active and renamed[user_id] != 1:
            problems.append(f"the rename of {user_id} is audited {renamed[user_id]} times")
    members = room_members(env)
    if members != active:
        problems.append(f"room members differ from the active people: missing "
                        f"{sorted(active - members)}, extra {sorted(members - active)}")
    # The store is consistent.
    if lock:
        problems.append("the run lock is still held")
    if jobs.get("pending") or failed:
        problems.append(f"jobs left: {dict(jobs)}; failed: {failed}")
    for name in fenv.scim_active | fenv.scim_inactive:
        stored = stored_scim.get(name)
        if stored is None or stored[0] != fenv.scim_ids.get(name):
            problems.append(f"SCIM user {name}: stored {stored}, the client was told "
                            f"{fenv.scim_ids.get(name)}")
        elif stored[1] != (name in fenv.scim_active):
            problems.append(f"SCIM user {name} is stored with active={stored[1]}")
    if fenv.service is not None:
        with fenv.scim_client() as c:
            listed = c.get("/Users", params={"count": 1000}).json()
        served = {str(r["userName"]): str(r["id"]) for r in listed.get("Resources", [])}
        if served != {n: i for n, (i, _) in stored_scim.items()}:
            problems.append(f"SCIM serves {served}, the store holds {stored_scim}")
    # Nothing left undone in Synapse: a directory sync now writes nothing there (it may
    # only release the holds of finished offboardings, bookkeeping in the store).
    rerun = env.cli("sync", "--json")
    if rerun.returncode != 0:
        problems.append(f"a sync after recovery exited {rerun.returncode}: "
                        f"{rerun.stderr.strip()[-300:]}")
    elif (writes := json.loads(rerun.stdout)["synapse_writes"]) != 0:
        problems.append(f"a sync after recovery still made {writes} Synapse change(s): "
                        f"{rerun.stdout[-600:]}")
    # Read after that sync: a join the killed run could not record is recorded late by the
    # next room sync (the restarted service's, or this one) - exactly one row per member.
    with env.store.session() as s:
        rows = list(repo.query_audit(s, repo.AuditQuery()))
    problems.extend(check_room_records(env, sorted(active), rows))
    return problems


# --- fixtures (import them by name) -------------------------------------------------------


@pytest.fixture(scope="module", name="durable_postgres")
def durable_postgres_fixture() -> Iterator[PostgresServer]:
    server = start_postgres(durable=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="fenv")
def fenv_fixture(ldap_synapse: SynapseServer, slapd: SlapdServer,
                 durable_postgres: PostgresServer, tmp_path: Path
                 ) -> Iterator[ServiceFaultEnv]:
    yield from make_service_env(ldap_synapse, slapd, durable_postgres, tmp_path)
