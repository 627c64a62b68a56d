"""The `service:` section: defaults, every key, and errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import ConfigError
from provisioner.settings import parse_settings

BASE: dict[str, Any] = {"server_name": "corp.test", "homeserver": {"url": "http://127.0.0.1:8008"}}
FILE = Path("/srv/hauspost/hauspost.yaml")


def _parse(service: Any) -> Any:
    data = dict(BASE)
    if service is not None:
        data["service"] = service
    return parse_settings(data, FILE).service


def test_defaults() -> None:
    service = _parse(None)
    assert (service.host, service.port, service.webhook, service.sync_interval_seconds) == (
        "127.0.0.1", 8090, None, 0)
    assert service.scim.token_file == Path("/srv/hauspost/keys/scim_token")
    assert service.scim.actor == "scim:hr"


def test_every_key() -> None:
    service = _parse({"listen": "127.0.0.1:9443", "public_url": "https://chat.corp.test/",
                      "scim": {"token_file": "/etc/hauspost/scim", "client_name": "entra"},
                      "webhook": {"secret_file": "keys/hook", "replay_window_seconds": 120,
                                  "client_name": "personio"},
                      "sync_interval_minutes": 60, "retry_max_seconds": 30, "tick_seconds": 5})
    assert (service.host, service.port, service.public_url) == (
        "127.0.0.1", 9443, "https://chat.corp.test")
    assert (service.scim.token_file, service.scim.actor) == (Path("/etc/hauspost/scim"),
                                                             "scim:entra")
    assert (service.webhook.secret_file, service.webhook.replay_window_seconds,
            service.webhook.actor) == (Path("/srv/hauspost/keys/hook"), 120, "webhook:personio")
    assert (service.sync_interval_seconds, service.retry_max_seconds, service.tick_seconds) == (
        3600, 30.0, 5.0)


def test_scim_can_be_switched_off() -> None:
    assert _parse({"scim": {"enabled": False}}).scim is None


@pytest.mark.parametrize(("service", "key", "message"), [
    ({"listen": "8090"}, "service.listen", "expected HOST:PORT"),
    ({"listen": "127.0.0.1:99999"}, "service.listen", "expected HOST:PORT"),
    ({"listne": "127.0.0.1:1"}, "service.listne", "unknown key"),
    ({"scim": {"token": "inline"}}, "service.scim.token", "not allowed inline"),
    ({"scim": {"client_name": "bad name"}}, "service.scim.client_name", "expected 1-64"),
    ({"webhook": {}}, "service.webhook.secret_file", "is required"),
    ({"webhook": {"secret": "x"}}, "service.webhook.secret", "not allowed inline"),
    ({"webhook": {"secret_file": "k", "replay_window_seconds": 5}},
     "service.webhook.replay_window_seconds", "at least 10"),
    ({"sync_interval_minutes": -1}, "service.sync_interval_minutes", "at least 0"),
    ({"retry_max_seconds": 0}, "service.retry_max_seconds", "expected 0.1 to 86400"),
    ({"public_url": "chat.corp.test"}, "service.public_url", "expected an https:// URL"),
])
def test_errors_name_file_and_key(service: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(service)
    assert str(info.value).startswith(f"{FILE}: {key}: ")
    assert message in str(info.value)
