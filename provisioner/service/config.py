"""The `service:` section of hauspost.yaml: how `hauspost serve` listens and what it runs.

    service:
      listen: 127.0.0.1:8090          # behind the TLS reverse proxy (docs/hr-push.md)
      public_url: https://chat.example.com   # optional: the URL clients see (SCIM locations)
      scim:
        token_file: keys/scim_token   # bearer token of the HR system (one line)
        client_name: hr               # audit actor: scim:hr
      webhook:
        secret_file: keys/hr_webhook_secret  # shared HMAC secret; leave out: no webhook
        replay_window_seconds: 300
      sync_interval_minutes: 0        # periodic directory sync; 0 = off
      retry_max_seconds: 300          # longest wait between two tries of a queued change

Validated once here; unknown keys are errors naming the key path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from provisioner.validation import Section

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class ScimSettings:
    token_file: Path
    client_name: str = "hr"

    @property
    def actor(self) -> str:
        return f"scim:{self.client_name}"


@dataclass(frozen=True)
class WebhookSettings:
    secret_file: Path
    replay_window_seconds: int = 300
    client_name: str = "hr-webhook"

    @property
    def actor(self) -> str:
        return f"webhook:{self.client_name}"


@dataclass(frozen=True)
class ServiceSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str | None = None
    scim: ScimSettings | None = None
    webhook: WebhookSettings | None = None
    #: 0: no periodic directory sync.
    sync_interval_seconds: int = 0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    #: How often leave dates and announcement reminders are checked.
    tick_seconds: float = 60.0


def _abs(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def parse_listen(section: Section, value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise section.error("listen", f"expected HOST:PORT such as 127.0.0.1:8090, got {value!r}")
    return host.strip("[]"), int(port_text)


def _client_name(section: Section, default: str) -> str:
    name: str = section.str("client_name", default)
    if not _CLIENT_NAME.match(name):
        raise section.error("client_name", "expected 1-64 letters, digits, '.', '_' or '-', "
                                           f"got {name!r}")
    return name


def parse_service(section: Section | None, base: Path) -> ServiceSettings:
    """Parse `service:`; without the section the SCIM token is read from keys/scim_token."""
    default_token = base / "keys" / "scim_token"
    if section is None:
        return ServiceSettings(scim=ScimSettings(token_file=default_token))
    host, port = parse_listen(section, section.str("listen", f"{DEFAULT_HOST}:{DEFAULT_PORT}"))
    public_url = section.str("public_url")
    if public_url is not None and not public_url.startswith(("https://", "http://")):
        raise section.error("public_url", f"expected an https:// URL, got {public_url!r}")
    scim: ScimSettings | None = ScimSettings(token_file=default_token)
    scim_section = section.section("scim")
    if scim_section is not None:
        if scim_section.has("token"):
            raise scim_section.error("token", "secrets are not allowed inline; use token_file")
        enabled = scim_section.bool("enabled", True)
        token_file = _abs(base, scim_section.str("token_file", "keys/scim_token"))
        name = _client_name(scim_section, "hr")
        scim_section.done()
        scim = ScimSettings(token_file=token_file, client_name=name) if enabled else None
    webhook: WebhookSettings | None = None
    hook_section = section.section("webhook")
    if hook_section is not None:
        if hook_section.has("secret"):
            raise hook_section.error("secret", "secrets are not allowed inline; use secret_file")
        secret_file = hook_section.str("secret_file", required=True)
        window = hook_section.int("replay_window_seconds", 300, minimum=10, maximum=3600)
        name = _client_name(hook_section, "hr-webhook")
        hook_section.done()
        webhook = WebhookSettings(secret_file=_abs(base, secret_file),
                                  replay_window_seconds=window, client_name=name)
    interval = section.int("sync_interval_minutes", 0, minimum=0, maximum=7 * 24 * 60)
    retry_max = section.float("retry_max_seconds", 300.0)
    if not 0.1 <= retry_max <= 86400:
        raise section.error("retry_max_seconds", f"expected 0.1 to 86400 seconds, got {retry_max}")
    tick = section.float("tick_seconds", 60.0)
    if not 0.1 <= tick <= 3600:
        raise section.error("tick_seconds", f"expected 0.1 to 3600 seconds, got {tick}")
    section.done()
    return ServiceSettings(host=host, port=port,
                           public_url=public_url.rstrip("/") if public_url else None,
                           scim=scim, webhook=webhook, sync_interval_seconds=interval * 60,
                           retry_base_seconds=min(1.0, retry_max), retry_max_seconds=retry_max,
                           tick_seconds=tick)
