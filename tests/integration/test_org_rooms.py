"""Rooms and spaces follow the org chart: real slapd, real Synapse with our modules, the
real `sync` run (accounts, then rooms) and the real `hauspost` CLI.

Each test seeds its own people OU and groups OU and has its own store and policy
directory; the session Synapse is shared.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from provisioner.rooms.run import load_managed
from provisioner.settings import load_settings
from provisioner.store import open_store
from provisioner.store.models import RunRow
from tests.harness.ldap_seed import (
    SeedPerson,
    add_groups,
    add_ou,
    delete_person,
    group_dn,
    modify_person,
    unique_name,
)
from tests.harness.slapd_server import ADMIN_DN, ADMIN_PASSWORD, GROUPS_DN, SlapdServer
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer
from tests.integration.accounts_env import AccountsEnv, wait_for_background_updates

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

    @property
    def bot(self) -> str:
        """This test's announcement bot (member and poster of the read-only rooms)."""
        return self.synapse.mxid(f"{self.prefix}-bot")


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
    # A bot of its own: other tests on the shared Synapse create @hauspost-bot themselves.
    (workdir / "announcements.yaml").write_text(f"bot_localpart: {prefix}-bot\n",
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
    assert env.members("announcements") == everyone | {env.bot}
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
    assert (announcements["users"], announcements["events_default"]) == (
        {ids[carl.uid]: 10, env.bot: 10}, 10)
    assert env.state("departments", "m.space.child", env.room_id("department/IT")) == {
        "via": [env.synapse.server_name]}
    assert env.state("company", "m.space.child", env.room_id("departments")) == {
        "via": [env.synapse.server_name]}
    assert env.state("company", "m.room.create")["type"] == "m.space"
    created = [r for r in env.audit(run_id=first.run_id) if r.action.startswith("room.")]
    assert sum(r.action == "room.add_member" for r in created) == 4 * 3 + 2 * 6 + 1  # + bot
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

    # Renaming in the policy renames the same room; no second room appears.
    before = env.room_id("location/Berlin")
    policy = env.workdir / "policies" / "company.yaml"
    policy.write_text(POLICY.replace('"Standort {value}"', '"Büro {value}"'), encoding="utf-8")
    renamed = env.sync()
    assert renamed.rooms is not None
    assert sorted(a.describe() for a in renamed.rooms.plan.actions) == [
        "set name of location/Berlin: 'Standort Berlin' -> 'Büro Berlin'",
        "set name of location/Hamburg: 'Standort Hamburg' -> 'Büro Hamburg'"]
    assert env.room_id("location/Berlin") == before
    assert env.state("location/Berlin", "m.room.name") == {"name": "Büro Berlin"}


def _refused(resp: httpx.Response, text: str) -> None:
    assert resp.status_code == 403, resp.text
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert text in resp.json()["error"], resp.json()["error"]


def test_module_keeps_managed_rooms_managed(env: RoomsEnv) -> None:
    anna, ben, carl, _ = people = staff(env)
    env.seed(people)
    env.sync()
    announcements = quote(env.room_id("announcements"))
    berlin = quote(env.room_id("location/Berlin"))
    anna_id, ben_id, carl_id = env.mxid(anna), env.mxid(ben), env.mxid(carl)
    token = env.token(anna)
    with env.as_user(token) as c:
        # Leaving a mandatory room: by /leave and by kicking oneself.
        _refused(c.post(f"/_matrix/client/v3/rooms/{announcements}/leave", json={}),
                 "You can't leave this room: it is a mandatory company room (announcements)")
        _refused(c.post(f"/_matrix/client/v3/rooms/{announcements}/kick",
                        json={"user_id": anna_id}), "mandatory company room")
        # Only the provisioner invites into a managed room (Ben is in Hamburg).
        _refused(c.post(f"/_matrix/client/v3/rooms/{berlin}/invite",
                        json={"user_id": ben_id}), "only IT's provisioning service can invite")
    assert anna_id in env.members("announcements")

    # Even with power level 100 (given by hand), a member can't unmark the room, kick or
    # ban people, or invite.
    with env.synapse.admin() as c:
        pl = c.get(f"/_matrix/client/v3/rooms/{announcements}/state/m.room.power_levels/"
                   ).json()
        pl["users"] = {anna_id: 100}
        assert c.put(f"/_matrix/client/v3/rooms/{announcements}/state/m.room.power_levels/",
                     json=pl).status_code == 200
    with env.as_user(token) as c:
        _refused(c.put(f"/_matrix/client/v3/rooms/{announcements}/state/de.hauspost.managed/",
                       json={}), "Only IT's provisioning service can mark a room")
        _refused(c.put(f"/_matrix/client/v3/rooms/{announcements}/state/de.hauspost.managed/",
                       json={"policy_key": "announcements", "mandatory": False}),
                 "Only IT's provisioning service can mark a room")
        _refused(c.post(f"/_matrix/client/v3/rooms/{announcements}/kick",
                        json={"user_id": carl_id}), "only IT's provisioning service can remove")
        _refused(c.post(f"/_matrix/client/v3/rooms/{announcements}/ban",
                        json={"user_id": carl_id}), "only IT's provisioning service can ban")
        _refused(c.post(f"/_matrix/client/v3/rooms/{announcements}/leave", json={}),
                 "mandatory company room")
        # A non-mandatory room can be left.
        assert c.post(f"/_matrix/client/v3/rooms/{berlin}/leave", json={}).status_code == 200
    assert carl_id in env.members("announcements")
    assert anna_id not in env.members("location/Berlin")
    # ... and the next sync puts the power levels back but leaves Anna out of Berlin.
    fixed = env.sync()
    assert fixed.rooms is not None
    assert [a.kind for a in fixed.rooms.plan.actions] == ["set_power_levels"]
    assert anna_id not in env.members("location/Berlin")

    # Employees still make their own group chats and DMs, but can't mark them managed.
    with env.as_user(token) as c:
        resp = c.post("/_matrix/client/v3/createRoom", json={"invite": [ben_id],
                                                             "is_direct": True})
        assert resp.status_code == 200, resp.text
        _refused(c.post("/_matrix/client/v3/createRoom", json={"initial_state": [
            {"type": "de.hauspost.managed", "state_key": "",
             "content": {"policy_key": "trap", "mandatory": True}}]}),
            "Only IT's provisioning service can mark a room")
        own = c.post("/_matrix/client/v3/createRoom", json={"name": "Kaffee"}).json()["room_id"]
        _refused(c.put(f"/_matrix/client/v3/rooms/{quote(own)}/state/de.hauspost.managed/",
                       json={"policy_key": "trap", "mandatory": True}),
                 "Only IT's provisioning service can mark a room")
        assert c.post(f"/_matrix/client/v3/rooms/{quote(own)}/invite",
                      json={"user_id": carl_id}).status_code == 200
    with env.as_user(env.token(ben)) as c:
        dm = resp.json()["room_id"]
        assert c.post(f"/_matrix/client/v3/join/{quote(dm)}", json={}).status_code == 200


def test_rehire_is_back_in_all_rooms(env: RoomsEnv) -> None:
    wait_for_background_updates(env.synapse)  # reactivation needs them on a fresh SQLite
    people = staff(env)
    env.seed(people)
    env.sync()
    leaver = people[0]
    conn = env.slapd.connection()
    try:
        delete_person(conn, leaver.uid, env.ou)
    finally:
        conn.unbind()
    gone = env.sync(force=True)  # 1 of 4 trips the share guard
    assert gone.result.applied == {"deactivate": 1}
    assert gone.rooms is not None and gone.rooms.plan.actions == ()  # Synapse parts them
    user_id = env.mxid(leaver)
    deadline = time.monotonic() + 30
    while user_id in env.members("location/Berlin") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert user_id not in env.members("location/Berlin")
    env.seed([leaver])
    back = env.sync()
    assert back.result.applied == {"reactivate": 1}
    for key in ("company", "departments", "announcements", "department/Sales",
                "location/Berlin"):
        assert user_id in env.members(key), key
    assert env.sync().writes == 0


def test_offboarding_still_parts_mandatory_rooms(env: RoomsEnv) -> None:
    people = staff(env)
    env.seed(people)
    env.sync()
    gone = env.mxid(people[3])
    with env.synapse.admin() as c:
        assert c.post(f"/_synapse/admin/v1/deactivate/{quote(gone)}",
                      json={"erase": False}).status_code == 200
    # Synapse parts the rooms one after another in the background: wait for all of them.
    rooms = ("announcements", "department/IT")
    deadline = time.monotonic() + 30
    while (any(gone in env.members(key) for key in rooms)
           and time.monotonic() < deadline):
        time.sleep(0.2)
    assert gone not in env.members("announcements")
    assert gone not in env.members("department/IT")


BAD_POLICIES = [
    ("rooms:\n  - key: a\n    name: A\n    mandatroy: true\n",
     "company.yaml:4: rooms[0].mandatroy: unknown key"),
    ("rooms:\n  - key: a\n    name: A\n    read_only: sometimes\n",
     "company.yaml:4: rooms[0].read_only: expected true or false, got str 'sometimes'"),
    ("rooms:\n  - key: a\n    name: A\n  - key: a\n    name: B\n",
     "company.yaml:4: key: duplicate key 'a' (first defined at"),
    ("rooms:\n  - key: a\n    name: A\n    members: {title: Boss}\n",
     "company.yaml:4: rooms[0].members.title: rule on an unknown attribute 'title'"),
]


@pytest.mark.parametrize(("policy", "error"), BAD_POLICIES,
                         ids=["unknown-key", "wrong-type", "duplicate-key", "unknown-attribute"])
def test_invalid_policy_fails_plan_and_sync_and_changes_nothing(
        synapse: SynapseServer, slapd: SlapdServer, tmp_path: Path, policy: str,
        error: str) -> None:
    for env in make_rooms_env(synapse, slapd, tmp_path, policy):
        env.seed(staff(env))
        for command in ("plan", "sync"):
            result = env.cli(command)
            assert result.returncode == 3, result.stderr
            assert error in result.stderr, result.stderr
            assert result.stderr.startswith("Error: ")
        with env.synapse.admin() as c:
            users = c.get("/_synapse/admin/v2/users", params={"name": env.prefix}).json()
        assert users["users"] == []
        with env.store.session() as s:
            assert s.query(RunRow).count() == 0


def test_plan_shows_room_changes_next_to_accounts_and_rooms_lists_drift(env: RoomsEnv) -> None:
    anna, ben, carl, dora = people = staff(env)
    env.seed(people)
    plan = env.cli("plan")
    assert plan.returncode == 10, plan.stderr
    out = plan.stdout
    assert f"+ create {env.mxid(anna)}" in out
    assert "Rooms:" in out
    assert "+ create room department/Sales 'Abteilung Sales' in space departments" in out
    assert f"+ add {env.mxid(anna)} to department/Sales (matches department Sales " \
           "(mandatory))" in out
    assert out.index(f"+ create {env.mxid(anna)}") < out.index("Rooms:")
    assert env.audit() == []

    assert env.cli("sync").returncode == 0
    with env.synapse.admin() as c:
        c.put(f"/_matrix/client/v3/rooms/{quote(env.room_id('location/Berlin'))}/state/"
              "m.room.topic/", json={"topic": "Kaffeeklatsch"}).raise_for_status()
    env.modify(dora.uid, {"l": ["Berlin"]})
    listed = env.cli("rooms", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["key"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"company", "departments", "announcements", "department/IT",
                         "department/Sales", "location/Berlin", "location/Hamburg"}
    berlin = rows["location/Berlin"]
    assert (berlin["members"], berlin["wanted_members"], berlin["status"]) == (2, 3, "active")
    assert berlin["drift"] == {"settings": ["topic"], "add_members": 1, "remove_members": 0,
                               "archive": False, "create": False}
    assert rows["location/Hamburg"]["drift"]["remove_members"] == 1
    assert rows["announcements"]["drift"] == {"settings": [], "add_members": 0,
                                              "remove_members": 0, "archive": False,
                                              "create": False}
    text = env.cli("rooms")
    assert "location/Berlin" in text.stdout and "topic; +1 -0 members" in text.stdout


def test_sync_if_changed_runs_for_room_drift_alone_and_not_without_changes(
        env: RoomsEnv) -> None:
    env.seed(staff(env))
    assert env.cli("sync", "-q").returncode == 0

    def runs() -> int:
        with env.store.session() as s:
            return s.query(RunRow).count()

    before = runs()
    idle = env.cli("sync", "--if-changed")
    assert (idle.returncode, idle.stdout, runs()) == (0, "", before)
    with env.synapse.admin() as c:  # room drift only: no account changes pending
        assert c.put(f"/_matrix/client/v3/rooms/{quote(env.room_id('department/IT'))}"
                     "/state/m.room.name/", json={"name": "IT (privat)"}).status_code == 200

    drift = env.cli("sync", "--if-changed")

    assert drift.returncode == 0, drift.stderr
    assert runs() == before + 1
    assert env.state("department/IT", "m.room.name") == {"name": "Abteilung IT"}
