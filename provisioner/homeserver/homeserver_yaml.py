"""Render a hardened homeserver.yaml, Element's config.json and .well-known (pure: no I/O).

Every hardening line carries a one-line comment saying *why*; the tests in
tests/integration/test_hardening.py each do the forbidden thing against a running server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from provisioner.errors import ConfigError
from provisioner.homeserver.module_configs import ModuleEntry
from provisioner.policy.model import RetentionPolicy

#: Purge jobs: rooms kept at most this long are purged hourly, the others daily (a message
#: outlives its room's lifetime by at most one interval).
SHORT_LIFETIMES = "3d"


@dataclass(frozen=True)
class HomeserverOptions:
    server_name: str
    data_dir: Path
    bind_address: str = "127.0.0.1"
    port: int = 8008
    public_baseurl: str | None = None
    database_url: str | None = None  # None: SQLite in the data directory
    behind_proxy: bool = False
    max_upload_size: str = "50M"
    media_lifetime: str = "365d"  # delete local files this long after their last download
    modules: list[ModuleEntry] = field(default_factory=list)
    #: The room policy's retention section; None: messages are kept.
    retention: RetentionPolicy | None = None

    @property
    def baseurl(self) -> str:
        if self.public_baseurl:
            return self.public_baseurl.rstrip("/") + "/"
        return self.listener_url + "/"

    @property
    def listener_url(self) -> str:
        """Where processes on this host reach the client listener (and the admin API)."""
        host = self.bind_address if self.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        return f"http://{host}:{self.port}"


def y(value: Any) -> str:
    """A scalar as YAML (JSON is a YAML subset, so quoting is always right)."""
    return json.dumps(value)


def database_section(url: str | None, data_dir: Path) -> str:
    if url is None:
        return (
            "database:\n"
            "  name: sqlite3  # fine for a few hundred employees; use PostgreSQL beyond that\n"
            "  args:\n"
            f"    database: {y(str(data_dir / 'homeserver.db'))}\n"
        )
    parsed = urlparse(url)
    if parsed.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"expected a postgresql://user:password@host:port/dbname URL, got scheme {parsed.scheme!r}",
            key="--database-url",
        )
    if not parsed.path.strip("/"):
        raise ConfigError("the PostgreSQL URL names no database", key="--database-url")
    args: dict[str, Any] = {
        "database": parsed.path.lstrip("/"),
        "host": parsed.hostname or "localhost",
        "port": parsed.port or 5432,
        "cp_min": 5,
        "cp_max": 10,
    }
    if parsed.username:
        args["user"] = unquote(parsed.username)
    if parsed.password:
        args["password"] = unquote(parsed.password)
    lines = "".join(f"    {k}: {y(v)}\n" for k, v in args.items())
    return (
        "database:\n"
        "  name: psycopg2  # the database must use C collation (Synapse refuses others)\n"
        "  args:\n" + lines
    )


def retention_section(retention: RetentionPolicy | None) -> str:
    """Synapse's message retention from the room policy (policies/README.md, Retention)."""
    head = "# --- Message retention: from the room policy's `retention:` section. ---\n"
    if retention is None:
        return (head + "retention:\n"
                "  enabled: false  # the policy has no retention section: messages are kept\n")
    return head + f"""\
retention:
  enabled: true  # older messages are hidden from everyone, then purged from the database
  default_policy:  # every room without its own m.room.retention: direct and group chats too
    max_lifetime: {y(retention.default.text)}
  # Managed rooms carry m.room.retention from the policy (set and kept by `hauspost sync`);
  # a lifetime set by hand in any other room is held inside the policy's range when purged.
  allowed_lifetime_min: {y(retention.shortest.text)}
  allowed_lifetime_max: {y(retention.longest.text)}
  purge_jobs:  # Synapse runs these on the main process only (also with workers)
    - longest_max_lifetime: {y(SHORT_LIFETIMES)}
      interval: 1h
    - shortest_max_lifetime: {y(SHORT_LIFETIMES)}
      interval: 1d
"""


def modules_section(modules: list[ModuleEntry]) -> str:
    if not modules:
        return "modules: []\n"
    out = ["modules:\n"]
    for entry in modules:
        out.append(f"  # {entry.why}\n")
        body = yaml.safe_dump([{"module": entry.module, "config": entry.config}],
                              sort_keys=False, default_flow_style=False)
        out.extend("  " + line + "\n" for line in body.splitlines())
    return "".join(out)


def render_homeserver_yaml(opts: HomeserverOptions) -> str:
    d = opts.data_dir
    keys = d / "keys"
    return f"""\
# Hauspost: hardened Synapse configuration for {opts.server_name}.
# Written by `hauspost init`. Secrets live in keys/ (mode 0600), never in this file.
# Each hardening line says why in one line. Edit with care: the tests check each one.

server_name: {y(opts.server_name)}
public_baseurl: {y(opts.baseurl)}
pid_file: {y(str(d / 'homeserver.pid'))}
log_config: {y(str(d / 'log.config'))}
media_store_path: {y(str(d / 'media_store'))}
signing_key_path: {y(str(keys / 'signing.key'))}
macaroon_secret_key_path: {y(str(keys / 'macaroon_secret_key'))}
form_secret_path: {y(str(keys / 'form_secret'))}
# The provisioner registers its service account with this secret; nobody else can register.
registration_shared_secret_path: {y(str(keys / 'registration_shared_secret'))}
report_stats: false  # no usage statistics leave the company

listeners:
  - port: {opts.port}
    bind_addresses: [{y(opts.bind_address)}]  # loopback by default: put a TLS proxy in front
    type: http
    tls: false
    x_forwarded: {y(opts.behind_proxy)}  # trust X-Forwarded-For only behind our own proxy
    resources:
      - names: [client]  # client API only: no federation, no key server resource
        compress: false

{database_section(opts.database_url, d)}
# --- Federation: off. Nothing leaves the company, nothing comes in. ---
federation_domain_whitelist: []  # empty list = no remote server may talk to us
trusted_key_servers: []  # never ask matrix.org (or anyone) for signing keys
suppress_key_server_warning: true  # we deliberately have no key server
allow_profile_lookup_over_federation: false  # no profile data answered to other servers
allow_device_name_lookup_over_federation: false  # device names stay private
allow_public_rooms_over_federation: false  # the room list is not served to other servers

# --- Accounts: only the provisioner creates them (from HR / LDAP). ---
enable_registration: false  # nobody signs up on their own
allow_guest_access: false  # no anonymous guests
enable_3pid_changes: false  # e-mail addresses come from HR, not from users
enable_3pid_lookup: false  # never ask an identity server who owns an e-mail address
enable_set_displayname: false  # display names come from HR, not from users
enable_set_avatar_url: false  # avatars are managed centrally
allow_per_room_profiles: false  # no per-room name or avatar: HR's name holds in every room
password_config:
  localdb_enabled: true  # local passwords for the service account / demo; LDAP logins via the module
inhibit_user_in_use_error: false

# --- Logins: a whole office behind one NAT address signs in; guessing stays slow. ---
rc_login:
  address:  # every login from one address (an office NAT, the TLS proxy without X-Forwarded-For)
    per_second: 0.5
    burst_count: 300  # 300 colleagues at 8:00, then one every 2 s
  account:  # successful logins per account: a few devices, then one every 5.5 min
    per_second: 0.003
    burst_count: 5
  failed_attempts:  # wrong passwords per account: 5, then one every 10 s (even from many addresses)
    per_second: 0.1
    burst_count: 5

# --- Encryption: on for every room, whoever creates it. ---
encryption_enabled_by_default_for_room_type: all  # Element then hides the "encrypt" toggle

# --- Media: authenticated only, no link previews. ---
enable_authenticated_media: true  # every download needs a logged-in employee
url_preview_enabled: false  # the server never fetches URLs seen in chats
max_upload_size: {y(opts.max_upload_size)}
dynamic_thumbnails: false  # fixed thumbnail sizes only
remote_media_download_burst_count: 0  # no media from other servers
media_retention:
  remote_media_lifetime: 1d  # defence in depth: never keep remote media
  local_media_lifetime: {y(opts.media_lifetime)}  # files nobody opened for this long are deleted

{retention_section(opts.retention)}
# --- Push: notifications reveal nothing to Google / Apple. ---
push:
  include_content: false  # only "you have a message", never its text
  group_unread_count_by_room: false

# --- Profiles and directories: colleagues only. ---
require_auth_for_profile_requests: true  # no profile lookups without a login
limit_profile_requests_to_users_who_share_rooms: true  # only people you share a room with
include_profile_data_on_invite: false  # invites don't leak display names
allow_public_rooms_without_auth: false  # the room list needs a login
room_list_publication_rules:
  - action: deny  # no room is ever published to the directory
user_directory:
  enabled: true
  search_all_users: true  # find any colleague by name: this is the company directory
  prefer_local_users: true

{modules_section(opts.modules)}"""


def render_log_config(log_file: Path, level: str = "INFO") -> str:
    """Synapse's log config for one process (main or worker): a daily-rotated file."""
    return f"""\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.handlers.TimedRotatingFileHandler
    formatter: precise
    filename: {y(str(log_file))}
    when: midnight
    backupCount: 7
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: {level}
  handlers: [file]
disable_existing_loggers: false
"""


def render_element_config(server_name: str, baseurl: str) -> dict[str, Any]:
    """Element Web config.json: E2EE forced, features that leak data switched off."""
    return {
        "default_server_config": {
            "m.homeserver": {"base_url": baseurl.rstrip("/"), "server_name": server_name}
        },
        "disable_custom_urls": True,
        "disable_guests": True,
        "disable_3pid_login": True,
        "brand": "Hauspost",
        "default_theme": "light",
        "room_directory": {"servers": [server_name]},
        "show_labs_settings": False,
        "integrations_ui_url": None,
        "integrations_rest_url": None,
        "integrations_widgets_urls": [],
        "map_style_url": None,
        "bug_report_endpoint_url": None,
        "uisi_autorageshake_app": None,
        "jitsi": None,
        "element_call": {"use_exclusively": False},
        "setting_defaults": {
            "UIFeature.urlPreviews": False,  # no link previews (server has them off, too)
            "UIFeature.locationSharing": False,  # no live locations to a third-party map
            "UIFeature.shareSocial": False,  # no "share to Facebook/X" buttons
            "UIFeature.shareQRCode": False,
            "UIFeature.allowCreatingPublicRooms": False,  # server refuses them anyway
            "UIFeature.thirdPartyId": False,  # no e-mail/phone invites
            "UIFeature.registration": False,
            "UIFeature.passwordReset": False,
            "UIFeature.deactivate": False,  # HR deactivates, not the user
            "UIFeature.identityServer": False,  # no lookups at vector.im
            "UIFeature.feedback": False,  # nothing sent to element.io
            "UIFeature.widgets": False,  # no third-party widgets in rooms
            "UIFeature.voip": True,
            "showImages": True,
            "urlPreviewsEnabled": False,
            "urlPreviewsEnabled_e2ee": False,
            "sendReadReceipts": True,
        },
        "features": {},
        "io.element.e2ee": {"default": True, "force_disable": False,
                            "secure_backup_required": True},
    }


def render_well_known_client(baseurl: str) -> dict[str, Any]:
    """`.well-known/matrix/client`: Element and Element X find the server and force E2EE."""
    return {
        "m.homeserver": {"base_url": baseurl.rstrip("/")},
        "io.element.e2ee": {
            "default": True,  # every new room is encrypted
            "force_disable": False,  # users can't turn it off in the UI
            "secure_backup_required": True,  # keys are backed up, so a new phone can read history
        },
    }
