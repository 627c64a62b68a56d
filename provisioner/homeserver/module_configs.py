"""The `modules:` entries `hauspost init` writes into homeserver.yaml.

One function per module, so each policy's defaults live in one obvious place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provisioner.directory.ldap_source import login_filter
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
        # Only people the sync would read as active employees: the module creates an
        # account at the first successful login, so a wider filter would let a disabled
        # person in before the next sync.
        "filter": login_filter(ldap),
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


def membership_policy(service_user_id: str) -> ModuleEntry:
    """Only active employees of this server in rooms; nothing crosses the company boundary."""
    return ModuleEntry(
        module="synapse_modules.membership.MembershipPolicy",
        config={
            "allowed_server_names": [],  # our own server only
            "exempt_users": [service_user_id],  # may create aliases, writes the policy room
            "alias_creators": ["server_admins", "exempt_users"],
            "restricted_group": {"users": [], "allowed_rooms": [], "policy_room_id": None},
        },
        why="only active employees of this server join rooms; no public rooms, no outsiders",
    )


def encryption_policy() -> ModuleEntry:
    """Every room end-to-end encrypted; plaintext room events refused."""
    return ModuleEntry(
        module="synapse_modules.encryption.EncryptionPolicy",
        config={
            # Exactly what Element / Element X send in the clear (docs/policy-modules.md).
            "allowed_plaintext_types": ["m.room.encrypted", "m.reaction", "m.room.redaction"],
            "plaintext_allowed_senders": [],
            "plaintext_in_unencrypted_rooms": "refuse",
        },
        why="every room is end-to-end encrypted and nobody can switch it off",
    )


def media_gate(max_upload_size: str = "50M") -> ModuleEntry:
    """Files reach only the uploader's current room-mates; uploads checked; withdrawal."""
    return ModuleEntry(
        module="synapse_modules.media_gate.MediaGate",
        config={
            # Judged from the file's first bytes. E2EE attachments are ciphertext and
            # always application/octet-stream: remove it and encrypted files are refused.
            "allowed_media_types": [
                "application/octet-stream", "image/png", "image/jpeg", "image/gif",
                "image/webp", "image/heic", "application/pdf", "application/zip",
                "text/plain", "video/mp4", "video/quicktime", "audio/ogg",
            ],
            "max_upload_size": max_upload_size,
            "leaver_grace_period_days": 30,  # then a leaver's files are deleted
            "sweep_interval_minutes": 60,
            "sweep_worker": None,  # the main process (it holds the media store)
        },
        why="files reach only the uploader's room-mates; uploads checked; docs/media-control.md",
    )


def managed_rooms(service_user_id: str) -> ModuleEntry:
    """Org-chart rooms: nobody leaves a mandatory room; only the provisioner manages members."""
    return ModuleEntry(
        module="synapse_modules.managed_rooms.ManagedRoomsPolicy",
        config={"provisioner_users": [service_user_id]},
        why="mandatory company rooms can't be left; their members follow the org chart; "
            "docs/org-rooms.md",
    )


def identity_policy(service_user_id: str) -> ModuleEntry:
    """Accounts only from the provisioner; names and avatars only from HR, in every room."""
    return ModuleEntry(
        module="synapse_modules.identity.IdentityPolicy",
        config={"provisioner_users": [service_user_id]},
        why="no login creates an account; no room shows a name HR did not give; "
            "docs/policy-modules.md",
    )


def accounts_batch(service_user_id: str) -> ModuleEntry:
    """Many accounts in one request, for the service account only (the first sync)."""
    return ModuleEntry(
        module="synapse_modules.accounts_batch.AccountsBatch",
        config={"provisioner_users": [service_user_id], "max_batch": 500},
        why="the first sync creates accounts in batches, not one request each; "
            "docs/scale-out.md",
    )


def members_batch(service_user_id: str) -> ModuleEntry:
    """Many members into one room per request, for the service account only."""
    return ModuleEntry(
        module="synapse_modules.members_batch.MembersBatch",
        config={"provisioner_users": [service_user_id], "max_batch": 50},
        why="org rooms fill in chains of events, not one invitation and join per request; "
            "docs/scale-out.md",
    )


def company_directory() -> ModuleEntry:
    """The directory of every colleague without Synapse's O(N^2) private-room pairs."""
    return ModuleEntry(
        module="synapse_modules.company_directory.CompanyDirectory",
        config={},
        why="search finds every colleague; no table of who shares a room with whom "
            "(millions of rows at 10,000 employees); docs/scale-out.md",
    )


def leaver_sessions() -> ModuleEntry:
    """No token acts as a deactivated account: login-as tokens die with the account."""
    return ModuleEntry(
        module="synapse_modules.sessions.LeaverSessions",
        config={},
        why="a leaver has no session left, whoever opened it; docs/policy-modules.md",
    )


def space_policy(service_user_id: str) -> ModuleEntry:
    """Spaces are signposts: no messages in a space from anyone but the provisioner."""
    return ModuleEntry(
        module="synapse_modules.spaces.SpacePolicy",
        config={"provisioner_users": [service_user_id]},
        why="a message in a space reaches almost nobody (Element never shows it); "
            "docs/policy-modules.md",
    )


def room_version_policy() -> ModuleEntry:
    """Rooms only in current room versions (Synapse's default or newer)."""
    return ModuleEntry(
        module="synapse_modules.room_versions.RoomVersionPolicy",
        config={},  # minimum_room_version: Synapse's default room version
        why="old room versions have weaker authorisation rules; docs/policy-modules.md",
    )


def default_modules(server_name: str, service_user_id: str,
                    ldap: LdapSettings | None) -> list[ModuleEntry]:
    """All modules for a company homeserver, in the order Synapse should load them."""
    entries: list[ModuleEntry] = []
    if ldap is not None:
        entries.append(ldap_login(ldap))
    entries.append(identity_policy(service_user_id))
    entries.append(accounts_batch(service_user_id))
    entries.append(members_batch(service_user_id))
    entries.append(company_directory())
    entries.append(leaver_sessions())
    entries.append(membership_policy(service_user_id))
    entries.append(managed_rooms(service_user_id))
    entries.append(encryption_policy())
    entries.append(room_version_policy())
    entries.append(space_policy(service_user_id))
    entries.append(media_gate())
    return entries
