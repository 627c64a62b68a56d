"""Element's own SDK in the suite (issue "A new user's first hour").

matrix-js-sdk with its Rust crypto — the library inside Element Web and Desktop — run by
the machine's Node.js against the session's real Synapse with our modules: two employees
sign in with their passwords, one sends an encrypted message and an encrypted attachment,
the other decrypts both (the attachment through the authenticated media endpoint); a
plaintext send and a message into the company space (and into a space of one's own) are
refused with the error the SDK hands a user. `tests/js/` pins the SDK in a lockfile;
`./dev test` installs it with `npm ci`.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer

pytestmark = pytest.mark.integration

JS = Path(__file__).resolve().parents[1] / "js"
TEXT = "Vertraulich: Quartalszahlen für Müller & Söhne 📈"
# A real (tiny) PDF's bytes, so the "file" is what an employee would attach.
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]"
       b"/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n") + bytes(range(256)) * 40


def run_element_sdk(config: dict[str, object]) -> dict[str, object]:
    node = shutil.which("node")
    assert node is not None, "Node.js is missing: ./dev test installs what the suite needs"
    assert (JS / "node_modules" / "matrix-js-sdk").is_dir(), \
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` (./dev test does)"
    proc = subprocess.run([node, str(JS / "element_sdk_e2ee.mjs"), json.dumps(config)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_element_sdk_end_to_end(synapse: SynapseServer) -> None:
    alice = synapse.create_user(displayname="Alice Sdk")
    bob = synapse.create_user(displayname="Bob Sdk")
    # The company space, as the sync makes it: alice is a member.
    with synapse.admin() as admin:
        resp = admin.post("/_matrix/client/v3/createRoom", json={
            "preset": "private_chat", "name": "Muster GmbH", "invite": [alice.user_id],
            "creation_content": {"type": "m.space"}})
        assert resp.status_code == 200, resp.text
        space_id = resp.json()["room_id"]
    assert synapse.join(alice, space_id).status_code == 200

    result = run_element_sdk({
        "baseUrl": synapse.url,
        "alice": {"user": alice.user_id, "password": TEST_PASSWORD},
        "bob": {"user": bob.user_id, "password": TEST_PASSWORD},
        "spaceId": space_id, "text": TEXT,
        "fileBase64": base64.b64encode(PDF).decode(),
    })

    assert result["roomEncrypted"] is True
    assert result["text"] == TEXT
    assert result["textWasEncrypted"] is True
    assert result["downloadPath"] == "/_matrix/client/v1/media/download/"
    assert result["downloadStatus"] == 200
    assert base64.b64decode(str(result["fileBase64"])) == PDF
    assert result["unauthenticatedStatus"] == 401
    assert result["plaintext"] == {
        "status": 403, "errcode": "M_FORBIDDEN",
        "error": "Unencrypted m.room.message events are refused: this room is end-to-end "
                 "encrypted. Use an app with encryption switched on (Element, Element X)."}
    for where in ("space", "ownSpace"):
        refused = result[where]
        assert refused == {
            "status": 403, "errcode": "M_FORBIDDEN",
            "error": "A space lists rooms and holds no messages (most apps never show them). "
                     "Please write in one of its rooms."}, (where, refused)
