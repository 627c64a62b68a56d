"""Session fixtures: a real Synapse with our modules, a real slapd, both on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.slapd_server import SlapdMissingError, SlapdServer, start_slapd
from tests.harness.synapse_server import SynapseServer, start_synapse


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration is an integration test; the rest is unit.
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
        elif not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """One Synapse for the session, configured exactly as `hauspost init` does."""
    server = start_synapse(tmp_path_factory.mktemp("synapse"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    try:
        server = start_slapd(tmp_path_factory.mktemp("slapd"))
    except SlapdMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
