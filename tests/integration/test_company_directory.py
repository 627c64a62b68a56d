"""The company directory without Synapse's O(N^2) private-room pairs (company_directory.py).

Against real Synapses: the session one (default modules, as `hauspost init` writes them)
writes no sharing pairs while the search still finds every colleague; the same room on a
Synapse without the module fills the table (so the first check can fail), and one with
`search_all_users: false` keeps Synapse's behaviour because its search needs the pairs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from provisioner.homeserver.module_configs import default_modules
from tests.harness.synapse_server import SynapseServer, TestUser, start_synapse

MODULE = "synapse_modules.company_directory.CompanyDirectory"


def db_rows(server: SynapseServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{server.data_dir / 'homeserver.db'}?mode=ro", uri=True)
    try:
        return list(db.execute(sql, params).fetchall())
    finally:
        db.close()


def directory_caught_up(server: SynapseServer, timeout: float = 30.0) -> None:
    """Wait until the user directory has processed every state change so far."""
    (target,) = db_rows(server, "SELECT MAX(stream_id) FROM current_state_delta_stream")[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (pos,) = db_rows(server, "SELECT stream_id FROM user_directory_stream_pos")[0]
        if pos is not None and pos >= target:
            return
        time.sleep(0.2)
    raise AssertionError(f"user directory still behind stream {target}")


def team_room(server: SynapseServer, size: int, tag: str) -> tuple[str, list[TestUser]]:
    """A private room of `size` colleagues with umlaut names, joined the way Element does."""
    people = [server.create_user(displayname=f"Jürgen Größ {tag} {i}") for i in range(size)]
    room_id = server.create_room(people[0], preset="private_chat", name=f"Team {tag}")
    with server.client(people[0].token) as c:
        for person in people[1:]:
            c.post(f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
                   json={"user_id": person.user_id}).raise_for_status()
    for person in people[1:]:
        server.join(person, room_id).raise_for_status()
    directory_caught_up(server)
    return room_id, people


def pairs(server: SynapseServer, room_id: str) -> int:
    return int(db_rows(server, "SELECT COUNT(*) FROM users_who_share_private_rooms "
                       "WHERE room_id = ?", room_id)[0][0])


def search(server: SynapseServer, user: TestUser, term: str) -> set[str]:
    with server.client(user.token) as c:
        resp = c.post("/_matrix/client/v3/user_directory/search",
                      json={"search_term": term, "limit": 50})
        resp.raise_for_status()
        return {r["user_id"] for r in resp.json()["results"]}


def test_no_sharing_pairs_and_search_still_finds_every_colleague(
        synapse: SynapseServer) -> None:
    log = (synapse.data_dir / "homeserver.log").read_text(encoding="utf-8", errors="replace")
    assert "company directory: not writing users_who_share_private_rooms" in log
    room_id, people = team_room(synapse, 6, "Nord")
    loner = synapse.create_user(displayname="Łukasz Nord Einzeln")
    assert pairs(synapse, room_id) == 0
    assert db_rows(synapse, "SELECT COUNT(*) FROM room_memberships WHERE room_id = ? AND "
                   "membership = 'join'", room_id)[0][0] == 6
    # Search as before: room-mates and a colleague who shares no room with anybody.
    found = search(synapse, people[0], "Nord")
    assert {p.user_id for p in people[1:]} | {loner.user_id} <= found
    assert loner.user_id in search(synapse, people[3], "Łukasz")
    # A leave and a re-join change nothing either.
    with synapse.client(people[2].token) as c:
        c.post(f"/_matrix/client/v3/rooms/{quote(room_id)}/leave", json={}).raise_for_status()
    directory_caught_up(synapse)
    assert pairs(synapse, room_id) == 0
    assert people[2].user_id in search(synapse, people[0], "Nord 2")


@pytest.fixture
def without_module(tmp_path: Path) -> Iterator[SynapseServer]:
    modules = [m for m in default_modules("hauspost.test", "@hauspost:hauspost.test", None)
               if m.module != MODULE]
    assert len(modules) == len(default_modules("hauspost.test", "@x:hauspost.test", None)) - 1
    server = start_synapse(tmp_path / "plain", modules=modules)
    yield server
    server.stop()


def test_without_the_module_synapse_writes_every_pair(without_module: SynapseServer) -> None:
    room_id, people = team_room(without_module, 6, "Süd")
    assert pairs(without_module, room_id) == 6 * 5  # every ordered pair of members
    assert {p.user_id for p in people[1:]} <= search(without_module, people[0], "Süd")


@pytest.fixture
def search_own_rooms(tmp_path: Path) -> Iterator[SynapseServer]:
    def narrow_search(config: dict[str, Any]) -> None:
        config["user_directory"]["search_all_users"] = False

    server = start_synapse(tmp_path / "own-rooms", edit=narrow_search)
    yield server
    server.stop()


def test_module_stands_aside_when_the_search_needs_the_pairs(
        search_own_rooms: SynapseServer) -> None:
    server = search_own_rooms
    log = (server.data_dir / "homeserver.log").read_text(encoding="utf-8", errors="replace")
    assert "Synapse keeps writing users_who_share_private_rooms (user_directory." \
           "search_all_users is off" in log
    room_id, people = team_room(server, 4, "West")
    loner = server.create_user(displayname="Ömer West Einzeln")
    directory_caught_up(server)
    assert pairs(server, room_id) == 4 * 3
    found = search(server, people[0], "West")
    assert {p.user_id for p in people[1:]} <= found
    assert loner.user_id not in found  # shares no room: this search needs the pairs
