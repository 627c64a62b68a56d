"""A leaver has no session left, whoever opened it (issue "Holds under attack", item 2).

Tried as an attacker with admin power would: a token obtained on the person's behalf
through the admin API's login-as before the offboarding, the same after it, and the
deactivation made directly in Synapse instead of through `hauspost`. Real Synapse with our
modules; `hauspost offboard` is the real command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.harness.synapse_server import SynapseServer, TestUser

pytestmark = pytest.mark.integration

HAUSPOST = str(Path(sys.executable).parent / "hauspost")


def login_as(server: SynapseServer, user_id: str) -> httpx.Response:
    with server.admin() as c:
        return c.post(f"/_synapse/admin/v1/users/{quote(user_id)}/login", json={})


def whoami(server: SynapseServer, token: str) -> httpx.Response:
    with server.client(token) as c:
        return c.get("/_matrix/client/v3/account/whoami")


def sessions_of(server: SynapseServer, user: TestUser) -> dict[str, str]:
    """The person's own token, one from the admin's login-as, and one more login-as."""
    tokens = {"own": user.token}
    for name in ("login-as", "second login-as"):
        resp = login_as(server, user.user_id)
        assert resp.status_code == 200, resp.text
        tokens[name] = resp.json()["access_token"]
    for name, token in tokens.items():
        assert whoami(server, token).json()["user_id"] == user.user_id, name
    return tokens


def assert_all_dead(server: SynapseServer, tokens: dict[str, str]) -> None:
    for name, token in tokens.items():
        resp = whoami(server, token)
        assert resp.status_code == 401, (name, resp.text)
        assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN", name


def test_hauspost_offboard_ends_tokens_the_admin_opened(synapse: SynapseServer) -> None:
    user = synapse.create_user()
    tokens = sessions_of(synapse, user)

    done = subprocess.run([HAUSPOST, "offboard", "-d", str(synapse.data_dir), user.user_id,
                           "--reason", "test", "--no-wait"], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "HAUSPOST_ACTOR": "t@t"})

    assert done.returncode == 0, done.stderr
    assert_all_dead(synapse, tokens)


def test_a_deactivation_made_directly_in_synapse_ends_them_too(synapse: SynapseServer) -> None:
    user = synapse.create_user()
    tokens = sessions_of(synapse, user)

    with synapse.admin() as c:
        resp = c.post(f"/_synapse/admin/v1/deactivate/{quote(user.user_id)}", json={})
    assert resp.status_code == 200, resp.text

    assert_all_dead(synapse, tokens)


def test_no_new_session_for_a_deactivated_account(synapse: SynapseServer) -> None:
    user = synapse.create_user()
    with synapse.admin() as c:
        assert c.post(f"/_synapse/admin/v1/deactivate/{quote(user.user_id)}",
                      json={}).status_code == 200

    as_leaver = login_as(synapse, user.user_id)
    password = synapse.login(user.user_id, user.password)

    assert as_leaver.status_code == 403, as_leaver.text
    assert as_leaver.json() == {
        "errcode": "M_USER_DEACTIVATED",
        "error": "This account has been deactivated: no new session can be opened for it."}
    assert password.status_code == 403, password.text


def test_active_colleagues_keep_their_sessions(synapse: SynapseServer) -> None:
    leaver, colleague = synapse.create_user(), synapse.create_user()
    kept = sessions_of(synapse, colleague)
    with synapse.admin() as c:
        assert c.post(f"/_synapse/admin/v1/deactivate/{quote(leaver.user_id)}",
                      json={}).status_code == 200
    for name, token in kept.items():
        assert whoami(synapse, token).status_code == 200, name
