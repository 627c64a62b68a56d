"""Names and faces from HR in every room, and only current room versions (issue "Only HR
makes accounts"). A real Synapse configured by `hauspost init` with our modules; the
per-room profile is tried in a normal and in a managed room, with Synapse's own
`allow_per_room_profiles: false` (init's default) and with it switched back on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from provisioner.homeserver.synapse_admin import SynapseAdmin
from tests.harness.synapse_server import SynapseServer, TestUser, start_synapse

pytestmark = pytest.mark.integration

MARKER = "de.hauspost.managed"
CEO_FRAUD = "Geschäftsführung"


@pytest.fixture(scope="module")
def loosened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """The same server with Synapse's per-room profiles switched back on by mistake."""
    server = start_synapse(tmp_path_factory.mktemp("loosened"),
                           extra_config={"allow_per_room_profiles": True})
    yield server
    server.stop()


@pytest.fixture(params=["hardened", "loosened"])
def server(request: pytest.FixtureRequest, synapse: SynapseServer) -> SynapseServer:
    if request.param == "hardened":
        return synapse
    loose: SynapseServer = request.getfixturevalue("loosened")
    return loose


def admin_user(server: SynapseServer) -> TestUser:
    return TestUser(user_id=server.admin_user_id, password="", token=server.admin_token,
                    device_id="")


def rooms_for(server: SynapseServer, user: TestUser) -> dict[str, str]:
    """A normal group chat the user created, and a managed room the provisioner put them in."""
    normal = server.create_room(user)
    managed = server.create_room(admin_user(server), initial_state=[
        {"type": MARKER, "state_key": "", "content": {"policy_key": "team/x", "mandatory": False}}])
    with server.admin() as c:
        c.post(f"/_matrix/client/v3/rooms/{quote(managed)}/invite",
               json={"user_id": user.user_id}).raise_for_status()
    assert server.join(user, managed).status_code == 200
    return {"normal": normal, "managed": managed}


def member_content(server: SynapseServer, room_id: str, user_id: str) -> dict[str, Any]:
    [event] = [e for e in server.room_state(room_id)
               if e["type"] == "m.room.member" and e["state_key"] == user_id]
    content: dict[str, Any] = event["content"]
    return content


def set_member(server: SynapseServer, user: TestUser, room_id: str, **fields: str) -> Any:
    with server.client(user.token) as c:
        return c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.member/"
                     f"{quote(user.user_id)}", json={"membership": "join", **fields})


@pytest.mark.parametrize("fields", [{"displayname": CEO_FRAUD},
                                    {"avatar_url": "mxc://hauspost.test/fremdesfoto"}],
                         ids=["display name", "avatar"])
def test_a_per_room_profile_never_shows(server: SynapseServer, fields: dict[str, str]) -> None:
    user = server.create_user(displayname="Erika Muster")
    for kind, room_id in rooms_for(server, user).items():
        resp = set_member(server, user, room_id, **fields)
        shown = member_content(server, room_id, user.user_id)
        if resp.status_code == 200:  # Synapse stripped the field: HR's values only
            assert shown.get("displayname") == "Erika Muster", kind
            assert shown.get("avatar_url") is None, kind
        else:
            assert resp.status_code == 403, (kind, resp.text)
            assert resp.json()["errcode"] == "M_FORBIDDEN"
            assert "comes from HR" in resp.json()["error"]
            assert shown == {"membership": "join", "displayname": "Erika Muster"}, kind


def test_the_loosened_server_refuses_outright(loosened: SynapseServer) -> None:
    """Without Synapse's own stripping, it is the module that holds (403, not rewritten)."""
    user = loosened.create_user(displayname="Erika Muster")
    room_id = loosened.create_room(user)
    resp = set_member(loosened, user, room_id, displayname=CEO_FRAUD)
    assert resp.status_code == 403, resp.text


def test_the_provisioners_rename_reaches_every_room(server: SynapseServer) -> None:
    user = server.create_user(displayname="Erika Muster")
    rooms = rooms_for(server, user)

    async def rename() -> None:
        async with SynapseAdmin(server.url, server.admin_token) as admin:
            await admin.set_display_name(user.user_id, "Erika Berger")

    asyncio.run(rename())

    # Synapse re-sends the member events in the background after the profile change.
    deadline = time.monotonic() + 20
    shown = {}
    while time.monotonic() < deadline:
        shown = {kind: member_content(server, room_id, user.user_id).get("displayname")
                 for kind, room_id in rooms.items()}
        if set(shown.values()) == {"Erika Berger"}:
            break
        time.sleep(0.2)
    assert shown == {"normal": "Erika Berger", "managed": "Erika Berger"}


@pytest.mark.parametrize("version", ["1", "6", "9", "11"])
def test_old_room_versions_are_refused(synapse: SynapseServer, version: str) -> None:
    user = synapse.create_user()
    for who in (user, admin_user(synapse)):  # server admins too
        with synapse.client(who.token) as c:
            resp = c.post("/_matrix/client/v3/createRoom", json={"room_version": version})
        assert resp.status_code == 403, resp.text
        assert resp.json()["errcode"] == "M_FORBIDDEN"
        assert f"Room version {version} is not allowed" in resp.json()["error"]


def test_the_default_version_works_and_cannot_be_upgraded_down(synapse: SynapseServer) -> None:
    user = synapse.create_user()
    room_id = synapse.create_room(user)
    [create] = [e for e in synapse.room_state(room_id) if e["type"] == "m.room.create"]
    assert create["content"]["room_version"] == "12"
    with synapse.client(user.token) as c:
        resp = c.post(f"/_matrix/client/v3/rooms/{quote(room_id)}/upgrade",
                      json={"new_version": "10"})
    assert resp.status_code == 403, resp.text
    assert "Room version 10 is not allowed" in resp.json()["error"]


def test_a_bad_minimum_stops_synapse_with_one_line(tmp_path: Path) -> None:
    from provisioner.homeserver.module_configs import default_modules
    from provisioner.homeserver.synapse_process import SynapseStartError

    modules = default_modules("hauspost.test", "@hauspost:hauspost.test", None)
    for entry in modules:
        if entry.module.endswith("RoomVersionPolicy"):
            entry.config["minimum_room_version"] = "zwölf"
    with pytest.raises(SynapseStartError) as err:
        start_synapse(tmp_path, modules=modules)
    assert "minimum_room_version: expected a room version number such as '12', got 'zwölf'" \
        in str(err.value)
