"""Spaces are signposts (issue "A new user's first hour"): no message of any kind goes into a
space from an employee — the company spaces the sync keeps, and spaces employees create
themselves — while the provisioner's `m.space.child` changes keep working and the spaces'
power levels say so (drift reverted). Real slapd, real Synapse with our modules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import SynapseServer
from tests.integration.test_org_rooms import RoomsEnv, make_rooms_env, staff

pytestmark = pytest.mark.integration

SIGNPOST = "A space lists rooms and holds no messages"
# What a client's Megolm session produces; the server can't (and needn't) read it.
CIPHERTEXT = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7",
              "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
              "sender_key": "RF3s+E7RkTQTGF2d8Deol0FkQvgII2aJDf3/Jp5mxVU",
              "device_id": "ELEMENTX"}


@pytest.fixture(name="env")
def env_fixture(synapse: SynapseServer, slapd: SlapdServer, tmp_path: Path
                ) -> Iterator[RoomsEnv]:
    yield from make_rooms_env(synapse, slapd, tmp_path)


def send(client: httpx.Client, room_id: str, event_type: str, content: dict[str, object]
         ) -> httpx.Response:
    txn = f"t{time.monotonic_ns()}"
    return client.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{event_type}/{txn}",
                      json=content)


def test_nobody_writes_into_a_space(env: RoomsEnv) -> None:
    people = staff(env)
    env.seed(people)
    env.sync()
    company = env.room_id("company")
    assert env.state("company", "m.room.power_levels")["events_default"] == 100

    with env.as_user(env.token(people[0])) as employee:
        encrypted = send(employee, company, "m.room.encrypted", CIPHERTEXT)
        plain = send(employee, company, "m.room.message", {"msgtype": "m.text", "body": "Hallo"})
        own = employee.post("/_matrix/client/v3/createRoom", json={
            "preset": "private_chat", "creation_content": {"type": "m.space"}})
        assert own.status_code == 200, own.text
        own_space = own.json()["room_id"]
        # Her own space: she has power 100 there, yet the module refuses her messages.
        own_encrypted = send(employee, own_space, "m.room.encrypted", CIPHERTEXT)
        own_plain = send(employee, own_space, "m.room.message", {"msgtype": "m.text", "body": "x"})
        # State a space needs still works for its owner.
        named = employee.put(f"/_matrix/client/v3/rooms/{quote(own_space)}/state/m.room.name/",
                             json={"name": "Mein Space"})

    for resp in (encrypted, plain, own_encrypted, own_plain):
        assert resp.status_code == 403, resp.text
        assert resp.json()["errcode"] == "M_FORBIDDEN"
    for resp in (encrypted, own_encrypted):
        assert SIGNPOST in resp.json()["error"]
    assert named.status_code == 200, named.text

    # The provisioner's own space changes keep working.
    with env.synapse.admin() as admin:
        child = admin.put(f"/_matrix/client/v3/rooms/{quote(company)}/state/m.space.child/"
                          f"{quote(env.room_id('location/Berlin'))}",
                          json={"via": [env.synapse.server_name]})
    assert child.status_code == 200, child.text


def test_loosened_space_power_levels_are_put_back(env: RoomsEnv) -> None:
    env.seed(staff(env))
    env.sync()
    company = quote(env.room_id("company"))
    with env.synapse.admin() as admin:
        pl = admin.get(f"/_matrix/client/v3/rooms/{company}/state/m.room.power_levels/").json()
        pl["events_default"] = 0
        assert admin.put(f"/_matrix/client/v3/rooms/{company}/state/m.room.power_levels/",
                         json=pl).status_code == 200

    fixed = env.sync()

    assert fixed.rooms is not None
    assert [a.describe() for a in fixed.rooms.plan.actions] == [
        "set power levels of company: events_default 0 -> 100"]
    assert env.state("company", "m.room.power_levels")["events_default"] == 100
    [row] = env.audit(run_id=fixed.run_id, action="room.set_power_levels")
    assert (row.details["old"]["events_default"], row.details["new"]["events_default"]) == (0, 100)
