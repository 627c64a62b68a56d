"""The Monday-morning rush behind one office NAT (issue "Holds under attack", item 3).

A Synapse with exactly the login limits `hauspost init` writes (the suite's usual test
relaxation undone): 300 different employees sign in from one address in a burst and all
get in; a burst of wrong passwords against one account is slowed with 429, and the right
password works again once the limiter allows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from provisioner.homeserver.homeserver_yaml import HomeserverOptions, render_homeserver_yaml
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, start_synapse

pytestmark = pytest.mark.integration

OFFICE = 300


def init_login_limits() -> dict[str, Any]:
    rendered = yaml.safe_load(render_homeserver_yaml(
        HomeserverOptions(server_name="x.test", data_dir=Path("/nonexistent"))))
    limits: dict[str, Any] = rendered["rc_login"]
    return limits


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    def production_login_limits(config: dict[str, Any]) -> None:
        config["rc_login"] = init_login_limits()

    server = start_synapse(tmp_path_factory.mktemp("office"), edit=production_login_limits)
    yield server
    server.stop()


def create_accounts(server: SynapseServer, localparts: list[str]) -> None:
    """Through the admin API only: no login spent before the rush."""
    def create(localpart: str) -> int:
        with server.admin() as c:
            return c.put(f"/_synapse/admin/v2/users/{quote(server.mxid(localpart))}",
                         json={"password": TEST_PASSWORD, "displayname": localpart}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(create, localparts)) == {201}


def login(server: SynapseServer, localpart: str, password: str = TEST_PASSWORD) -> httpx.Response:
    return server.login(server.mxid(localpart), password, device_name="Montag 8:00")


def test_a_whole_office_signs_in_at_eight(office: SynapseServer) -> None:
    staff = [f"mitarbeiter{i:03d}" for i in range(OFFICE)]
    create_accounts(office, staff)

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda lp: login(office, lp).status_code, staff))

    assert codes.count(200) == OFFICE, {c: codes.count(c) for c in set(codes)}


def test_guessing_one_password_is_slowed_and_the_owner_gets_in_afterwards(
        office: SynapseServer) -> None:
    create_accounts(office, ["zielperson"])
    wrong = [login(office, "zielperson", f"rate{i}") for i in range(6)]

    assert [r.status_code for r in wrong] == [403] * 5 + [429]
    assert wrong[-1].json()["errcode"] == "M_LIMIT_EXCEEDED"
    retry_ms = wrong[-1].json()["retry_after_ms"]
    assert 0 < retry_ms <= 10_000
    assert login(office, "zielperson").status_code == 429  # still limited, even if right
    time.sleep(retry_ms / 1000 + 0.5)
    right = login(office, "zielperson")
    assert right.status_code == 200, right.text
