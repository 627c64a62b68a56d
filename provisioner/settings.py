"""`hauspost.yaml`: the provisioner's own configuration, validated once into typed objects.

`hauspost init` writes it next to `homeserver.yaml`; every command reads it with
`load_settings`. Relative paths are resolved against the file's directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from provisioner.console.config import ConsoleSettings, parse_console
from provisioner.directory.config import (
    DirectoryConfig,
    LdapSourceOptions,
    check_scim_source,
    parse_directory,
    parse_ldap_source_options,
    validate_filter,
)
from provisioner.errors import ConfigError
from provisioner.gdpr.config import DataProtectionSettings, parse_data_protection
from provisioner.servername import validate_server_name
from provisioner.service.config import ServiceSettings, parse_service
from provisioner.sync.config import SyncSettings, parse_sync
from provisioner.validation import Section

SETTINGS_FILE = "hauspost.yaml"


@dataclass(frozen=True)
class LdapSettings:
    uri: str
    base_dn: str
    bind_dn: str | None = None
    bind_password_file: Path | None = None
    start_tls: bool = False
    validate_cert: bool = True
    user_filter: str = "(objectClass=inetOrgPerson)"
    #: directory attribute -> role. `localpart` also names the login attribute.
    localpart_attribute: str = "uid"
    display_name_attribute: str = "cn"
    email_attribute: str = "mail"
    active_directory: bool = False
    #: How the provisioner reads employees (provisioner/directory/config.py).
    source: LdapSourceOptions = field(default_factory=LdapSourceOptions)


@dataclass(frozen=True)
class Settings:
    file: Path
    server_name: str
    homeserver_url: str
    homeserver_config: Path
    service_localpart: str
    service_token_file: Path
    store_url: str
    ldap: LdapSettings | None = None
    protected_accounts: tuple[str, ...] = field(default_factory=tuple)
    #: Which directory sources `sync` reads (provisioner/directory/config.py).
    directory: DirectoryConfig | None = None
    #: How `hauspost sync` applies changes (provisioner/sync/config.py).
    sync: SyncSettings = field(default_factory=SyncSettings)
    #: Room policy directory (docs/org-rooms.md); None: rooms are not managed.
    policies: Path | None = None
    #: `hauspost serve`: listen address, SCIM token, webhook (provisioner/service/config.py).
    service: ServiceSettings = field(default_factory=ServiceSettings)
    #: The web console served by `hauspost serve` (provisioner/console/config.py); None: off.
    console: ConsoleSettings | None = None
    #: The leaver's data timeline (provisioner/gdpr/config.py).
    data_protection: DataProtectionSettings = field(default_factory=DataProtectionSettings)

    @property
    def data_dir(self) -> Path:
        return self.file.parent

    @property
    def service_user_id(self) -> str:
        return f"@{self.service_localpart}:{self.server_name}"


def _path(base: Path, value: str | None) -> Path | None:
    # An absolute value replaces `base` (pathlib's `/`); a relative one is under it.
    return None if value is None else base / value


def parse_ldap(section: Section, base: Path) -> LdapSettings:
    uri = section.str("uri", required=True)
    if not uri.startswith(("ldap://", "ldaps://")):
        raise section.error("uri", f"expected an ldap:// or ldaps:// URI, got {uri!r}")
    bind_dn = section.str("bind_dn")
    password_file = section.str("bind_password_file")
    if section.has("bind_password"):
        raise section.error(
            "bind_password", "secrets are not allowed inline; use bind_password_file"
        )
    if bind_dn and not password_file:
        raise section.error("bind_password_file", "is required when bind_dn is set (a file path)")
    # Active Directory has other attribute names; its defaults serve login and sync alike.
    active_directory = section.bool("active_directory")
    settings = LdapSettings(
        uri=uri,
        base_dn=section.str("base_dn", required=True),
        bind_dn=bind_dn,
        bind_password_file=_path(base, password_file),
        start_tls=section.bool("start_tls"),
        validate_cert=section.bool("validate_cert", True),
        user_filter=section.str("user_filter", "(&(objectCategory=person)(objectClass=user))"
                                if active_directory else "(objectClass=inetOrgPerson)"),
        localpart_attribute=section.str("localpart_attribute",
                                        "sAMAccountName" if active_directory else "uid"),
        display_name_attribute=section.str("display_name_attribute", "cn"),
        email_attribute=section.str("email_attribute", "mail"),
        active_directory=active_directory,
        source=parse_ldap_source_options(section, base, active_directory),
    )
    validate_filter(section, "user_filter", settings.user_filter)
    section.done()
    return settings


def parse_settings(data: object, file: Path) -> Settings:
    top = Section(data, file=str(file))
    base = file.parent
    server_name = top.str("server_name", required=True)
    problem = validate_server_name(server_name)
    if problem:
        raise top.error("server_name", problem)

    hs = top.section("homeserver", required=True)
    assert hs is not None  # noqa: S101 - required=True guarantees it (for mypy)
    url = hs.str("url", required=True)
    if not url.startswith(("http://", "https://")):
        raise hs.error("url", f"expected an http:// or https:// URL, got {url!r}")
    hs_config = _path(base, hs.str("config", "homeserver.yaml"))
    hs.done()

    svc = top.section("service_account") or Section({}, file=str(file), path="service_account")
    service_localpart = svc.str("localpart", "hauspost")
    token_file = _path(base, svc.str("token_file", "keys/service_account_token"))
    svc.done()

    store = top.section("store") or Section({}, file=str(file), path="store")
    store_url = store.str("url", f"sqlite:///{base / 'hauspost.db'}")
    store.done()

    ldap_section = top.section("ldap")
    ldap = parse_ldap(ldap_section, base) if ldap_section else None
    directory_section = top.section("directory")
    directory = (parse_directory(directory_section, base, has_ldap=ldap is not None)
                 if directory_section else None)
    sync = parse_sync(top.section("sync"), base)
    service = parse_service(top.section("service"), base)
    check_scim_source(directory, scim_enabled=service.scim is not None)
    console = parse_console(top.section("console"))
    data_protection = parse_data_protection(top.section("data_protection"))
    protected = tuple(top.str_list("protected_accounts"))
    policies = _path(base, top.str("policies"))
    top.done()
    assert hs_config is not None and token_file is not None  # noqa: S101 - defaults set
    return Settings(
        file=file,
        server_name=server_name,
        homeserver_url=url.rstrip("/"),
        homeserver_config=hs_config,
        service_localpart=service_localpart,
        service_token_file=token_file,
        store_url=store_url,
        ldap=ldap,
        protected_accounts=protected,
        directory=directory,
        sync=sync,
        service=service,
        console=console,
        data_protection=data_protection,
        policies=policies,
    )


def load_settings(path: Path) -> Settings:
    """Read and validate a `hauspost.yaml` (or the one inside a data directory)."""
    if path.is_dir() or path.suffix not in (".yaml", ".yml"):
        path = path / SETTINGS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "not found; run `hauspost init` first (or pass the right --data-dir)", file=str(path)
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{where}not valid YAML ({getattr(exc, 'problem', exc)})",
                          file=str(path)) from None
    return parse_settings(data, path.resolve())
