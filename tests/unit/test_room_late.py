"""Room changes an interrupted run made in Synapse without recording them: the intents the
room sync writes before its first request, and the late recording of the next run
(provisioner.rooms.late). The pure decision table-driven; the store part on SQLite with a
fake admin API that lets a join reach "Synapse" and then fails the run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from provisioner.errors import HauspostError
from provisioner.rooms.apply import apply_room_plan, audit_entry
from provisioner.rooms.late import Intent, decide, in_effect, record_late_changes
from provisioner.rooms.plan import (
    AddMember,
    AddSpaceChild,
    ArchiveRoom,
    CreateRoom,
    CreateSpace,
    ManagedRoom,
    Membership,
    ReleaseRoom,
    RemoveMember,
    RemoveSpaceChild,
    RoomAction,
    RoomPlan,
    RoomState,
    SetMarker,
    SetName,
    SetPowerLevels,
    SetRetention,
    SetTopic,
    action_from_json,
    power_levels,
)
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.models import RunRow
from provisioner.store.rooms_models import ManagedRoomRow, RoomIntentRow

SVC = "@hauspost:x.test"
ANNA, BEN = "@anna:x.test", "@ben:x.test"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

MANAGED = {"all": ManagedRoom("all", "!all"), "co": ManagedRoom("co", "!co", kind="space"),
           "old": ManagedRoom("old", "!old", status="archived"),
           "gone": ManagedRoom("gone", "!gone", status="released")}


def _state(**kw: Any) -> RoomState:
    return RoomState(**kw)


STATES = {
    "all": _state(name="Alle", topic=None, power_levels=power_levels(),
                  marker={"policy_key": "all", "mandatory": True},
                  retention={"max_lifetime": 1000},
                  members={ANNA: Membership("join", ANNA),
                           BEN: Membership("leave", SVC),
                           "@carl:x.test": Membership("leave", "@carl:x.test"),
                           "@dora:x.test": Membership("invite", SVC)}),
    "co": _state(children=frozenset({"!all"})),
    "old": _state(marker={"policy_key": "old", "mandatory": False}),
}


@pytest.mark.parametrize(("action", "expected"), [
    (CreateRoom("all", "Alle", None, None, None, {}, "shared", {}, "archive"), True),
    (CreateRoom("new", "Neu", None, None, None, {}, "shared", {}, "archive"), False),
    (CreateSpace("gone", "Weg", None, None, None, {}, "shared", {}, "archive"), False),
    (AddMember("all", ANNA, "matches all employees"), True),
    (AddMember("all", "@dora:x.test", "invited, never joined"), False),
    (AddMember("all", "@carl:x.test", "left on his own"), False),
    (AddMember("all", "@erik:x.test", "never reached Synapse"), False),
    (RemoveMember("all", BEN, "kicked by the service account"), True),
    (RemoveMember("all", "@carl:x.test", "left on his own: not our kick"), False),
    (RemoveMember("all", ANNA, "still joined"), False),
    (SetName("all", "Old", "Alle"), True),
    (SetName("all", "Alle", "Everyone"), False),
    (SetTopic("all", "T", None), True),
    (SetPowerLevels("all", {}, power_levels()), True),
    (SetPowerLevels("all", power_levels(), power_levels(read_only=True)), False),
    (SetRetention("all", {}, {"max_lifetime": 1000}), True),
    (SetMarker("old", {}, {"policy_key": "old", "mandatory": False}), True),
    (AddSpaceChild("co", "all"), True),
    (RemoveSpaceChild("co", "all"), False),
    (AddSpaceChild("co", "old"), False),
    (RemoveSpaceChild("co", "old"), True),
    (ArchiveRoom("old", "left the policy"), True),
    (ArchiveRoom("all", "status still active: the run is planned again"), False),
    (ReleaseRoom("gone", "left the policy"), True),
    (AddMember("unread", ANNA, "a room Synapse had no state for"), False),
])
def test_in_effect(action: RoomAction, expected: bool) -> None:
    assert in_effect(action, MANAGED, STATES, SVC) is expected


def test_every_kind_of_action_survives_json() -> None:
    actions: list[RoomAction] = [
        CreateSpace("co", "Co", "T", "mxc://x/a", None, power_levels(space=True), "shared",
                    {"policy_key": "co"}, "archive"),
        CreateRoom("all", "Alle", None, None, "co", power_levels(), "shared",
                   {"policy_key": "all"}, "keep", {"max_lifetime": 5}),
        SetName("all", None, "Alle"), SetTopic("all", "a", "b"),
        SetPowerLevels("all", {}, power_levels()), SetMarker("all", {}, {"policy_key": "all"}),
        SetRetention("all", {}, {"max_lifetime": 5}), AddSpaceChild("co", "all"),
        RemoveSpaceChild("co", "all"), AddMember("all", ANNA, "r"),
        RemoveMember("all", ANNA, "r"), ArchiveRoom("all", "r"), ReleaseRoom("all", "r")]
    assert [action_from_json(a.to_json()) for a in actions] == actions
    with pytest.raises(ValueError, match="not a room action"):
        action_from_json({"action": "delete_everything", "key": "all"})


def test_decide_writes_the_row_the_dead_run_would_have_written() -> None:
    join = AddMember("all", ANNA, "matches all employees")
    rename = SetName("all", "Old", "Alle")
    missed = AddMember("all", "@erik:x.test", "matches all employees")
    unarchive = SetMarker("old", {"policy_key": "old", "archived": True},
                          {"policy_key": "old", "mandatory": False})
    intents = [Intent(7, i, "sync@host", a) for i, a in enumerate([join, rename, missed,
                                                                     unarchive])]
    intents.append(Intent(7, 9, "sync@host", None))
    decisions = decide(intents, MANAGED, STATES, SVC)
    room_ids = {k: r.room_id for k, r in MANAGED.items()}
    assert [d.entry for d in decisions] == [audit_entry(join, room_ids),
                                            audit_entry(rename, room_ids), None,
                                            audit_entry(unarchive, room_ids), None]
    assert decisions[0].entry is not None
    assert (decisions[0].entry.action, decisions[0].entry.target,
            decisions[0].entry.details) == ("room.add_member", ANNA,
                                            {"policy_key": "all", "room_id": "!all"})
    # The marker reached Synapse, the store's "active" did not: the late pass finishes it.
    assert [d.reactivate for d in decisions] == [False, False, False, True, False]


# --- the store: intents written, resolved with the audit row, decided late ----------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'hauspost.db'}")
    yield s
    s.close()


class FakeAdmin:
    """Answers the admin API's join; a join of `fail_after` reaches "Synapse" and then the
    request fails, as when the process or the connection dies right after it."""

    def __init__(self, fail_after: str | None = None) -> None:
        self.joined: list[str] = []
        self.fail_after = fail_after
        self.writes = 0

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None,
                      ok: tuple[int, ...] = (200,)) -> httpx.Response:
        assert (method, path) == ("POST", "/_synapse/admin/v1/join/%21all"), path
        self.joined.append(json["user_id"])
        if json["user_id"] == self.fail_after:
            raise HauspostError("connection lost after the join")
        return httpx.Response(200, json={"room_id": "!all"})


def _run(store: Store, actor: str) -> int:
    with store.session() as s:
        return repo.start_run(s, kind="sync", actor=actor, now=NOW, dry_run=False,
                              forced=False).id


def _rows(store: Store, action: str = "room.add_member") -> list[Any]:
    with store.session() as s:
        return list(repo.query_audit(s, repo.AuditQuery(action=action)))


def _intents(store: Store) -> list[tuple[int, int]]:
    with store.session() as s:
        return [(r.run_id, r.seq) for r in s.scalars(select(RoomIntentRow))]


async def test_a_join_that_reached_synapse_unrecorded_is_recorded_late_once(
        store: Store) -> None:
    with store.session() as s:
        s.add(ManagedRoomRow(policy_key="all", room_id="!all", kind="room", status="active",
                             on_removed="archive", created_at=NOW, updated_at=NOW))
    first = _run(store, "sync@host")
    plan = RoomPlan(actions=(AddMember("all", ANNA, "matches all employees"),
                             AddMember("all", BEN, "matches all employees"),
                             AddMember("all", "@carl:x.test", "matches all employees")))
    admin = FakeAdmin(fail_after=BEN)
    result = await apply_room_plan(plan, admin=admin, batched_members=False,  # type: ignore[arg-type]
                                   store=store, run_id=first, actor="sync@host",
                                   server_name="x.test", room_ids={"all": "!all"})
    assert admin.joined == [ANNA, BEN, "@carl:x.test"]
    assert [f.action.user_id for f in result.failures] == [BEN]  # type: ignore[attr-defined]
    assert sorted(r.target for r in _rows(store)) == [ANNA, "@carl:x.test"]
    assert _intents(store) == [(first, 1)]  # Ben's: his audit row is missing
    with store.session() as s:
        repo.finish_run(s, first, now=NOW, status="failed", summary={})

    # The next run reads the room: Ben is joined (the join reached Synapse).
    second = _run(store, "cli@host")
    state = RoomState(members={u: Membership("join", u) for u in (ANNA, BEN, "@carl:x.test")})
    late = record_late_changes(store, {"all": ManagedRoom("all", "!all")}, {"all": state},
                               service_user_id=SVC, run_id=second)
    assert late == 1
    rows = _rows(store)
    assert sorted(r.target for r in rows) == sorted([ANNA, BEN, "@carl:x.test"])
    (ben,) = [r for r in rows if r.target == BEN]
    assert (ben.actor, ben.run_id, ben.reason) == ("sync@host", first, "matches all employees")
    assert ben.details == {"policy_key": "all", "room_id": "!all", "recorded_late": True,
                           "recorded_by_run": second}
    assert _intents(store) == []
    with store.session() as s:
        statuses = {r.id: r.status for r in s.scalars(select(RunRow))}
    assert statuses == {first: "failed", second: "running"}  # `first` did finish
    # Nothing left: a third run records nothing again.
    assert record_late_changes(store, {"all": ManagedRoom("all", "!all")}, {"all": state},
                               service_user_id=SVC, run_id=second) == 0
    assert len(_rows(store)) == 3


def test_a_killed_run_is_marked_interrupted_and_unsent_intents_are_dropped(
        store: Store) -> None:
    killed = _run(store, "hauspost-service")
    with store.session() as s:
        s.add(RoomIntentRow(run_id=killed, seq=0, created_at=NOW,
                            action=RemoveMember("all", BEN, "no longer matches").to_json()))
        s.add(RoomIntentRow(run_id=killed, seq=1, created_at=NOW,
                            action=AddMember("all", ANNA, "matches").to_json()))
        s.add(RoomIntentRow(run_id=killed, seq=2, created_at=NOW,
                            action={"action": "from_a_newer_version", "key": "all"}))
    current = _run(store, "cli@host")
    state = RoomState(members={BEN: Membership("leave", SVC)})  # kicked; Anna never joined
    late = record_late_changes(store, {"all": ManagedRoom("all", "!all")}, {"all": state},
                               service_user_id=SVC, run_id=current)
    assert late == 1
    (row,) = _rows(store, "room.remove_member")
    assert (row.target, row.actor, row.run_id) == (BEN, "hauspost-service", killed)
    assert _rows(store) == [] and _intents(store) == []
    with store.session() as s:
        statuses = {r.id: r.status for r in s.scalars(select(RunRow))}
    assert statuses == {killed: "interrupted", current: "running"}


def test_late_recording_puts_an_unarchived_room_back_to_active(store: Store) -> None:
    with store.session() as s:
        s.add(ManagedRoomRow(policy_key="old", room_id="!old", kind="room",
                             status="archived", on_removed="archive", created_at=NOW,
                             updated_at=NOW))
    killed = _run(store, "sync@host")
    marker = {"policy_key": "old", "mandatory": False}
    with store.session() as s:
        s.add(RoomIntentRow(run_id=killed, seq=0, created_at=NOW, action=SetMarker(
            "old", {"policy_key": "old", "archived": True}, marker).to_json()))
    late = record_late_changes(store, {"old": ManagedRoom("old", "!old", status="archived")},
                               {"old": RoomState(marker=marker)}, service_user_id=SVC,
                               run_id=_run(store, "cli@host"))
    assert late == 1
    assert [r.details["new"] for r in _rows(store, f"room.{SetMarker.kind}")] == [marker]
    with store.session() as s:
        assert s.get(ManagedRoomRow, "old").status == "active"  # type: ignore[union-attr]

