"""SCIM membership changes queue one room sync (coalesced, audited with the SCIM client as
actor) when SCIM groups feed the org policy; the room sync waits for account changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scim2_server.requests import ScimRequest
from sqlalchemy import select

from provisioner.scim.app import ScimApplication, build_provider, resource_models
from provisioner.scim.storage import HauspostScimStorage
from provisioner.service.server import rooms_follow_scim_groups
from provisioner.settings import parse_settings
from provisioner.store import Store, open_store
from provisioner.store.jobs import JobSpec, due_jobs, enqueue, mark_done, mark_retry
from provisioner.store.models import AuditRow
from provisioner.store.service_models import ServiceJobRow

TOKEN = "unit-test-token-0123456789"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SERVER = "corp.test"
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'hauspost.db'}")
    yield s
    s.close()


class Scim:
    def __init__(self, store: Store, *, rooms_follow: bool) -> None:
        self.store = store
        provider = build_provider()
        storage = HauspostScimStorage(store, server_name=SERVER, protected=frozenset(),
                                      models=resource_models(provider), clock=lambda: NOW,
                                      rooms_follow=rooms_follow)
        storage.load()
        self.app = ScimApplication(storage, provider, token=TOKEN, actor="scim:okta")

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        request = ScimRequest(method=method, base_url="https://chat.corp.test/scim/v2",
                              path=path, query={},
                              body=json.dumps(body).encode() if body is not None else b"",
                              headers={"Authorization": f"Bearer {TOKEN}",
                                       "Content-Type": "application/scim+json"})
        response = await self.app.serve(request)
        assert int(response.status) < 300, response.body
        data: dict[str, Any] = response.body or {}
        return data

    async def user(self, name: str, **extra: Any) -> str:
        return str((await self.call("POST", "/Users",
                                    {"schemas": [USER], "userName": name, **extra}))["id"])

    async def group(self, name: str, *members: str) -> str:
        return str((await self.call("POST", "/Groups", {
            "schemas": [GROUP], "displayName": name,
            "members": [{"value": m} for m in members]}))["id"])

    async def patch_members(self, group_id: str, op: str, member: str) -> None:
        operation: dict[str, Any] = (
            {"op": "add", "path": "members", "value": [{"value": member}]} if op == "add"
            else {"op": "remove", "path": f'members[value eq "{member}"]'})
        await self.call("PATCH", f"/Groups/{group_id}",
                        {"schemas": [PATCH], "Operations": [operation]})

    def jobs(self) -> list[tuple[str, str, str, str | None, str]]:
        with self.store.session() as s:
            return [(j.kind, j.target, j.state, j.reason, j.actor) for j in
                    s.scalars(select(ServiceJobRow).order_by(ServiceJobRow.id))]

    def rooms_queued_audit(self) -> list[tuple[str, str, str | None]]:
        with self.store.session() as s:
            return [(a.actor, a.target, a.reason) for a in
                    s.scalars(select(AuditRow).where(AuditRow.action == "service.job_queued",
                                                     AuditRow.target == "rooms")
                              .order_by(AuditRow.id))]

    def finish_all(self) -> None:
        with self.store.session() as s:
            for job in s.scalars(select(ServiceJobRow).where(ServiceJobRow.state == "pending")):
                mark_done(s, job.id, NOW)


async def test_group_changes_queue_one_room_sync_at_a_time(store: Store) -> None:
    scim = Scim(store, rooms_follow=True)
    anna = await scim.user("anna", active=False)  # inactive: no account, no room sync
    ben = await scim.user("ben", active=False)
    assert scim.jobs() == []

    group = await scim.group("projekt-apollo", anna)
    await scim.patch_members(group, "add", ben)  # coalesced into the pending one
    assert scim.jobs() == [("rooms", "rooms", "pending", "SCIM group 'projekt-apollo' created",
                            "scim:okta")]
    assert scim.rooms_queued_audit() == [("scim:okta", "rooms",
                                          "SCIM group 'projekt-apollo' created")]

    scim.finish_all()
    await scim.patch_members(group, "remove", anna)
    scim.finish_all()
    await scim.call("PATCH", f"/Groups/{group}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "projekt-zeus"}]})
    scim.finish_all()
    await scim.call("DELETE", f"/Groups/{group}")
    assert [j[3] for j in scim.jobs()] == [
        "SCIM group 'projekt-apollo' created", "SCIM group 'projekt-apollo' changed",
        "SCIM group 'projekt-zeus' changed", "SCIM group 'projekt-zeus' deleted"]
    assert {j[4] for j in scim.jobs()} == {"scim:okta"}


async def test_a_group_patch_that_changes_nothing_queues_nothing(store: Store) -> None:
    scim = Scim(store, rooms_follow=True)
    anna = await scim.user("anna", active=False)
    group = await scim.group("projekt-apollo", anna)
    scim.finish_all()
    await scim.patch_members(group, "add", anna)  # already a member
    assert [j[2] for j in scim.jobs()] == ["done"]


async def test_users_created_or_reactivated_queue_a_room_sync_after_their_account(
        store: Store) -> None:
    scim = Scim(store, rooms_follow=True)
    anna = await scim.user("anna")
    assert [(j[0], j[1]) for j in scim.jobs()] == [("reconcile", f"@anna:{SERVER}"),
                                                   ("rooms", "rooms")]
    scim.finish_all()
    # A profile change or a deactivation moves nobody into a room (Synapse parts leavers).
    await scim.call("PATCH", f"/Users/{anna}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Anna S."}]})
    await scim.call("PATCH", f"/Users/{anna}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "value": {"active": False}}]})
    assert [j[0] for j in scim.jobs()] == ["reconcile", "rooms", "reconcile", "offboard"]
    scim.finish_all()
    await scim.call("PATCH", f"/Users/{anna}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "value": {"active": True}}]})
    assert [(j[0], j[3]) for j in scim.jobs()][-2:] == [
        ("reconcile", "set active again by the SCIM client"),
        ("rooms", "a SCIM user became active")]


async def test_without_rooms_follow_group_changes_queue_nothing(store: Store) -> None:
    scim = Scim(store, rooms_follow=False)
    anna = await scim.user("anna", active=False)
    group = await scim.group("projekt-apollo", anna)
    await scim.call("DELETE", f"/Groups/{group}")
    assert scim.jobs() == []


def test_a_room_sync_waits_for_older_account_changes(store: Store) -> None:
    with store.session() as s:
        ids = [enqueue(s, spec, actor="scim:t", source="scim", now=NOW).id for spec in (
            JobSpec("reconcile", "@a:x", "create"),
            JobSpec("rooms", "rooms", "group changed", dedupe_key="rooms"))]
    reconcile, rooms = ids
    with store.session() as s:
        assert [j.id for j in due_jobs(s, NOW)] == [reconcile]
        mark_retry(s, reconcile, NOW, "Synapse down", base=1.0, maximum=60.0)
    with store.session() as s:
        # The account change is retried later: the room sync still waits for it.
        assert [j.id for j in due_jobs(s, NOW)] == []
        mark_done(s, reconcile, NOW + timedelta(seconds=1))
    with store.session() as s:
        assert [j.id for j in due_jobs(s, NOW)] == [rooms]


def test_a_room_sync_folded_into_an_older_one_still_waits_for_its_new_hire(
        store: Store) -> None:
    # Two SCIM creates: the second's room sync is the pending one of the first. Found by
    # the fault suite: the room sync ran between the two account jobs and left the second
    # hire out of every room until some later room sync.
    def create(user_id: str) -> tuple[int, int]:
        with store.session() as s:
            reconcile = enqueue(s, JobSpec("reconcile", user_id, "create"), actor="scim:t",
                                source="scim", now=NOW).id
            rooms = enqueue(s, JobSpec("rooms", "rooms", "a SCIM user became active",
                                       dedupe_key="rooms"), actor="scim:t", source="scim",
                            now=NOW).id
        return reconcile, rooms

    first, rooms = create("@a:x")
    with store.session() as s:
        mark_done(s, first, NOW)
    second, folded = create("@b:x")
    assert folded == rooms
    with store.session() as s:
        assert [j.id for j in due_jobs(s, NOW)] == [second]
        mark_done(s, second, NOW)
    with store.session() as s:
        assert [j.id for j in due_jobs(s, NOW)] == [rooms]


def test_a_room_sync_is_not_held_up_by_later_account_changes(store: Store) -> None:
    with store.session() as s:
        rooms, later = [enqueue(s, spec, actor="scim:t", source="scim", now=NOW).id
                        for spec in (JobSpec("rooms", "rooms", "group changed"),
                                     JobSpec("offboard", "@a:x", "leaver"))]
        assert [j.id for j in due_jobs(s, NOW)] == [rooms, later]


@pytest.mark.parametrize(("sources", "policies", "follows"), [
    (["scim"], "policies", True),
    (["hr_csv"], "policies", False),   # SCIM groups never reach the room sync
    (["scim"], None, False),           # rooms are not managed
])
def test_rooms_follow_scim_groups_only_where_they_feed_rooms(
        tmp_path: Path, sources: list[str], policies: str | None, follows: bool) -> None:
    directory: dict[str, Any] = {"sources": sources, "time_zone": "UTC"}
    if "hr_csv" in sources:
        directory["hr_csv"] = {"path": "hr.csv", "columns": {
            "employee_id": "Nr", "localpart": "Login", "display_name": "Name"}}
    data: dict[str, Any] = {"server_name": SERVER, "homeserver": {"url": "http://127.0.0.1:8008"},
                            "directory": directory}
    if policies:
        data["policies"] = policies
    assert rooms_follow_scim_groups(parse_settings(data, tmp_path / "hauspost.yaml")) is follows
