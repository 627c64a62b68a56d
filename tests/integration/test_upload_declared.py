"""A file *declared* as a program or script is refused even when its bytes look harmless,
and the upload limits are visible to clients (issue "Holds under attack", item 4).

Both upload paths (`POST /_matrix/media/v3/upload` and the async `POST /v1/create` + `PUT
/v3/upload/{server}/{id}`) against a real Synapse with the media gate."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.harness.synapse_server import SynapseServer, TestUser

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
TEXT = "Rechnung Nr. 4711 – bitte bis Freitag überweisen.\n".encode()


def upload(server: SynapseServer, user: TestUser, body: bytes, content_type: str,
           filename: str | None, *, asynchronous: bool) -> httpx.Response:
    params = {"filename": filename} if filename else {}
    headers = {"Content-Type": content_type}
    with server.client(user.token) as c:
        if not asynchronous:
            return c.post("/_matrix/media/v3/upload", content=body, headers=headers,
                          params=params)
        created = c.post("/_matrix/media/v1/create")
        assert created.status_code == 200, created.text
        media_id = created.json()["content_uri"].rsplit("/", 1)[1]
        return c.put(f"/_matrix/media/v3/upload/{quote(server.server_name)}/{quote(media_id)}",
                     content=body, headers=headers, params=params)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["upload", "create+put"])
@pytest.mark.parametrize(("body", "content_type", "filename", "refused"), [
    (PNG, "image/png", "foto.png", None),
    (TEXT, "text/plain", "rechnung.txt", None),
    (PNG, "application/x-msdownload", "foto.png", "declared as application/x-msdownload"),
    (TEXT, "application/x-sh; charset=utf-8", "notiz.txt", "declared as application/x-sh"),
    (PNG, "image/png", "rechnung.pdf.exe", "named *.exe"),
    (TEXT, "text/plain", "START.BAT", "named *.bat"),
    (TEXT, "text/plain", "setup.ps1. ", "named *.ps1"),
], ids=["png", "text", "png-declared-exe", "text-declared-sh", "double-extension",
        "batch-uppercase", "trailing-dot"])
def test_declared_programs_are_refused(synapse: SynapseServer, asynchronous: bool, body: bytes,
                                       content_type: str, filename: str,
                                       refused: str | None) -> None:
    user = synapse.create_user()
    resp = upload(synapse, user, body, content_type, filename, asynchronous=asynchronous)
    if refused is None:
        assert resp.status_code == 200, resp.text
    else:
        assert resp.status_code == 403, resp.text
        assert resp.json()["errcode"] == "M_FORBIDDEN"
        assert refused in resp.json()["error"]


def test_the_limits_are_visible_to_clients(synapse: SynapseServer) -> None:
    user = synapse.create_user()
    with synapse.client(user.token) as c:
        config = c.get("/_matrix/client/v1/media/config").json()
    assert config["m.upload.size"] == 50 * 1024 * 1024
    assert "application/octet-stream" in config["de.hauspost.upload.allowed_types"]
    assert {"exe", "bat", "sh", "ps1", "apk"} <= set(config["de.hauspost.upload.refused_extensions"])
