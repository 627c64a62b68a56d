"""The `modules:` entries `hauspost init` writes into homeserver.yaml.

One function per module, so each policy's defaults live in one obvious place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provisioner.settings import LdapSettings


@dataclass(frozen=True)
class ModuleEntry:
    module: str
    config: dict[str, Any]
    why: str


def ldap_login(ldap: LdapSettings) -> ModuleEntry:
    """Employees log in with their directory password (matrix-synapse-ldap3).

    The login attribute is the same one the provisioner maps to the localpart, so
    a login lands in the very account the provisioner created.
    """
    config: dict[str, Any] = {
        "enabled": True,
        "uri": ldap.uri,
        "start_tls": ldap.start_tls,
        "validate_cert": ldap.validate_cert,
        "base": ldap.base_dn,
        "attributes": {
            "uid": ldap.localpart_attribute,
            "mail": ldap.email_attribute,
            "name": ldap.display_name_attribute,
        },
        "filter": ldap.user_filter,
    }
    if ldap.bind_dn:
        config["mode"] = "search"
        config["bind_dn"] = ldap.bind_dn
        config["bind_password_file"] = str(ldap.bind_password_file)
    if ldap.active_directory:
        config["active_directory"] = True
    return ModuleEntry(
        module="ldap_auth_provider.LdapAuthProviderModule",
        config=config,
        why="employees log in with their LDAP password; accounts come from the provisioner",
    )


def default_modules(server_name: str, service_user_id: str,
                    ldap: LdapSettings | None) -> list[ModuleEntry]:
    """All modules for a company homeserver, in the order Synapse should load them."""
    entries: list[ModuleEntry] = []
    if ldap is not None:
        entries.append(ldap_login(ldap))
    return entries
