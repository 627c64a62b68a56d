"""The `sync:` section of hauspost.yaml: defaults, limits, unknown keys, no inline secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import ConfigError
from provisioner.settings import parse_settings

BASE = {"server_name": "corp.test", "homeserver": {"url": "http://127.0.0.1:8008"}}


def parse(sync: object) -> object:
    return parse_settings({**BASE, "sync": sync}, Path("/etc/hauspost/hauspost.yaml")).sync


def test_defaults() -> None:
    s = parse_settings(BASE, Path("/etc/hauspost/hauspost.yaml")).sync
    assert (s.concurrency, s.guard_max_count, s.guard_max_share) == (8, 25, 0.10)
    assert s.protected_accounts == () and s.initial_password_file is None


def test_values() -> None:
    s = parse({"concurrency": 4, "guard": {"max_count": 5, "max_share": 0.3},
               "protected_accounts": ["@it:corp.test"],
               "initial_password_file": "keys/initial_password"})
    assert (s.concurrency, s.guard_max_count, s.guard_max_share) == (4, 5, 0.3)  # type: ignore[attr-defined]
    assert s.protected_accounts == ("@it:corp.test",)  # type: ignore[attr-defined]
    assert s.initial_password_file == Path("/etc/hauspost/keys/initial_password")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("sync", "key", "message"), [
    ({"concurrency": 0}, "sync.concurrency", "at least 1"),
    ({"concurrency": "8"}, "sync.concurrency", "expected an integer"),
    ({"guard": {"max_share": 10}}, "sync.guard.max_share", "between 0 and 1"),
    ({"guard": {"max_count": -1}}, "sync.guard.max_count", "at least 0"),
    ({"guard": {"maxcount": 3}}, "sync.guard.maxcount", "unknown key"),
    ({"protected_accounts": ["admin"]}, "sync.protected_accounts[0]", "Matrix ID"),
    ({"initial_password": "hunter2"}, "sync.initial_password", "not allowed inline"),
    ({"concurency": 8}, "sync.concurency", "unknown key"),
])
def test_errors_name_file_and_key(sync: object, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc_info:
        parse(sync)
    text = str(exc_info.value)
    assert text.startswith(f"/etc/hauspost/hauspost.yaml: {key}: ")
    assert message in text
