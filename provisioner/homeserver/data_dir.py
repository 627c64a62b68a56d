"""`hauspost init`: lay out a data directory with a hardened homeserver config and secrets.

Keys and secrets are generated once and never overwritten; config files are rewritten
(the previous version is kept as `<name>.bak` when it differs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from provisioner.directory.config import default_source_options
from provisioner.duration import duration_ms
from provisioner.errors import ConfigError, EnvironmentProblemError
from provisioner.homeserver.homeserver_yaml import (
    HomeserverOptions,
    render_element_config,
    render_homeserver_yaml,
    render_log_config,
    render_well_known_client,
)
from provisioner.homeserver.module_configs import default_modules
from provisioner.homeserver.workers import (
    REPLICATION_SECRET_FILE,
    Hosts,
    WorkerLayout,
    parse_redis_url,
    pin_singleton_jobs,
    plan_layout,
    render_layout,
)
from provisioner.policy import load_policies
from provisioner.policy.model import RetentionPolicy
from provisioner.private_files import write_private
from provisioner.servername import validate_server_name
from provisioner.settings import SETTINGS_FILE, LdapSettings, Settings, parse_settings

logger = logging.getLogger(__name__)

SECRET_FILES = ("macaroon_secret_key", "form_secret", "registration_shared_secret")


@dataclass(frozen=True)
class InitRequest:
    server_name: str
    data_dir: Path
    bind_address: str = "127.0.0.1"
    port: int = 8008
    public_baseurl: str | None = None
    database_url: str | None = None
    behind_proxy: bool = False
    media_lifetime: str = "365d"  # DEFAULT_MEDIA_LIFETIME; the policy's retention.media decides
    service_localpart: str = "hauspost"
    ldap: LdapSettings | None = None
    #: Further hauspost.yaml sections (the demo's directory, sync and policies).
    extra_settings: Mapping[str, object] | None = None
    # Worker layout (provisioner/homeserver/workers.py): 0 = one process.
    workers: int = 0
    worker_base_port: int = 8100
    redis_url: str = "redis://127.0.0.1:6379"
    redis_password_file: Path | None = None
    worker_hosts: Hosts = "loopback"
    store_url: str | None = None  # None: SQLite in the data directory


@dataclass(frozen=True)
class InitResult:
    data_dir: Path
    written: list[Path]
    kept: list[Path]


def _write_config(path: Path, content: str, written: list[Path]) -> None:
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if old == content:
            return
        write_private(path.with_name(path.name + ".bak"), old)
    write_private(path, content)
    written.append(path)


def _ensure_secret(path: Path, make: str, written: list[Path], kept: list[Path]) -> None:
    if path.exists():
        kept.append(path)
        return
    write_private(path, make)
    written.append(path)


def _signing_key() -> str:
    from signedjson.key import encode_signing_key_base64, generate_signing_key

    key = generate_signing_key("a_" + secrets.token_hex(2))
    return f"ed25519 {key.version} {encode_signing_key_base64(key)}\n"


def _check_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise EnvironmentProblemError(
            f"data directory {data_dir} is not writable: {exc.strerror or exc}"
        ) from None


def settings_document(req: InitRequest, baseurl: str) -> dict[str, object]:
    doc: dict[str, object] = {
        "server_name": req.server_name,
        "homeserver": {"url": baseurl.rstrip("/"), "config": "homeserver.yaml"},
        "service_account": {
            "localpart": req.service_localpart,
            "token_file": "keys/service_account_token",
        },
        "store": {"url": req.store_url or f"sqlite:///{req.data_dir / 'hauspost.db'}"},
    }
    if req.ldap is not None:
        ldap = req.ldap
        section: dict[str, object] = {
            "uri": ldap.uri,
            "base_dn": ldap.base_dn,
            "start_tls": ldap.start_tls,
            "validate_cert": ldap.validate_cert,
            "active_directory": ldap.active_directory,
            "localpart_attribute": ldap.localpart_attribute,
            "display_name_attribute": ldap.display_name_attribute,
            "email_attribute": ldap.email_attribute,
        }
        if ldap.bind_dn:
            section["bind_dn"] = ldap.bind_dn
            section["bind_password_file"] = str(ldap.bind_password_file)
        if ldap.user_filter != LdapSettings.user_filter:
            section["user_filter"] = ldap.user_filter
        section.update(login_relevant_source_keys(ldap))
        doc["ldap"] = section
    doc.update(req.extra_settings or {})
    return doc


def login_relevant_source_keys(ldap: LdapSettings) -> dict[str, object]:
    """The `ldap:` keys that decide who is an active employee (and so enter the login
    filter), where they differ from the defaults: init writes only what it was told, so a
    re-run never resets a key an admin set by hand."""
    source, default = ldap.source, default_source_options(ldap.active_directory)
    keys: dict[str, object] = {}
    for name in ("employee_id_attribute", "group_mode", "groups_base_dn",
                 "member_of_attribute", "disabled_attribute"):
        if getattr(source, name) != getattr(default, name):
            keys[name] = getattr(source, name)
    for name in ("allowed_groups", "disabled_values"):
        if getattr(source, name):
            keys[name] = list(getattr(source, name))
    return keys


def merge_settings(existing: object, new: dict[str, object]) -> dict[str, object]:
    """`new` (what this init run owns) over the existing hauspost.yaml: every key init does
    not write survives a re-run, also inside the sections it does write."""
    if not isinstance(existing, dict):
        return dict(new)
    merged: dict[str, object] = dict(existing)
    for key, value in new.items():
        old = merged.get(key)
        merged[key] = merge_settings(old, value) if isinstance(value, dict) and isinstance(
            old, dict) else value
    return merged


def _existing_settings(path: Path) -> object:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot keep its settings, the file is not valid YAML: {exc}",
                          file=str(path)) from None


DEFAULT_MEDIA_LIFETIME = "365d"


def policy_retention(settings: Settings) -> RetentionPolicy | None:
    """The room policy's retention section, when hauspost.yaml names a policy directory.
    Raises PolicyError (exit code 3): init writes nothing from a policy it cannot read."""
    if settings.policies is None:
        return None
    return load_policies(settings.policies).retention


def media_lifetime(requested: str, retention: RetentionPolicy | None) -> str:
    """The policy's `retention.media` decides; `--media-lifetime` applies without one."""
    if retention is None or retention.media is None:
        return requested
    if requested not in (DEFAULT_MEDIA_LIFETIME, retention.media.text):
        raise ConfigError(f"{requested} contradicts the room policy's retention.media "
                          f"({retention.media.text}, {retention.source}), which decides: "
                          "leave the option out", key="--media-lifetime")
    return retention.media.text


def init_data_dir(req: InitRequest) -> InitResult:
    problem = validate_server_name(req.server_name)
    if problem:
        raise ConfigError(problem, key="--server-name")
    if duration_ms(req.media_lifetime) is None:
        raise ConfigError(f"expected a duration such as 90d or 1y, got {req.media_lifetime!r}",
                          key="--media-lifetime")
    if req.ldap is not None and req.ldap.bind_password_file is not None:
        if not req.ldap.bind_password_file.is_file():
            raise ConfigError(
                f"bind password file {req.ldap.bind_password_file} does not exist",
                key="--ldap-bind-password-file",
            )
    data_dir = req.data_dir.resolve()
    req = InitRequest(**{**req.__dict__, "data_dir": data_dir})
    # Everything is validated before the first write: a mistake changes nothing.
    layout = worker_layout(req)
    service_user_id = f"@{req.service_localpart}:{req.server_name}"
    opts = HomeserverOptions(
        server_name=req.server_name,
        data_dir=data_dir,
        bind_address=req.bind_address,
        port=req.port,
        public_baseurl=req.public_baseurl,
        database_url=req.database_url,
        behind_proxy=req.behind_proxy,
        media_lifetime=req.media_lifetime,
    )
    # The public URL is the TLS proxy, which hides the admin API: the provisioner runs on
    # this host and talks to the (main) process directly.
    provisioner_url = (opts.listener_url if layout is None
                       else f"http://{layout.main.host}:{layout.main.http_port}")
    settings_path = data_dir / SETTINGS_FILE
    settings_doc = merge_settings(_existing_settings(settings_path),
                                  settings_document(req, provisioner_url))
    settings_text = yaml.safe_dump(settings_doc, sort_keys=False)
    # Validate what we are about to write with the same parser every command uses; the
    # login module is rendered from the result, so login and sync read one definition.
    settings = parse_settings(yaml.safe_load(settings_text), settings_path)
    retention = policy_retention(settings)
    opts = dataclasses.replace(
        opts, modules=default_modules(req.server_name, service_user_id, settings.ldap),
        retention=retention, media_lifetime=media_lifetime(req.media_lifetime, retention))
    if layout is not None:
        opts = dataclasses.replace(opts, modules=pin_singleton_jobs(opts.modules, layout))

    _check_writable(data_dir)
    keys = data_dir / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    os.chmod(keys, 0o700)
    (data_dir / "media_store").mkdir(exist_ok=True)

    written: list[Path] = []
    kept: list[Path] = []
    _ensure_secret(keys / "signing.key", _signing_key(), written, kept)
    for name in SECRET_FILES:
        _ensure_secret(keys / name, secrets.token_urlsafe(48) + "\n", written, kept)
    if layout is not None:
        _ensure_secret(keys / REPLICATION_SECRET_FILE, secrets.token_urlsafe(48) + "\n",
                       written, kept)

    homeserver_yaml = render_homeserver_yaml(opts)
    if layout is not None:
        rendered = render_layout(layout, data_dir)
        homeserver_yaml += rendered.shared_config
        for name, text in rendered.files.items():
            (data_dir / name).parent.mkdir(exist_ok=True)
            _write_config(data_dir / name, text, written)
    _write_config(data_dir / "homeserver.yaml", homeserver_yaml, written)
    _write_config(data_dir / "log.config", render_log_config(data_dir / "homeserver.log"), written)
    _write_config(settings_path,
                  "# Hauspost provisioner settings (see README: Configuration)\n" + settings_text,
                  written)
    element = json.dumps(render_element_config(req.server_name, opts.baseurl), indent=2) + "\n"
    (data_dir / "element").mkdir(exist_ok=True)
    _write_config(data_dir / "element" / "config.json", element, written)
    wk_dir = data_dir / "well-known" / "matrix"
    wk_dir.mkdir(parents=True, exist_ok=True)
    _write_config(wk_dir / "client",
                  json.dumps(render_well_known_client(opts.baseurl), indent=2) + "\n", written)
    logger.info("initialised %s for %s", data_dir, req.server_name)
    return InitResult(data_dir=data_dir, written=written, kept=kept)


def worker_layout(req: InitRequest) -> WorkerLayout | None:
    """The worker layout `init --workers N` asks for, or None for one process."""
    if req.workers == 0:
        return None
    if req.database_url is None:
        raise ConfigError("workers need PostgreSQL (they cannot share SQLite); "
                          "add --database-url postgresql://...", key="--workers")
    password_file = req.redis_password_file
    if password_file is not None and not password_file.is_file():
        raise ConfigError(f"Redis password file {password_file} does not exist",
                          key="--redis-password-file")
    return plan_layout(req.workers, main_port=req.port, first_port=req.worker_base_port,
                       redis=parse_redis_url(req.redis_url, password_file),
                       hosts=req.worker_hosts)
