"""SCIM groups become room memberships: a real Synapse with our modules, `hauspost serve` as
a process with `directory.sources: [hr_csv, scim]` and a `for_each: group` room policy.

Group changes over SCIM queue a room sync in the service's queue; the tests wait for the
queue, then look at the real room. A directory sync (the CLI) must keep the SCIM-only people.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from sqlalchemy import select

from provisioner.rooms.run import load_managed
from provisioner.settings import load_settings
from provisioner.store import Store, open_store
from provisioner.store.models import AuditRow, RunRow
from tests.harness.synapse_server import SynapseServer, start_synapse
from tests.integration.service_env import (
    GROUP_SCHEMA,
    PATCH_SCHEMA,
    ServiceProcess,
    configure_service,
    run_cli,
    scim_user,
    settle,
    start_service,
)

pytestmark = pytest.mark.timeout(600)

POLICY = """
rooms:
  - key: project
    for_each: group
    match: "^projekt-"
    name: "{value}"
    on_removed: archive
"""
ROOM = "project/projekt-apollo"


class Env:
    def __init__(self, synapse: SynapseServer, service: ServiceProcess, store: Store) -> None:
        self.synapse = synapse
        self.service = service
        self.store = store
        self.data_dir = service.data_dir
        self.actor = "scim:okta-test"

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.service.scim() as c:
            resp = c.post(path, json=body)
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def patch_members(self, group_id: str, operation: dict[str, Any]) -> None:
        with self.service.scim() as c:
            resp = c.patch(f"/Groups/{group_id}",
                           json={"schemas": [PATCH_SCHEMA], "Operations": [operation]})
        assert resp.status_code == 200, resp.text

    def members(self, key: str) -> set[str]:
        room_id = load_managed(self.store)[key].room_id
        with self.synapse.admin() as c:
            resp = c.get(f"/_synapse/admin/v1/rooms/{quote(room_id)}/members")
        resp.raise_for_status()
        return set(resp.json()["members"]) - {self.synapse.admin_user_id}

    def member_event(self, key: str, user_id: str) -> dict[str, Any]:
        room_id = load_managed(self.store)[key].room_id
        [event] = [ev for ev in self.synapse.room_state(room_id)
                   if ev["type"] == "m.room.member" and ev["state_key"] == user_id]
        return dict(event)

    def deactivated(self, user_id: str) -> bool:
        with self.synapse.admin() as c:
            return bool(c.get(f"/_synapse/admin/v2/users/{user_id}").json()["deactivated"])

    def audit(self, action: str) -> list[tuple[str, str, str | None]]:
        with self.store.session() as s:
            return [(a.actor, a.target, a.reason) for a in s.scalars(
                select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.id))]

    def room_runs(self) -> list[tuple[str, str]]:
        with self.store.session() as s:
            return [(r.actor, r.status) for r in s.scalars(
                select(RunRow).where(RunRow.kind == "rooms").order_by(RunRow.id))]

    def directory_sync(self) -> dict[str, Any]:
        result = run_cli(self.data_dir, "sync", "--json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data


def _configure_directory(data_dir: Path) -> None:
    (data_dir / "hr.csv").write_text("Nr;Login;Name\nHR-1;hanna.hr;Hanna HR\n", encoding="utf-8")
    (data_dir / "policies").mkdir()
    (data_dir / "policies" / "company.yaml").write_text(POLICY, encoding="utf-8")
    path = data_dir / "hauspost.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["directory"] = {"sources": ["hr_csv", "scim"], "time_zone": "Europe/Berlin",
                        "hr_csv": {"path": "hr.csv", "columns": {
                            "employee_id": "Nr", "localpart": "Login", "display_name": "Name"}}}
    doc["policies"] = "policies"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("scim-rooms")
    synapse = start_synapse(workdir)  # our modules: managed rooms are enforced as in production
    try:
        config = configure_service(workdir, tick=600)
        _configure_directory(workdir)
        store = open_store(load_settings(workdir).store_url)
        try:
            service = start_service(workdir, config)
            try:
                yield Env(synapse, service, store)
            finally:
                assert service.stop() == 0, service.log()
        finally:
            store.close()
    finally:
        synapse.stop()


def test_scim_groups_become_room_memberships(env: Env) -> None:
    anna = env.post("/Users", scim_user("anna.apollo", external_id="S-1",
                                        display_name="Anna Apollo"))
    ben = env.post("/Users", scim_user("ben.apollo", external_id="S-2",
                                       display_name="Ben Apollo"))
    anna_id, ben_id = env.synapse.mxid("anna.apollo"), env.synapse.mxid("ben.apollo")
    settle(env.data_dir)

    # A directory sync reads HR and SCIM: it creates the HR employee and keeps the people
    # only SCIM knows (before `scim` was a source they looked gone and were deactivated).
    first = env.directory_sync()
    assert first["plan"]["counts"]["deactivate"] == 0, first["plan"]
    assert first["applied"] == {"create": 1}
    assert not env.deactivated(anna_id) and not env.deactivated(ben_id)

    # A group with Anna: the queued room sync creates the room with her in it.
    group = env.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "projekt-apollo",
                                 "members": [{"value": anna["id"]}]})
    settle(env.data_dir)
    assert env.members(ROOM) == {anna_id}

    # Ben added by a member PATCH: joined.
    env.patch_members(group["id"], {"op": "add", "path": "members",
                                    "value": [{"value": ben["id"]}]})
    settle(env.data_dir)
    assert env.members(ROOM) == {anna_id, ben_id}

    # Anna removed: kicked by the service account, with the reason.
    env.patch_members(group["id"], {"op": "remove",
                                    "path": f'members[value eq "{anna["id"]}"]'})
    settle(env.data_dir)
    assert env.members(ROOM) == {ben_id}
    kicked = env.member_event(ROOM, anna_id)
    assert (kicked["sender"], kicked["content"]["membership"], kicked["content"]["reason"]) == (
        env.synapse.admin_user_id, "leave", "no longer matches group projekt-apollo")

    # Every room change was made by a room sync the SCIM client caused, audited as that client.
    assert env.audit("room.add_member") == [
        (env.actor, anna_id, "matches group projekt-apollo"),
        (env.actor, ben_id, "matches group projekt-apollo")]
    assert env.audit("room.remove_member") == [
        (env.actor, anna_id, "no longer matches group projekt-apollo")]
    runs = env.room_runs()
    assert runs and set(runs) == {(env.actor, "ok")}

    # A second sync changes nothing, and still deactivates none of the SCIM-only people.
    again = env.directory_sync()
    assert again["synapse_writes"] == 0
    assert again["plan"]["counts"]["deactivate"] == 0
    assert again["rooms"]["plan"]["actions"] == []
    assert not env.deactivated(anna_id) and not env.deactivated(ben_id)
