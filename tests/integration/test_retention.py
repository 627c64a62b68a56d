"""Retention from policy against a real Synapse: `init` writes Synapse's retention from the
policy, `sync` sets and keeps `m.room.retention` per managed room, Synapse's own purge job
deletes what is older than a room's lifetime and keeps the rest.

One Synapse for this module, made by `hauspost init` from a policy with a 20-second room
(so `allowed_lifetime_min` is 20 s); the *test* homeserver.yaml only shortens the purge
jobs' interval to one second. Each test has its own company (store, directory OU, policy).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from provisioner.store.models import RunRow
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import SynapseServer, start_synapse
from tests.integration.test_org_rooms import RoomsEnv, make_rooms_env

pytestmark = pytest.mark.timeout(600)

DAY = 86_400_000
SHORT_S = 20
POLICY = f"""
rooms:
  - key: short
    name: Kurz
  - key: long
    name: Lang
  - key: department
    for_each: department
    name: "Abteilung {{value}}"
retention:
  default: 1y
  rooms:
    short: {SHORT_S}s
    department: 30d
"""


@pytest.fixture(scope="module")
def retention_synapse(tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[tuple[SynapseServer, dict[str, Any]]]:
    workdir = tmp_path_factory.mktemp("retention")
    (workdir / "policies").mkdir()
    (workdir / "policies" / "company.yaml").write_text(POLICY, encoding="utf-8")
    (workdir / "hauspost.yaml").write_text("policies: policies\n", encoding="utf-8")
    written: dict[str, Any] = {}

    def fast_purge(config: dict[str, Any]) -> None:
        written.update(config["retention"])
        config["retention"]["purge_jobs"] = [{"interval": "1s"}]  # test config only

    server = start_synapse(workdir, edit=fast_purge)
    yield server, written
    server.stop()


@pytest.fixture(name="env")
def env_fixture(retention_synapse: tuple[SynapseServer, dict[str, Any]], slapd: SlapdServer,
                tmp_path: Path) -> Iterator[RoomsEnv]:
    yield from make_rooms_env(retention_synapse[0], slapd, tmp_path, POLICY)


def send(env: RoomsEnv, key: str, text: str) -> str:
    """A (fake) Megolm message from the service account: the room is encrypted, and the
    server stores and purges ciphertext like any event."""
    room = quote(env.room_id(key))
    content = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": text, "sender_key": "k",
               "session_id": "s", "device_id": "D"}
    with env.synapse.admin() as c:
        resp = c.put(f"/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/{text}",
                     json=content)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["event_id"])


def stored_events(env: RoomsEnv, key: str) -> set[str]:
    """Every event the admin API returns (it shows messages hidden by retention, too)."""
    with env.synapse.admin() as c:
        resp = c.get(f"/_synapse/admin/v1/rooms/{quote(env.room_id(key))}/messages",
                     params={"dir": "b", "limit": 1000})
    assert resp.status_code == 200, resp.text
    return {ev["event_id"] for ev in resp.json()["chunk"]}


def in_database(env: RoomsEnv, event_ids: list[str]) -> set[str]:
    db = sqlite3.connect(f"file:{env.synapse.data_dir / 'homeserver.db'}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(event_ids))
        rows = db.execute(f"SELECT event_id FROM events WHERE event_id IN ({marks})",  # noqa: S608
                          event_ids).fetchall()
    finally:
        db.close()
    return {r[0] for r in rows}


def runs(env: RoomsEnv) -> int:
    with env.store.session() as s:
        return s.query(RunRow).count()


def test_init_writes_synapse_retention_from_the_policy(
        retention_synapse: tuple[SynapseServer, dict[str, Any]]) -> None:
    assert retention_synapse[1] == {
        "enabled": True, "default_policy": {"max_lifetime": "1y"},
        "allowed_lifetime_min": f"{SHORT_S}s", "allowed_lifetime_max": "1y",
        "purge_jobs": [{"longest_max_lifetime": "3d", "interval": "1h"},
                       {"shortest_max_lifetime": "3d", "interval": "1d"}]}


def test_purge_job_deletes_old_messages_and_keeps_new_ones(env: RoomsEnv) -> None:
    env.seed([env.person(0, department="IT", location="Berlin")])
    first = env.sync()
    assert first.rooms is not None and first.rooms.result.failures == []
    assert env.state("short", "m.room.retention") == {"max_lifetime": SHORT_S * 1000}
    assert env.state("long", "m.room.retention") == {"max_lifetime": 365 * DAY}
    assert env.state("department/IT", "m.room.retention") == {"max_lifetime": 30 * DAY}

    sent_old = time.monotonic()
    old = [send(env, "short", f"old-{i}") for i in range(3)]
    kept_long = send(env, "long", "old-long")
    send(env, "short", "anchor")  # the newest event before the cut-off may stay
    assert set(old) <= stored_events(env, "short")
    assert in_database(env, old) == set(old)

    time.sleep(max(0.0, sent_old + SHORT_S + 1 - time.monotonic()))
    new = [send(env, "short", f"new-{i}") for i in range(2)]
    sent_new = time.monotonic()
    # Synapse's purge job (every second here) deletes them; newer messages must outlive it.
    while in_database(env, old) and time.monotonic() < sent_new + SHORT_S - 5:
        time.sleep(0.5)

    assert in_database(env, old) == set()
    remaining = stored_events(env, "short")
    assert remaining.isdisjoint(old)
    assert set(new) <= remaining
    assert in_database(env, new) == set(new)
    with env.synapse.admin() as c:
        gone = c.get(f"/_synapse/admin/v1/rooms/{quote(env.room_id('short'))}/context/"
                     f"{quote(old[0])}")
        assert gone.status_code == 404, gone.text
        kept = c.get(f"/_synapse/admin/v1/rooms/{quote(env.room_id('short'))}/context/"
                     f"{quote(new[0])}")
        assert kept.status_code == 200, kept.text
    assert time.monotonic() < sent_new + SHORT_S  # checked while the new ones were young
    # A room kept for a year loses nothing; the room's state (its lifetime) stays.
    assert kept_long in stored_events(env, "long")
    assert env.state("short", "m.room.retention") == {"max_lifetime": SHORT_S * 1000}


def test_policy_change_is_applied_at_the_next_sync_and_drift_is_reverted(
        env: RoomsEnv) -> None:
    env.seed([env.person(0, department="IT", location="Berlin")])
    env.sync()
    policy = env.workdir / "policies" / "company.yaml"
    policy.write_text(POLICY.replace("department: 30d", "department: 90d")
                      .replace("default: 1y", "default: 180d"), encoding="utf-8")

    listed = env.cli("rooms", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["key"]: r for r in json.loads(listed.stdout)}
    assert (rows["department/IT"]["retention"], rows["department/IT"]["wanted_retention"]) == (
        "30d", "90d")
    assert rows["department/IT"]["drift"]["settings"] == ["retention"]
    assert (rows["short"]["retention"], rows["short"]["wanted_retention"]) == ("20s", "20s")
    assert rows["short"]["drift"]["settings"] == []
    text = env.cli("rooms").stdout
    assert "30d->90d" in text and "1y->180d" in text

    changed = env.sync()
    assert changed.rooms is not None
    assert sorted(a.describe() for a in changed.rooms.plan.actions) == [
        "set retention of department/IT: 30d -> 90d",
        "set retention of long: 1y -> 180d"]
    assert env.state("department/IT", "m.room.retention") == {"max_lifetime": 90 * DAY}
    assert env.state("long", "m.room.retention") == {"max_lifetime": 180 * DAY}
    audited = {(r.details["policy_key"], r.details["old"]["max_lifetime"],
                r.details["new"]["max_lifetime"])
               for r in env.audit(run_id=changed.run_id, action="room.set_retention")}
    assert audited == {("department/IT", 30 * DAY, 90 * DAY), ("long", 365 * DAY, 180 * DAY)}

    # Someone with power level 100 (a server admin's tool) keeps "long" for ten years,
    # and clears "short" altogether.
    with env.synapse.admin() as c:
        for key, content in (("long", {"max_lifetime": 3650 * DAY}), ("short", {})):
            resp = c.put(f"/_matrix/client/v3/rooms/{quote(env.room_id(key))}/state/"
                         "m.room.retention/", json=content)
            assert resp.status_code == 200, resp.text
    plan = env.cli("plan")
    assert "~ set retention of long: 10y -> 180d" in plan.stdout, plan.stdout
    assert "~ set retention of short: none -> 20s" in plan.stdout, plan.stdout
    fixed = env.sync()
    assert env.state("long", "m.room.retention") == {"max_lifetime": 180 * DAY}
    assert env.state("short", "m.room.retention") == {"max_lifetime": SHORT_S * 1000}
    reverted = sorted((r.target, r.actor, r.details["old"], r.details["new"])
                      for r in env.audit(run_id=fixed.run_id, action="room.set_retention"))
    assert reverted == sorted([
        (env.room_id("long"), "pytest@test", {"max_lifetime": 3650 * DAY},
         {"max_lifetime": 180 * DAY}),
        (env.room_id("short"), "pytest@test", {}, {"max_lifetime": SHORT_S * 1000})])
    assert env.sync().writes == 0


@pytest.mark.parametrize("bad", ["2 years", "730", "1.5y"])
def test_a_retention_value_that_is_not_a_duration_changes_nothing(env: RoomsEnv,
                                                                 bad: str) -> None:
    env.seed([env.person(0, department="IT", location="Berlin")])
    env.sync()
    before = runs(env)
    policy = env.workdir / "policies" / "company.yaml"
    policy.write_text(POLICY.replace("department: 30d", f"department: {bad}")
                      .replace("default: 1y", "default: 180d"), encoding="utf-8")
    shown = repr(int(bad)) if bad.isdigit() else repr(bad)
    kind = "int" if bad.isdigit() else "str"
    for command in ("plan", "sync", "rooms"):
        result = env.cli(command)
        assert result.returncode == 3, (command, result.stderr)
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert lines == [
            f"Error: invalid room policy: {policy}:14: retention.rooms.department: expected a "
            "duration such as 1d, 52w or 2y (a whole number and one of s, m, h, d, w, y), got "
            f"{kind} {shown}"], (command, result.stderr)
    assert runs(env) == before
    # Nothing changed: not the rooms' retention, not even the valid new default.
    assert env.state("long", "m.room.retention") == {"max_lifetime": 365 * DAY}
    assert env.state("department/IT", "m.room.retention") == {"max_lifetime": 30 * DAY}
