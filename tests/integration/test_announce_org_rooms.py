"""The announcement bot in the org policy's read-only room (issues 6 + 7 together): after
`sync` the bot is a member with posting power, `hauspost announce --to all` posts into
that room and employees' real matrix-nio clients decrypt it; the next sync changes nothing.

Real slapd, the session Synapse (default modules), the real sync and `hauspost` CLI. The
test has a bot (`make_rooms_env`) and a keys directory of its own: the session Synapse is
shared, and other tests expect to create `@hauspost-bot` themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from nio import AsyncClient, Event, MegolmEvent, RoomMessageText, SyncResponse

from provisioner.settings import load_settings
from tests.harness.e2ee import E2EEError, close_all, e2ee_login
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, TestUser
from tests.integration.test_org_rooms import RoomsEnv, make_rooms_env

pytestmark = pytest.mark.timeout(600)

POLICY = """
spaces:
  - key: company
    name: Muster GmbH
rooms:
  - key: announcements
    name: Ankündigungen
    space: company
    mandatory: true
    read_only: true
  - key: department
    for_each: department
    name: "Abteilung {value}"
    space: company
"""
POSTING = "the announcement bot posts in read-only rooms"


@pytest.fixture(name="env")
def env_fixture(synapse: SynapseServer, slapd: SlapdServer, tmp_path: Path
                ) -> Iterator[RoomsEnv]:
    for env in make_rooms_env(synapse, slapd, tmp_path, POLICY):
        token_file = tmp_path / "keys" / "service_account_token"
        shutil.copy(env.settings.service_token_file, token_file)
        os.chmod(token_file, 0o600)
        config = tmp_path / "hauspost.yaml"
        doc = yaml.safe_load(config.read_text(encoding="utf-8"))
        doc["service_account"]["token_file"] = str(token_file)
        config.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        env.settings = load_settings(tmp_path)
        yield env


async def _decrypted(client: AsyncClient, room_id: str, event_id: str,
                     timeout: float = 30.0) -> Event:
    """Sync until `event_id` arrived and is decrypted (its key may come a sync later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: Event | None = None
    while loop.time() < deadline:
        resp = await client.sync(timeout=300)
        room = resp.rooms.join.get(room_id) if isinstance(resp, SyncResponse) else None
        for event in room.timeline.events if room else []:
            if event.event_id == event_id:
                found = event
        if isinstance(found, MegolmEvent):
            found = client.decrypt_event(found)
        if found is not None and not isinstance(found, MegolmEvent):
            return found
    raise E2EEError(f"{client.user_id} never decrypted {event_id} in {room_id}: {found}")


async def _announce_and_read(env: RoomsEnv, user_ids: list[str], room_id: str,
                             body: str) -> tuple[dict[str, object], list[Event]]:
    users = [TestUser(user_id=u, password=TEST_PASSWORD, token="", device_id="")
             for u in user_ids]
    clients = list(await asyncio.gather(*(e2ee_login(env.synapse, u, env.workdir / "clients")
                                          for u in users)))
    try:
        proc = await asyncio.to_thread(env.cli, "announce", "--to", "all", "--body", body,
                                       "--json")
        assert proc.returncode == 0, proc.stderr
        sent: dict[str, object] = json.loads(proc.stdout)
        event_ids = sent["event_ids"]
        assert isinstance(event_ids, list) and len(event_ids) == 1
        events = await asyncio.gather(*(_decrypted(c, room_id, event_ids[0])
                                        for c in clients))
        return sent, list(events)
    finally:
        await close_all(*clients)


def test_sync_makes_the_bot_a_poster_and_announce_to_all_reaches_the_org_room(
        env: RoomsEnv) -> None:
    people = [env.person(0, department="Sales"), env.person(1, department="Sales"),
              env.person(2, department="IT")]
    env.seed(people)
    ids = [env.mxid(p) for p in people]
    bot = env.bot  # announcements.yaml names a bot of this test's own

    first = env.sync()
    assert first.result.failures == [] and first.result.applied == {"create": 3}
    assert first.rooms is not None and first.rooms.result.failures == []
    # The bot is in the read-only room with posting power, and nowhere else.
    assert env.members("announcements") == {*ids, bot}
    assert env.members("company") == set(ids)
    assert env.members("department/Sales") == set(ids[:2])
    assert env.members("department/IT") == {ids[2]}
    power = env.state("announcements", "m.room.power_levels")
    assert (power["users"], power["events_default"]) == ({bot: 10}, 10)
    assert env.state("department/Sales", "m.room.power_levels")["users"] == {}
    account = env.account(bot)
    assert (account["admin"], account["deactivated"]) == (False, False)
    # Created by this run and audited with its actor; the join says why.
    room_id = env.room_id("announcements")
    [created] = env.audit(action="bot.created")
    assert (created.target, created.actor, created.run_id) == (bot, "pytest@test", first.run_id)
    [joined] = env.audit(run_id=first.run_id, action="room.add_member", target=bot)
    assert (joined.reason, joined.details["room_id"]) == (POSTING, room_id)

    sent, events = asyncio.run(_announce_and_read(env, ids, room_id, "Betriebsversammlung"))
    assert (sent["rooms"], sent["recipients"], sent["delivered"], sent["not_joined"]) == (
        [room_id], 3, 3, [])
    for event in events:
        assert isinstance(event, RoomMessageText), event
        assert (event.sender, event.body) == (bot, "Betriebsversammlung")

    # The next sync leaves the bot, its power level and everything else alone.
    again = env.sync()
    assert again.writes == 0
    assert again.rooms is not None and again.rooms.plan.actions == ()
    assert env.audit(run_id=again.run_id) == []
    assert env.members("announcements") == {*ids, bot}
    assert env.state("announcements", "m.room.power_levels")["users"] == {bot: 10}
