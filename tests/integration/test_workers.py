"""The policies hold on Synapse-on-PostgreSQL with workers and Redis, behind nginx.

One layout per module (`hauspost init --workers 2`: main, client1, client2, persister1,
media1, background1), started by tests/harness/synapse_workers.py. The checks of the
single-process integration tests run unchanged against it (their `synapse` argument is
the layout, reached through the generated nginx routing); a few reads of SQLite are
swapped for the same reads of PostgreSQL. The tests written here prove what only a
layout can get wrong: that requests really land on the workers, and that a decision
made on one process holds on another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import tests.integration.test_encryption_indirect as indirect
import tests.integration.test_encryption_policy as encryption_checks
import tests.integration.test_leaver_sessions as sessions
import tests.integration.test_media_gate as media_checks
import tests.integration.test_membership_policy as membership_checks
import tests.integration.test_names_and_versions as names
from synapse_modules.media_store import WITHDRAWN_MARK
from synapse_modules.members_batch import BATCH_PATH
from tests.harness.synapse_workers import WorkersServer, start_synapse_workers

CLIENT_WORKERS = 2


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkersServer]:
    server = start_synapse_workers(tmp_path_factory.mktemp("workers"),
                                   client_workers=CLIENT_WORKERS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_reads(workers: WorkersServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The encryption checks read stored event JSON from SQLite; read PostgreSQL instead."""
    def stored_event_json(server: Any, room_id: str) -> list[str]:
        return [str(row[0]) for row in workers.sql(
            "SELECT json FROM event_json WHERE room_id = %s", (room_id,))]

    monkeypatch.setattr(encryption_checks, "stored_event_json", stored_event_json)


# --- the layout is what it claims to be --------------------------------------------------


def test_every_process_is_up_and_our_modules_are_loaded_everywhere(
        workers: WorkersServer) -> None:
    assert workers.group is not None
    assert sorted(workers.group.processes) == [
        "background1", "client1", "client2", "main", "media1", "persister1"]
    for name, process in workers.group.processes.items():
        log = (process.log_path.parent / f"{name}.log" if name != "main"
               else workers.data_dir / "homeserver.log")
        text = log.read_text(encoding="utf-8")
        for module in ("membership.MembershipPolicy", "encryption.EncryptionPolicy",
                       "media_gate.MediaGate"):
            assert f"Loaded module <synapse_modules.{module} object" in text, (name, module)
    # The download gate wraps the media repository only where there is one.
    media_log = (workers.data_dir / "workers" / "media1.log").read_text(encoding="utf-8")
    assert "Media download gate installed" in media_log
    main_log = (workers.data_dir / "homeserver.log").read_text(encoding="utf-8")
    assert "Media download gate installed" not in main_log


def test_events_are_persisted_by_the_event_persister(workers: WorkersServer) -> None:
    alice = workers.create_user()
    room_id = workers.create_room(alice)
    with workers.client(alice.token) as c:
        resp = c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.encrypted/t1",
                     json={"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x",
                           "sender_key": "k", "session_id": "s", "device_id": "D"})
    assert resp.status_code == 200, resp.text
    rows = workers.sql("SELECT instance_name FROM events WHERE event_id = %s",
                       (resp.json()["event_id"],))
    assert rows == [("persister1",)]


def test_media_is_served_by_the_media_worker_only(workers: WorkersServer) -> None:
    alice = workers.create_user()
    resp = media_checks.upload_plain(workers, alice, media_checks.png_bytes(64), "image/png")
    assert resp.status_code == 200, resp.text
    media_id = media_checks.media_id_of(resp.json()["content_uri"])
    path = {"v1": media_checks.every_download_path(workers.server_name, media_id)[
        "v1 download"]}
    assert media_checks.answers(workers, alice.token, path)["v1"][0] == 200
    assert media_checks.answers(workers.via("media1"), alice.token, path)["v1"][0] == 200
    # The main process has no media repository (enable_media_repo: false).
    status, body = media_checks.answers(workers.via("main"), alice.token, path)["v1"]
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")


def test_admin_api_and_federation_are_not_behind_the_public_proxy(
        workers: WorkersServer) -> None:
    with workers.client(workers.admin_token) as c:
        for path in ("/_synapse/admin/v2/users/" + quote(workers.admin_user_id),
                     "/_matrix/federation/v1/version", "/_matrix/key/v2/server"):
            assert c.get(path).status_code == 404, path
    with workers.admin() as c:  # the main process, on the internal network
        assert c.get("/_synapse/admin/v2/users/" + quote(workers.admin_user_id)
                     ).status_code == 200


# --- the single-process checks, run against the layout ------------------------------------

MEMBERSHIP_CHECKS = (
    "test_group_chat_and_direct_message_between_employees",
    "test_invite_to_another_server_refused",
    "test_invite_of_unknown_or_deactivated_colleague_refused",
    "test_join_room_on_another_server_refused",
    "test_public_join_rule_refused",
    "test_world_readable_history_refused",
    "test_guest_access_refused",
)


@pytest.mark.parametrize("check", MEMBERSHIP_CHECKS)
def test_membership_policy_on_workers(workers: WorkersServer, check: str) -> None:
    run: Callable[[WorkersServer], None] = getattr(membership_checks, check)
    run(workers)


ENCRYPTION_CHECKS = (
    "test_plaintext_message_refused",
    "test_switching_encryption_off_or_changing_it_refused",
    "test_state_events_stay_allowed",
)


@pytest.mark.parametrize("check", ENCRYPTION_CHECKS)
@pytest.mark.usefixtures("postgres_reads")
def test_encryption_policy_on_workers(workers: WorkersServer, check: str) -> None:
    run: Callable[[WorkersServer], None] = getattr(encryption_checks, check)
    run(workers)


@pytest.mark.usefixtures("postgres_reads")
async def test_room_auto_encrypted_and_only_ciphertext_stored_on_workers(
        workers: WorkersServer, tmp_path: Path) -> None:
    check: Callable[[WorkersServer, Path], Awaitable[None]] = (
        encryption_checks
        .test_room_created_without_encryption_is_encrypted_and_server_sees_only_ciphertext)
    await check(workers, tmp_path)


MEDIA_CHECKS = (
    "test_thumbnails_follow_the_same_rule",
    "test_unauthenticated_requests_get_nothing",
    "test_uploader_leaving_cuts_off_colleagues_at_once",
    "test_leaving_a_room_ends_access",
)


@pytest.mark.parametrize("check", MEDIA_CHECKS)
def test_media_gate_on_workers(workers: WorkersServer, check: str) -> None:
    run: Callable[[WorkersServer], None] = getattr(media_checks, check)
    run(workers)


async def test_encrypted_file_reaches_room_mates_only_on_workers(
        workers: WorkersServer, tmp_path: Path) -> None:
    await media_checks.test_encrypted_file_reaches_room_mates_only_even_when_forwarded(
        workers, tmp_path)


def test_offboarded_token_is_rejected_on_every_worker(workers: WorkersServer) -> None:
    membership_checks.test_stale_token_of_deactivated_user_is_rejected(workers)
    leaver = workers.create_user()
    with workers.admin() as c:
        c.post(f"/_synapse/admin/v1/deactivate/{quote(leaver.user_id)}", json={}
               ).raise_for_status()
    assert workers.group is not None
    for name in ("main", "client1", "client2", "media1"):
        with workers.via(name).client(leaver.token) as c:
            resp = c.get("/_matrix/client/v3/account/whoami" if name != "media1"
                         else "/_matrix/client/v1/media/config")
        assert (resp.status_code, resp.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN"), name


# --- a decision made on one process holds on another ---------------------------------------


def test_file_withdrawn_via_a_client_worker_is_gone_on_the_media_worker(
        workers: WorkersServer) -> None:
    alice, bob = workers.create_user(), workers.create_user()
    room = workers.create_room(alice, invite=[bob.user_id])
    assert workers.join(bob, room).status_code == 200
    media_worker = workers.via("media1")
    resp = media_checks.upload_plain(media_worker, alice, b"\x00ciphertext" * 200,
                                     "application/octet-stream")
    mxc = resp.json()["content_uri"]
    media_id = media_checks.media_id_of(mxc)
    paths = {k: v for k, v in media_checks.every_download_path(
        workers.server_name, media_id).items() if k in ("v1 download", "v1 download+name")}
    ok = dict.fromkeys(paths, 200)
    assert {k: s for k, (s, _) in media_checks.answers(media_worker, bob.token,
                                                       paths).items()} == ok

    # Withdrawn on client1: that process has no media repository, so it only records
    # the decision in the database; the media worker must honour it at once.
    done = media_checks.withdraw(workers.via("client1"), alice.token, {"content_uri": mxc})
    assert (done.status_code, done.json()) == (200, {"content_uri": mxc, "withdrawn": True,
                                                     "deleted": False})
    for who in (alice, bob):
        assert media_checks.answers(media_worker, who.token, paths) == \
            media_checks.all_not_found(paths)
        assert media_checks.answers(workers, who.token, paths) == \
            media_checks.all_not_found(paths)
    assert workers.sql("SELECT user_id FROM hauspost_media_withdrawn WHERE media_id = %s",
                       (media_id,)) == [(alice.user_id,)]
    assert workers.sql("SELECT quarantined_by FROM local_media_repository WHERE media_id = %s",
                       (media_id,)) == [(WITHDRAWN_MARK,)]
    # Asked again on client2, the decision is known there too.
    again = media_checks.withdraw(workers.via("client2"), bob.token, {"content_uri": mxc})
    assert again.json() == media_checks.WITHDRAW_NOT_FOUND


def test_leave_on_one_client_worker_closes_files_on_the_media_worker(
        workers: WorkersServer) -> None:
    alice, bob = workers.create_user(), workers.create_user()
    room = workers.create_room(alice, invite=[bob.user_id])
    assert workers.via("client1").join(bob, room).status_code == 200
    media_worker = workers.via("media1")
    resp = media_checks.upload_plain(media_worker, alice, b"\x00secret" * 200,
                                     "application/octet-stream")
    path = {"v1": media_checks.every_download_path(
        workers.server_name, media_checks.media_id_of(resp.json()["content_uri"]))[
        "v1 download"]}
    assert media_checks.answers(media_worker, bob.token, path)["v1"][0] == 200
    with workers.via("client2").client(bob.token) as c:
        assert c.post(f"/_matrix/client/v3/rooms/{quote(room)}/leave",
                      json={}).status_code == 200
    assert media_checks.answers(media_worker, bob.token, path) == \
        media_checks.all_not_found(path)


# --- identity, sessions and the indirect encryption paths, on the layout ----------------


def test_indirect_encryption_paths_on_workers(workers: WorkersServer) -> None:
    indirect.test_redacting_the_encryption_event_is_refused(workers)
    indirect.test_weaker_key_rotation_is_refused(
        workers, {"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_msgs": 10_000})
    indirect.test_a_tombstone_to_anything_but_an_encrypted_room_of_ours_is_refused(
        workers, "!doesnotexist")
    indirect.test_a_tombstone_to_an_encrypted_room_and_a_real_upgrade_work(workers)


def test_names_and_room_versions_on_workers(workers: WorkersServer) -> None:
    names.test_a_per_room_profile_never_shows(workers, {"displayname": names.CEO_FRAUD})
    names.test_old_room_versions_are_refused(workers, "9")


def test_leaver_sessions_end_on_every_worker(workers: WorkersServer) -> None:
    sessions.test_no_new_session_for_a_deactivated_account(workers)
    sessions.test_active_colleagues_keep_their_sessions(workers)
    leaver = workers.create_user()
    tokens = sessions.sessions_of(workers, leaver)
    with workers.admin() as c:
        c.post(f"/_synapse/admin/v1/deactivate/{quote(leaver.user_id)}", json={}
               ).raise_for_status()
    for name in ("main", "client1", "client2"):
        for kind, token in tokens.items():
            with workers.via(name).client(token) as c:
                resp = c.get("/_matrix/client/v3/account/whoami")
            assert (resp.status_code, resp.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN"), \
                (name, kind)


def _register(server: WorkersServer, localpart: str) -> tuple[int, dict[str, Any]]:
    """`POST /register` through the user-interactive auth dance (dummy stage)."""
    body: dict[str, Any] = {"username": localpart, "password": "a long enough password 1"}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        first = c.post("/_matrix/client/v3/register", json=body)
        if first.status_code != 401 or "session" not in first.json():
            return first.status_code, first.json()
        resp = c.post("/_matrix/client/v3/register", json={
            **body, "auth": {"type": "m.login.dummy", "session": first.json()["session"]}})
    return resp.status_code, resp.json()


@pytest.mark.parametrize("entry", ["nginx", "client1", "client2"])
def test_registration_is_refused_on_every_client_worker(workers: WorkersServer,
                                                        entry: str) -> None:
    # Registration is open in this layout's config (test only); the identity module on the
    # worker that serves the request must still refuse it before an account exists.
    server = workers if entry == "nginx" else workers.via(entry)
    localpart = f"walkin-{entry}"
    status, body = _register(server, localpart)
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    assert "created by HR" in body["error"]  # the identity module's refusal, not the config
    with workers.admin() as c:
        resp = c.get(f"/_synapse/admin/v2/users/{quote(workers.mxid(localpart))}")
    assert resp.status_code == 404, resp.text
    assert workers.sql("SELECT name FROM users WHERE name = %s",
                       (workers.mxid(localpart),)) == []


def test_batched_memberships_on_main_and_on_a_client_worker_go_through_the_persister(
        workers: WorkersServer) -> None:
    """The room sync's batch (synapse_modules.members_batch) is written by the event
    persister wherever it is asked: the chain is handed on like any event."""
    jorg, zoe = (workers.create_user(displayname=n) for n in ("Jörg Ölmann", "Zoë Ærø"))
    with workers.admin() as c:  # the main process, as the provisioner calls it
        room = c.post("/_matrix/client/v3/createRoom", json={
            "preset": "private_chat", "name": "Werk Nord"}).json()["room_id"]
        on_main = c.post(BATCH_PATH, json={"room_id": room, "user_ids": [jorg.user_id]})
    with workers.via("client1").client(workers.admin_token) as c:
        on_worker = c.post(BATCH_PATH, json={"room_id": room, "user_ids": [zoe.user_id]})

    assert on_main.json()["results"] == [{"user_id": jorg.user_id, "membership": "join"}]
    assert on_worker.json()["results"] == [{"user_id": zoe.user_id, "membership": "join"}]
    rows = workers.sql(
        "SELECT e.state_key, e.sender, e.instance_name FROM events AS e"
        " WHERE e.room_id = %s AND e.type = 'm.room.member' AND e.state_key <> %s"
        " ORDER BY e.stream_ordering", (room, workers.admin_user_id))
    assert rows == [(jorg.user_id, workers.admin_user_id, "persister1"),
                    (jorg.user_id, jorg.user_id, "persister1"),
                    (zoe.user_id, workers.admin_user_id, "persister1"),
                    (zoe.user_id, zoe.user_id, "persister1")]
    with workers.client(zoe.token) as c:
        joined = c.get(f"/_matrix/client/v3/rooms/{quote(room)}/joined_members").json()
    assert sorted(joined["joined"]) == sorted([workers.admin_user_id, jorg.user_id,
                                               zoe.user_id])
