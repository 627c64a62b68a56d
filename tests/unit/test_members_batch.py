"""The batched membership path: the module's pure decisions and config, and the
provisioner's use of it (a fake Synapse that answers the batch per person)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from synapse.module_api.errors import ConfigError, SynapseError

from provisioner.homeserver.synapse_admin import (
    MEMBERS_BATCH_PATH,
    ROOM_STATE_PATH,
    AdminApiError,
    SynapseAdmin,
    SynapseUnreachableError,
)
from provisioner.rooms.apply import apply_room_plan, member_chunks
from provisioner.rooms.plan import AddMember, RemoveMember, RoomPlan
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.rooms_models import RoomIntentRow
from synapse_modules.members_batch import (
    BATCH_PATH,
    MembersBatchConfig,
    membership_problem,
    parse_members_batch_config,
    parse_request,
    refusal_text,
    requester_allowed,
)

pytestmark = pytest.mark.unit

SERVICE = "@hauspost:x.test"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_config_defaults_and_errors() -> None:
    config = parse_members_batch_config({"provisioner_users": [SERVICE]})
    assert config == MembersBatchConfig(frozenset({SERVICE}), 50)
    with pytest.raises(ConfigError, match="max_batch"):
        parse_members_batch_config({"provisioner_users": [SERVICE], "max_batch": 0})
    with pytest.raises(ConfigError, match="max_batch"):
        parse_members_batch_config({"provisioner_users": [SERVICE], "max_batch": 501})
    with pytest.raises(ConfigError, match="maxbatch"):
        parse_members_batch_config({"provisioner_users": [SERVICE], "maxbatch": 5})
    assert BATCH_PATH == MEMBERS_BATCH_PATH


def test_only_the_provisioner_as_a_server_admin() -> None:
    config = MembersBatchConfig(frozenset({SERVICE}), 50)
    assert requester_allowed(SERVICE, True, config)
    assert not requester_allowed(SERVICE, False, config)  # no longer a server admin
    assert not requester_allowed("@it-admin:x.test", True, config)


def test_parse_request_judges_each_user_id() -> None:
    room, entries = parse_request({"room_id": "!abc", "user_ids": [
        "@anna:x.test", "anna", 7, "@anna:x.test", "@jürgen:x.test", "@a b:x.test"]}, 10)
    assert room == "!abc"
    assert entries == [("@anna:x.test", None), ("anna", "not a user ID (@localpart:server)"),
                       ("7", "not a user ID (@localpart:server)"),
                       ("@anna:x.test", "duplicate user ID in this batch"),
                       ("@jürgen:x.test", None),
                       ("@a b:x.test", "not a user ID (@localpart:server)")]


@pytest.mark.parametrize("body", [None, [], {"room_id": "!a"}, {"user_ids": []},
                                  {"room_id": 5, "user_ids": []},
                                  {"room_id": "!a", "user_ids": "@a:x"}])
def test_parse_request_refuses_a_malformed_body(body: object) -> None:
    with pytest.raises(SynapseError) as info:
        parse_request(body, 10)
    assert info.value.code == 400


def test_parse_request_refuses_a_bad_room_and_too_many() -> None:
    with pytest.raises(SynapseError, match="room ID"):
        parse_request({"room_id": "#alias:x", "user_ids": []}, 10)
    with pytest.raises(SynapseError, match="at most 2"):
        parse_request({"room_id": "!a", "user_ids": ["@a:x", "@b:x", "@c:x"]}, 2)


def test_refusals_and_memberships() -> None:
    assert refusal_text("NOT_SPAM") is None
    assert refusal_text(("M_FORBIDDEN", {"error": "Nicht erlaubt."})) == "Nicht erlaubt."
    assert refusal_text(("M_FORBIDDEN", {})) == "refused by the server's policy"
    assert refusal_text(False) == "refused by the server's policy"  # fail closed
    assert membership_problem("ban") == "banned from the room"
    assert [membership_problem(m) for m in (None, "leave", "invite", "knock")] == [None] * 4


def test_member_chunks_cut_runs_of_additions_and_keep_removals_alone() -> None:
    adds = [AddMember("a", f"@{i}:x", "r") for i in range(5)]
    remove = RemoveMember("a", "@9:x", "r")
    room = [adds[0], adds[1], adds[2], remove, adds[3], adds[4]]
    assert member_chunks(room, 2) == [[adds[0], adds[1]], [adds[2]], [remove],
                                      [adds[3], adds[4]]]
    assert member_chunks(room, 1) == [[a] for a in room]
    assert member_chunks([], 50) == []


class BatchSynapse(SynapseAdmin):
    """The real client with a fake Synapse behind `request`: the batched path answers
    per person (refusing `refuse`), or refuses whole batches (`refuse_batches`); the admin
    API's join answers 200."""

    def __init__(self, *, refuse: frozenset[str] = frozenset(), refuse_batches: bool = False,
                 size: int | None = 3) -> None:
        super().__init__("http://unused.test", "token")
        self.refuse = refuse
        self.refuse_batches = refuse_batches
        self.size = size
        self.calls: list[tuple[str, list[str]]] = []

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None,
                      ok: tuple[int, ...] = (200,)) -> httpx.Response:
        if path == MEMBERS_BATCH_PATH and method == "GET":
            if self.size is None:
                return httpx.Response(404, json={"errcode": "M_UNRECOGNIZED"})
            return httpx.Response(200, json={"max_batch": self.size})
        if path == MEMBERS_BATCH_PATH:
            self.calls.append(("batch", list(json["user_ids"])))
            if self.refuse_batches:
                raise AdminApiError(method, path, 403, "M_FORBIDDEN", "auth failed")
            return httpx.Response(200, json={"results": [
                {"user_id": u, "error": "Nicht erlaubt.", "errcode": "M_FORBIDDEN"}
                if u in self.refuse else {"user_id": u, "membership": "join"}
                for u in json["user_ids"]]})
        assert method == "POST" and path.startswith("/_synapse/admin/v1/join/"), path
        self.calls.append(("join", [json["user_id"]]))
        return httpx.Response(200, json={"room_id": "!all"})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'hauspost.db'}")
    yield s
    s.close()


def _apply(store: Store, admin: SynapseAdmin, people: list[str], *,
           batched: bool = True) -> tuple[Any, list[str]]:
    with store.session() as s:
        run_id = repo.start_run(s, kind="sync", actor="t@t", now=NOW, dry_run=False,
                                forced=False).id
    plan = RoomPlan(actions=tuple(AddMember("all", u, "matches all employees")
                                  for u in people))
    result = asyncio.run(apply_room_plan(plan, admin=admin, store=store, run_id=run_id,
                                         actor="t@t", server_name="x.test",
                                         room_ids={"all": "!all"}, batched_members=batched))
    with store.session() as s:
        rows = sorted(r.target for r in repo.query_audit(
            s, repo.AuditQuery(action="room.add_member")))
    return result, rows


PEOPLE = [f"@m{i}:x.test" for i in range(7)]


def test_a_room_fills_in_batches_and_a_refused_person_is_a_failure(store: Store) -> None:
    admin = BatchSynapse(refuse=frozenset({PEOPLE[4]}))
    result, rows = _apply(store, admin, PEOPLE)

    assert admin.calls == [("batch", PEOPLE[0:3]), ("batch", PEOPLE[3:6]), ("join", [PEOPLE[6]])]
    assert [(f.action.user_id, f.error) for f in result.failures] == [  # type: ignore[attr-defined]
        (PEOPLE[4], "Synapse refused: Nicht erlaubt.")]
    assert rows == sorted(set(PEOPLE) - {PEOPLE[4]})
    assert result.applied["add_member"] == 6
    with store.session() as s:  # the refused person's intent stays for the next run
        assert s.query(RoomIntentRow).count() == 1


def test_a_batch_refused_as_a_whole_is_joined_one_by_one(store: Store) -> None:
    admin = BatchSynapse(refuse_batches=True)
    result, rows = _apply(store, admin, PEOPLE[:4])

    assert admin.calls == [("batch", PEOPLE[0:3]), *(("join", [u]) for u in PEOPLE[0:3]),
                           ("join", [PEOPLE[3]])]
    assert result.failures == []
    assert rows == PEOPLE[:4]


def test_without_the_module_or_when_asked_not_to_the_admin_api_joins(store: Store) -> None:
    missing = BatchSynapse(size=None)
    _, rows = _apply(store, missing, PEOPLE[:3])
    assert missing.calls == [("join", [u]) for u in PEOPLE[:3]]
    assert rows == PEOPLE[:3]

    off = BatchSynapse()
    _apply(store, off, PEOPLE[3:5], batched=False)
    assert off.calls == [("join", [u]) for u in PEOPLE[3:5]]


class GoneSynapse(BatchSynapse):
    """Answers the batched path's GET, then is gone."""

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None,
                      ok: tuple[int, ...] = (200,)) -> httpx.Response:
        if method == "GET":
            return await super().request(method, path, json=json, params=params, ok=ok)
        self.calls.append(("batch", list(json["user_ids"])))
        raise SynapseUnreachableError("cannot reach Synapse at http://unused.test")


def test_synapse_gone_mid_run_fails_the_batch_and_attempts_nothing_more(store: Store) -> None:
    admin = GoneSynapse()
    result, rows = _apply(store, admin, PEOPLE)

    assert admin.calls == [("batch", PEOPLE[0:3])]  # nothing after the first answer
    errors = [f.error for f in result.failures]
    assert errors[:3] == ["cannot reach Synapse at http://unused.test"] * 3
    assert len(errors) == 7 and all(e.startswith("not attempted: ") for e in errors[3:])
    assert rows == []
    with store.session() as s:  # every intent stays for the next run to decide
        assert s.query(RoomIntentRow).count() == 7


class StateSynapse(SynapseAdmin):
    """Room reads: the compact read answers (or is not there, 404); the admin API's
    `rooms/<id>/state` answers for `!a` and 404 for any other room."""

    def __init__(self, *, compact: bool) -> None:
        super().__init__("http://unused.test", "token")
        self.compact = compact
        self.calls: list[str] = []

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None,
                      ok: tuple[int, ...] = (200,)) -> httpx.Response:
        self.calls.append(path if params is None else f"{path}?{params['room_id']}")
        if path == ROOM_STATE_PATH:
            if not self.compact:
                return httpx.Response(404, json={"errcode": "M_UNRECOGNIZED"})
            return httpx.Response(200, json={"found": params is not None and params[
                "room_id"] == "!a", "state": [{"type": "m.room.name", "state_key": "",
                                               "content": {"name": "A"}}],
                "members": [["@anna:x.test", "join", "@anna:x.test", 7]]})
        if path == "/_synapse/admin/v1/rooms/%21a/state":
            return httpx.Response(200, json={"state": [{"type": "m.room.name",
                                                        "state_key": "", "content": {}}]})
        return httpx.Response(404, json={"errcode": "M_NOT_FOUND"})


def test_room_state_reads_compactly_and_falls_back_once_to_the_admin_api() -> None:
    async def read(admin: SynapseAdmin) -> list[Any]:
        return [await admin.room_state("!a"), await admin.room_state("!b"),
                await admin.room_state("!a")]

    compact = StateSynapse(compact=True)
    assert asyncio.run(read(compact)) == [
        [{"type": "m.room.name", "state_key": "", "content": {"name": "A"}},
         {"type": "m.room.member", "state_key": "@anna:x.test", "sender": "@anna:x.test",
          "origin_server_ts": 7, "content": {"membership": "join"}}],
        None,
        [{"type": "m.room.name", "state_key": "", "content": {"name": "A"}},
         {"type": "m.room.member", "state_key": "@anna:x.test", "sender": "@anna:x.test",
          "origin_server_ts": 7, "content": {"membership": "join"}}]]
    assert compact.calls == [f"{ROOM_STATE_PATH}?!a", f"{ROOM_STATE_PATH}?!b",
                             f"{ROOM_STATE_PATH}?!a"]

    admin_api = StateSynapse(compact=False)
    assert asyncio.run(read(admin_api)) == [
        [{"type": "m.room.name", "state_key": "", "content": {}}], None,
        [{"type": "m.room.name", "state_key": "", "content": {}}]]
    # Asked of the compact read once; after its 404, the admin API only.
    assert admin_api.calls == [f"{ROOM_STATE_PATH}?!a", "/_synapse/admin/v1/rooms/%21a/state",
                               "/_synapse/admin/v1/rooms/%21b/state",
                               "/_synapse/admin/v1/rooms/%21a/state"]
