"""What docs/clients.md says the server offers, checked against the real hardened Synapse:
the spec versions clients look for (authenticated media is Matrix v1.11), simplified
sliding sync (what Element X needs), room version 12 as the default, and the legacy
unauthenticated media endpoints closed (why old clients show no files)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.harness.synapse_server import SynapseServer

pytestmark = pytest.mark.integration

SSS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


def test_what_clients_need_from_the_server(synapse: SynapseServer) -> None:
    user = synapse.create_user(displayname="Clara Client")
    room_id = synapse.create_room(user, name="Kaffeeküche")
    with synapse.client() as anonymous:
        versions = anonymous.get("/_matrix/client/versions").json()["versions"]
    with synapse.client(user.token) as c:
        sliding = c.post(SSS, json={"lists": {"all": {
            "ranges": [[0, 10]], "timeline_limit": 1, "required_state": [["m.room.name", ""]]}}})
        capabilities = c.get("/_matrix/client/v3/capabilities").json()["capabilities"]
        upload = c.post("/_matrix/media/v3/upload", content=b"\x89PNG\r\n\x1a\n" + b"0" * 64,
                        headers={"Content-Type": "image/png"}, params={"filename": "a.png"})
    assert {"v1.11", "v1.12"} <= set(versions)  # v1.11: authenticated media
    assert sliding.status_code == 200, sliding.text
    assert room_id in sliding.json()["rooms"]
    assert capabilities["m.room_versions"]["default"] == "12"
    assert upload.status_code == 200, upload.text
    media_id = upload.json()["content_uri"].removeprefix(f"mxc://{synapse.server_name}/")
    path = f"{quote(synapse.server_name)}/{quote(media_id)}"
    with synapse.client(user.token) as c:
        assert c.get(f"/_matrix/client/v1/media/download/{path}").status_code == 200
        # The legacy endpoints old clients use: closed, even with a valid token.
        assert c.get(f"/_matrix/media/v3/download/{path}").status_code == 404
        assert c.get(f"/_matrix/media/r0/download/{path}").status_code == 404
