"""Each hardening line of `hauspost init`, tested by doing the forbidden thing for real.

The checks run against a Synapse with *no* modules, so each proves its config line on its
own (the policy modules are a second, separate layer). `test_line_matters` then starts a
Synapse with that one line removed (or, where Synapse's default is already safe, flipped)
and shows the same action now succeeds: a check that could not fail would fail there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.harness.synapse_server import SynapseServer, start_synapse


@dataclass(frozen=True)
class Check:
    name: str
    #: Does the hardened server refuse the forbidden action? (True = refused)
    refused: Callable[[SynapseServer], bool]
    #: How to weaken the config so that the action goes through.
    weaken: Callable[[dict[str, Any]], None]


def _upload(server: SynapseServer, token: str) -> str:
    with server.client(token) as c:
        resp = c.post("/_matrix/media/v3/upload", content=b"GIF89a-contract",
                      headers={"Content-Type": "image/gif"}, params={"filename": "c.gif"})
        resp.raise_for_status()
        return str(resp.json()["content_uri"]).removeprefix("mxc://")


def registration_refused(server: SynapseServer) -> bool:
    with server.client() as c:
        resp = c.post("/_matrix/client/v3/register", json={
            "username": server.unique("selfsignup"), "password": "pw-not-allowed-123",
            "auth": {"type": "m.login.dummy"}})
    return resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"


def guest_refused(server: SynapseServer) -> bool:
    with server.client() as c:
        resp = c.post("/_matrix/client/v3/register", params={"kind": "guest"}, json={})
    return resp.status_code == 403 and resp.json()["error"] == "Guest access is disabled"


def federation_refused(server: SynapseServer) -> bool:
    with server.client() as c:
        version = c.get("/_matrix/federation/v1/version")
        keys = c.get("/_matrix/key/v2/server")
    return version.status_code == 404 and keys.status_code == 404


def profile_needs_auth(server: SynapseServer) -> bool:
    user = server.create_user()
    with server.client() as c:
        resp = c.get(f"/_matrix/client/v3/profile/{quote(user.user_id)}")
    return resp.status_code == 401 and resp.json()["errcode"] == "M_MISSING_TOKEN"


def profile_needs_shared_room(server: SynapseServer) -> bool:
    stranger, other = server.create_user(), server.create_user()
    with server.client(stranger.token) as c:
        resp = c.get(f"/_matrix/client/v3/profile/{quote(other.user_id)}")
    return resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"


def media_needs_auth(server: SynapseServer) -> bool:
    owner = server.create_user()
    media = _upload(server, owner.token)
    with server.client() as c:
        authenticated_path = c.get(f"/_matrix/client/v1/media/download/{media}")
        legacy = c.get(f"/_matrix/media/v3/download/{media}")
    return authenticated_path.status_code == 401 and legacy.status_code == 404


def room_is_encrypted(server: SynapseServer) -> bool:
    user = server.create_user()
    room_id = server.create_room(user, preset="private_chat")  # no initial_state at all
    state = server.room_state(room_id)
    encryption = [e for e in state if e["type"] == "m.room.encryption"]
    return len(encryption) == 1 and encryption[0]["content"]["algorithm"] == "m.megolm.v1.aes-sha2"


def url_preview_refused(server: SynapseServer) -> bool:
    user = server.create_user()
    with server.client(user.token) as c:
        resp = c.get("/_matrix/client/v1/media/preview_url",
                     params={"url": f"{server.url}/_matrix/client/versions"})
    return resp.status_code == 404 and resp.json()["errcode"] == "M_UNRECOGNIZED"


def displayname_change_refused(server: SynapseServer) -> bool:
    user = server.create_user()
    with server.client(user.token) as c:
        resp = c.put(f"/_matrix/client/v3/profile/{quote(user.user_id)}/displayname",
                     json={"displayname": "The CEO"})
    return resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"


def avatar_change_refused(server: SynapseServer) -> bool:
    # Synapse lets a user set a *first* avatar even with the line in place; HR sets it first.
    user = server.create_user()
    with server.admin() as c:
        c.put(f"/_synapse/admin/v2/users/{quote(user.user_id)}",
              json={"avatar_url": "mxc://hauspost.test/hr-photo"}).raise_for_status()
    with server.client(user.token) as c:
        resp = c.put(f"/_matrix/client/v3/profile/{quote(user.user_id)}/avatar_url",
                     json={"avatar_url": "mxc://evil.example/abc"})
    return resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"


def threepid_change_refused(server: SynapseServer) -> bool:
    user = server.create_user()
    with server.client(user.token) as c:
        resp = c.post("/_matrix/client/v3/account/3pid/email/requestToken",
                      json={"client_secret": "abcdef123", "email": "me@private.example",
                            "send_attempt": 1})
    return resp.status_code in (400, 403) and resp.json()["errcode"] in (
        "M_FORBIDDEN", "M_THREEPID_DENIED", "M_UNRECOGNIZED")


def room_directory_publish_refused(server: SynapseServer) -> bool:
    user = server.create_user()
    room_id = server.create_room(user, preset="private_chat")
    with server.client(user.token) as c:
        resp = c.put(f"/_matrix/client/v3/directory/list/room/{quote(room_id)}",
                     json={"visibility": "public"})
    return resp.status_code == 403 and resp.json()["error"] == "Not allowed to publish room"


def public_room_list_needs_auth(server: SynapseServer) -> bool:
    with server.client() as c:
        resp = c.get("/_matrix/client/v3/publicRooms")
    return resp.status_code == 401


class _PushGateway(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        import json

        length = int(self.headers.get("Content-Length", "0"))
        type(self).received.append(json.loads(self.rfile.read(length)))
        body = b'{"rejected": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def push_without_content(server: SynapseServer) -> bool:
    """A real HTTP pusher on loopback receives the notification; it must carry no text."""
    gateway = HTTPServer(("127.0.0.1", 0), _PushGateway)
    _PushGateway.received = []
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        sender, receiver = server.create_user(), server.create_user()
        url = f"http://127.0.0.1:{gateway.server_port}/_matrix/push/v1/notify"
        with server.client(receiver.token) as c:
            c.post("/_matrix/client/v3/pushers/set", json={
                "kind": "http", "app_id": "com.example.test", "app_display_name": "t",
                "device_display_name": "phone", "pushkey": server.unique("pushkey"),
                "lang": "de", "data": {"url": url}}).raise_for_status()
        room_id = server.create_room(sender, is_direct=True, invite=[receiver.user_id],
                                     initial_state=[])
        assert server.join(receiver, room_id).status_code == 200
        secret_text = "Gehaltsliste Q3 im Anhang"
        with server.client(sender.token) as c:
            c.put(f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/t1",
                  json={"msgtype": "m.text", "body": secret_text}).raise_for_status()
        deadline = 100
        while deadline and not any(n["notification"].get("type") == "m.room.message"
                                   or n["notification"].get("type") == "m.room.encrypted"
                                   for n in _PushGateway.received):
            threading.Event().wait(0.1)
            deadline -= 1
        messages = [n["notification"] for n in _PushGateway.received
                    if n["notification"].get("event_id")]
        if not messages:
            raise AssertionError("the push gateway received no notification at all")
        return all("content" not in n and secret_text not in str(n) for n in messages)
    finally:
        gateway.shutdown()


def _drop(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        for key in keys:
            config.pop(key)
    return edit


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config.update(values)
    return edit


def _add_federation(config: dict[str, Any]) -> None:
    config["listeners"][0]["resources"][0]["names"] = ["client", "federation", "keys"]


CHECKS = [
    # Synapse's default is already "off" for registration and guests: flip to show the test bites.
    Check("registration", registration_refused,
          _set(enable_registration=True, enable_registration_without_verification=True)),
    Check("guest access", guest_refused, _set(allow_guest_access=True)),
    Check("federation listener", federation_refused, _add_federation),
    # limit_profile_requests_to_users_who_share_rooms implies auth, so both lines must go.
    Check("profile needs auth", profile_needs_auth,
          _drop("require_auth_for_profile_requests",
                "limit_profile_requests_to_users_who_share_rooms")),
    Check("profile needs a shared room", profile_needs_shared_room,
          _drop("limit_profile_requests_to_users_who_share_rooms")),
    Check("authenticated media", media_needs_auth, _set(enable_authenticated_media=False)),
    Check("encrypted by default", room_is_encrypted,
          _drop("encryption_enabled_by_default_for_room_type")),
    Check("URL previews", url_preview_refused,
          _set(url_preview_enabled=True, url_preview_ip_range_blacklist=["10.0.0.0/8"])),
    Check("display name", displayname_change_refused, _drop("enable_set_displayname")),
    Check("avatar", avatar_change_refused, _drop("enable_set_avatar_url")),
    Check("3pid changes", threepid_change_refused, _drop("enable_3pid_changes")),
    # Synapse 1.163's defaults already deny these two; flipped to show the checks bite.
    Check("room directory", room_directory_publish_refused,
          _set(room_list_publication_rules=[{"action": "allow"}])),
    Check("public room list", public_room_list_needs_auth,
          _set(allow_public_rooms_without_auth=True)),
    Check("push content", push_without_content, _drop("push")),
]


# Test only: let Synapse's pusher reach the fake push gateway on loopback.
LOOPBACK_PUSH = {"ip_range_whitelist": ["127.0.0.1"]}


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = start_synapse(tmp_path_factory.mktemp("hardened"), modules=[],
                           extra_config=LOOPBACK_PUSH)
    yield server
    server.stop()


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_hardened_server_refuses(hardened: SynapseServer, check: Check) -> None:
    assert check.refused(hardened) is True, f"{check.name}: the forbidden action went through"


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_line_matters(tmp_path: Path, check: Check) -> None:
    """With the hardening line gone, the same forbidden action succeeds."""
    server = start_synapse(tmp_path, modules=[], edit=check.weaken, extra_config=LOOPBACK_PUSH)
    try:
        assert check.refused(server) is False
    finally:
        server.stop()


def test_versions_answer(hardened: SynapseServer) -> None:
    resp = httpx.get(hardened.url + "/_matrix/client/versions")
    assert resp.status_code == 200
    assert "v1.11" in resp.json()["versions"]
