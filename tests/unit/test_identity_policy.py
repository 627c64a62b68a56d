"""The pure decisions of the identity and room-version modules, and their configs."""

from __future__ import annotations

import pytest
from synapse.module_api.errors import ConfigError

from synapse_modules.identity import (
    REGISTRATION_REFUSED,
    parse_identity_config,
    refuse_own_profile,
    refuse_registration,
)
from synapse_modules.room_versions import parse_room_version_config, refuse_room_version

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("path", ["/_synapse/admin/v2/users/@a:x", "/_synapse/admin/v1/register"])
def test_the_admin_api_may_create_accounts(path: str) -> None:
    assert refuse_registration(path) is None


@pytest.mark.parametrize("path", [
    None,                                        # outside any request (e.g. a module's job)
    "/_matrix/client/v3/login",                  # the LDAP module's account at first login
    "/_matrix/client/v3/register",               # open registration, if ever switched on
    "/_synapse/client/oidc/callback",            # SSO just-in-time accounts
    "/_matrix/client/v3/login?x=/_synapse/admin/",  # the admin prefix in a query string
    "/_synapse/adminx/v1/register",
])
def test_every_other_way_is_refused(path: str | None) -> None:
    refusal = refuse_registration(path)
    assert refusal is not None and refusal.message == REGISTRATION_REFUSED


@pytest.mark.parametrize(("content", "refused"), [
    ({"membership": "join"}, None),
    ({"membership": "join", "displayname": "Erika Muster", "avatar_url": "mxc://x/hr"}, None),
    ({"membership": "join", "displayname": None}, None),
    ({"membership": "join", "displayname": "Geschäftsführung"}, "display name"),
    ({"membership": "join", "displayname": "Erika Muster", "avatar_url": "mxc://x/other"},
     "avatar"),
    ({"membership": "invite", "displayname": "erika muster"}, "display name"),
])
def test_only_the_global_profile_shows(content: dict[str, object], refused: str | None) -> None:
    refusal = refuse_own_profile(content, "Erika Muster", "mxc://x/hr")
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert refusal.message == (f"Your {refused} comes from HR and is the same in every room; "
                                   "a different one for this room is not allowed.")


def test_identity_config_needs_the_service_account() -> None:
    assert parse_identity_config({"provisioner_users": ["@hauspost:x.test"]}).provisioner_users \
        == frozenset({"@hauspost:x.test"})
    with pytest.raises(ConfigError, match="provisioner_users: expected at least one"):
        parse_identity_config({"provisioner_users": []})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_identity_config({"provisioner_users": ["@hauspost:x.test"], "allow_all": True})


@pytest.mark.parametrize(("version", "allowed"), [
    ("12", True), ("13", True), ("11", False), ("1", False), (None, False), ("", False),
    ("org.matrix.msc1767.10", False), (12, False), ("012", False),
])
def test_room_versions(version: object, allowed: bool) -> None:
    assert (refuse_room_version(version, 12) is None) is allowed


def test_room_version_config() -> None:
    assert parse_room_version_config({}).minimum_room_version == 12  # Synapse's default
    assert parse_room_version_config({"minimum_room_version": "10"}).minimum_room_version == 10
    with pytest.raises(ConfigError, match="expected a room version number"):
        parse_room_version_config({"minimum_room_version": "v12"})
