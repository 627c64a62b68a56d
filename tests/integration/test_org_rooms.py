"""Rooms and spaces follow the org chart: real slapd, real Synapse with our modules, the
real `sync` run (accounts, then rooms) and the real `hauspost` CLI.

Each test seeds its own people OU and groups OU and has its own store and policy
directory; the session Synapse is shared.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from provisioner.settings import load_settings
from provisioner.store import open_store
from tests.harness.ldap_seed import (
    SeedPerson,
    add_groups,
    add_ou,
    group_dn,
    modify_person,
    unique_name,
)
from tests.harness.slapd_server import ADMIN_DN, ADMIN_PASSWORD, GROUPS_DN, SlapdServer
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer
from tests.integration.accounts_env import AccountsEnv

pytestmark = pytest.mark.timeout(600)

POLICY = """
spaces:
  - key: company
    name: Muster GmbH
  - key: departments
    name: Abteilungen
    parent: company
rooms:
  - key: announcements
    name: Ankündigungen
    topic: Offizielle Mitteilungen
    space: company
    mandatory: true
    read_only: true
    roles: {poster: {group: gf}}
  - key: department
    for_each: department
    name: "Abteilung {value}"
    space: departments
    mandatory: true
    roles: {moderator: {group: teamleads}}
  - key: location
    for_each: location
    name: "Standort {value}"
  - key: project
    for_each: group
    match: "^projekt-"
    name: "{value}"
    on_removed: archive
  - key: club
    for_each: group
    match: "^club-"
    name: "{value}"
    on_removed: keep
"""


class RoomsEnv(AccountsEnv):
    groups_ou: str = ""

    def group(self, name: str, uids: list[str]) -> None:
        conn = self.slapd.connection()
        try:
            add_groups(conn, {name: uids}, groups_dn=self.groups_ou, people_dn=self.ou)
        finally:
            conn.unbind()

    def delete_group(self, name: str) -> None:
        conn = self.slapd.connection()
        try:
            assert conn.delete(group_dn(name, self.groups_ou)), conn.result
        finally:
            conn.unbind()

    def modify(self, uid: str, changes: dict[str, list[str]]) -> None:
        conn = self.slapd.connection()
        try:
            modify_person(conn, uid, changes, self.ou)
        finally:
            conn.unbind()

    def room_id(self, key: str) -> str:
        from provisioner.room_sync import load_managed

        return load_managed(self.store)[key].room_id

    def members(self, key: str) -> set[str]:
        with self.synapse.admin() as c:
            resp = c.get(f"/_synapse/admin/v1/rooms/{quote(self.room_id(key))}/members")
            resp.raise_for_status()
            return set(resp.json()["members"]) - {self.synapse.admin_user_id}

    def state(self, key: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        for ev in self.synapse.room_state(self.room_id(key)):
            if ev["type"] == event_type and ev["state_key"] == state_key:
                content: dict[str, Any] = ev["content"]
                return content
        return {}

    def token(self, person: SeedPerson) -> str:
        resp = self.login(self.mxid(person), TEST_PASSWORD)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def as_user(self, token: str) -> httpx.Client:
        return self.synapse.client(token)


def make_rooms_env(synapse: SynapseServer, slapd: SlapdServer, workdir: Path,
                   policy: str = POLICY) -> Iterator[RoomsEnv]:
    prefix = unique_name("r")
    conn = slapd.connection()
    try:
        ou = add_ou(conn, prefix)
        groups_ou = add_ou(conn, prefix + "-groups", parent=GROUPS_DN)
    finally:
        conn.unbind()
    keys = workdir / "keys"
    keys.mkdir()
    (keys / "ldap").write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    (keys / "initial").write_text(TEST_PASSWORD + "\n", encoding="utf-8")
    for f in keys.iterdir():
        os.chmod(f, 0o600)
    policies = workdir / "policies"
    policies.mkdir()
    (policies / "company.yaml").write_text(policy, encoding="utf-8")
    base = load_settings(synapse.data_dir)
    doc = {
        "server_name": synapse.server_name,
        "homeserver": {"url": base.homeserver_url, "config": str(base.homeserver_config)},
        "service_account": {"localpart": base.service_localpart,
                            "token_file": str(base.service_token_file)},
        "store": {"url": f"sqlite:///{workdir / 'hauspost.db'}"},
        "ldap": {"uri": slapd.uri, "base_dn": ou, "bind_dn": ADMIN_DN,
                 "bind_password_file": str(keys / "ldap"), "group_mode": "group_of_names",
                 "groups_base_dn": groups_ou},
        "directory": {"sources": ["ldap"], "time_zone": "Europe/Berlin"},
        "sync": {"initial_password_file": str(keys / "initial")},
        "policies": "policies",
    }
    (workdir / "hauspost.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True),
                                           encoding="utf-8")
    settings = load_settings(workdir)
    store = open_store(settings.store_url)
    env = RoomsEnv(synapse=synapse, slapd=slapd, workdir=workdir, ou=ou, prefix=prefix,
                   settings=settings, store=store)
    env.groups_ou = groups_ou
    try:
        yield env
    finally:
        store.close()


@pytest.fixture(name="env")
def env_fixture(synapse: SynapseServer, slapd: SlapdServer, tmp_path: Path
                ) -> Iterator[RoomsEnv]:
    yield from make_rooms_env(synapse, slapd, tmp_path)


def staff(env: RoomsEnv) -> list[SeedPerson]:
    return [env.person(0, department="Sales", location="Berlin"),
            env.person(1, department="Sales", location="Hamburg"),
            env.person(2, department="IT", location="Berlin"),
            env.person(3, department="IT", location="Hamburg")]


def test_rooms_follow_the_directory(env: RoomsEnv) -> None:
    anna, ben, carl, dora = people = staff(env)
    env.seed(people)
    env.group("teamleads", [anna.uid])
    env.group("gf", [carl.uid])
    env.group("projekt-apollo", [ben.uid, dora.uid])
    env.group("club-chess", [anna.uid, carl.uid])
    ids = {p.uid: env.mxid(p) for p in people}

    first = env.sync()
    assert first.result.failures == [] and first.rooms is not None
    assert first.rooms.result.failures == []
    assert first.result.applied == {"create": 4}
    everyone = set(ids.values())
    assert env.members("company") == everyone
    assert env.members("departments") == everyone
    assert env.members("announcements") == everyone
    assert env.members("department/Sales") == {ids[anna.uid], ids[ben.uid]}
    assert env.members("department/IT") == {ids[carl.uid], ids[dora.uid]}
    assert env.members("location/Berlin") == {ids[anna.uid], ids[carl.uid]}
    assert env.members("project/projekt-apollo") == {ids[ben.uid], ids[dora.uid]}
    assert env.members("club/club-chess") == {ids[anna.uid], ids[carl.uid]}
    # Encrypted, invite-only, marked, in the hierarchy, with power levels by group.
    assert env.state("department/Sales", "m.room.encryption")["algorithm"] == \
        "m.megolm.v1.aes-sha2"
    assert env.state("department/Sales", "m.room.join_rules") == {"join_rule": "invite"}
    assert env.state("department/Sales", "de.hauspost.managed") == {
        "policy_key": "department/Sales", "mandatory": True}
    assert env.state("department/Sales", "m.room.name") == {"name": "Abteilung Sales"}
    assert env.state("department/Sales", "m.room.power_levels")["users"] == {ids[anna.uid]: 50}
    announcements = env.state("announcements", "m.room.power_levels")
    assert (announcements["users"], announcements["events_default"]) == ({ids[carl.uid]: 10}, 10)
    assert env.state("departments", "m.space.child", env.room_id("department/IT")) == {
        "via": [env.synapse.server_name]}
    assert env.state("company", "m.space.child", env.room_id("departments")) == {
        "via": [env.synapse.server_name]}
    assert env.state("company", "m.room.create")["type"] == "m.space"
    created = [r for r in env.audit(run_id=first.run_id) if r.action.startswith("room.")]
    assert sum(r.action == "room.add_member" for r in created) == 4 * 3 + 2 * 6
    assert {r.actor for r in created} == {"pytest@test"}

    # A second sync makes zero writes and no audit rows.
    again = env.sync()
    assert again.writes == 0
    assert again.rooms is not None and again.rooms.plan.actions == ()
    assert env.audit(run_id=again.run_id) == []

    # A new hire appears in their department, location and company rooms.
    eva = env.person(4, department="IT", location="Berlin")
    env.seed([eva])
    hired = env.sync()
    assert hired.result.applied == {"create": 1}
    eva_id = env.mxid(eva)
    for key in ("company", "departments", "announcements", "department/IT", "location/Berlin"):
        assert eva_id in env.members(key), key
    assert eva_id not in env.members("department/Sales")

    # A department change moves Ben from Sales to IT.
    env.modify(ben.uid, {"departmentNumber": ["IT"]})
    moved = env.sync()
    assert moved.rooms is not None
    assert [(a.kind, a.key, getattr(a, "user_id", None)) for a in moved.rooms.plan.actions] == [
        ("add_member", "department/IT", ids[ben.uid]),
        ("remove_member", "department/Sales", ids[ben.uid])]
    assert env.members("department/Sales") == {ids[anna.uid]}
    assert env.members("department/IT") == {ids[carl.uid], ids[dora.uid], ids[ben.uid], eva_id}
    [removal] = env.audit(run_id=moved.run_id, action="room.remove_member")
    assert (removal.target, removal.reason) == (ids[ben.uid],
                                                "no longer matches department Sales")

    # A new LDAP group creates its room; removed groups are archived or released.
    env.group("projekt-zeus", [eva.uid])
    env.delete_group("projekt-apollo")
    env.delete_group("club-chess")
    changed = env.sync()
    assert changed.rooms is not None and changed.rooms.result.failures == []
    assert env.members("project/projekt-zeus") == {eva_id}
    # Archived: everyone removed, read-only, marked archived, history kept.
    assert env.members("project/projekt-apollo") == set()
    assert env.state("project/projekt-apollo", "de.hauspost.managed") == {
        "policy_key": "project/projekt-apollo", "mandatory": False, "archived": True}
    assert env.state("project/projekt-apollo", "m.room.power_levels")["events_default"] == 100
    # Released (on_removed: keep): members stay, the room is no longer managed.
    assert env.members("club/club-chess") == {ids[anna.uid], ids[carl.uid]}
    assert env.state("club/club-chess", "de.hauspost.managed") == {}
    actions = {r.action for r in env.audit(run_id=changed.run_id)}
    assert {"room.create_room", "room.archive", "room.release"} <= actions
    assert env.sync().writes == 0


def test_manual_name_and_power_level_changes_are_reverted_and_audited(env: RoomsEnv) -> None:
    people = staff(env)
    env.seed(people)
    env.sync()
    room = quote(env.room_id("department/IT"))
    intruder = env.mxid(people[2])
    with env.synapse.admin() as c:  # someone with IT's token edits the room by hand
        pl = c.get(f"/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/").json()
        pl["users"] = {intruder: 100}
        assert c.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/",
                     json=pl).status_code == 200
        assert c.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.name/",
                     json={"name": "IT (privat)"}).status_code == 200

    plan = env.sync(dry_run=True)
    assert plan.rooms is not None
    assert [a.kind for a in plan.rooms.plan.actions] == ["set_name", "set_power_levels"]
    fixed = env.sync()
    assert env.state("department/IT", "m.room.name") == {"name": "Abteilung IT"}
    assert env.state("department/IT", "m.room.power_levels")["users"] == {}
    name_row, pl_row = env.audit(run_id=fixed.run_id)
    assert (name_row.action, name_row.details["old"], name_row.details["new"]) == (
        "room.set_name", "IT (privat)", "Abteilung IT")
    assert pl_row.action == "room.set_power_levels"
    assert (pl_row.details["old"]["users"], pl_row.details["new"]["users"]) == (
        {intruder: 100}, {})
    assert env.sync().writes == 0
