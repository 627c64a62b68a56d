"""MembershipPolicy.parse_config: defaults, and each mistake named by its key."""

from __future__ import annotations

import pytest
from synapse.module_api.errors import ConfigError

from synapse_modules.membership import MembershipPolicy


def test_defaults_are_own_server_only_and_it_only_aliases() -> None:
    config = MembershipPolicy.parse_config({})
    assert config.allowed_server_names == frozenset()
    assert config.exempt_users == frozenset()
    assert config.alias_creators == frozenset({"server_admins", "exempt_users"})
    assert config.restricted.users == frozenset()
    assert config.restricted.allowed_rooms == frozenset()
    assert config.restricted.policy_room_id is None


def test_full_config() -> None:
    config = MembershipPolicy.parse_config({
        "allowed_server_names": ["branch.example"],
        "exempt_users": ["@hauspost:hauspost.test"],
        "alias_creators": ["everyone"],
        "restricted_group": {"users": ["@c:hauspost.test"], "allowed_rooms": ["!r1"],
                             "policy_room_id": "!policy"},
    })
    assert config.allowed_server_names == frozenset({"branch.example"})
    assert config.restricted.users == frozenset({"@c:hauspost.test"})
    assert config.restricted.allowed_rooms == frozenset({"!r1"})
    assert config.restricted.policy_room_id == "!policy"


@pytest.mark.parametrize(("raw", "path"), [
    ({"allowed_servers": ["x.example"]}, ("allowed_servers",)),
    ({"allowed_server_names": "x.example"}, ("allowed_server_names",)),
    ({"allowed_server_names": ["not a server"]}, ("allowed_server_names[0]",)),
    ({"exempt_users": ["hauspost"]}, ("exempt_users[0]",)),
    ({"alias_creators": ["admins"]}, ("alias_creators[0]",)),
    ({"restricted_group": {"users": ["@c:x"], "rooms": []}}, ("restricted_group", "rooms")),
    ({"restricted_group": {"allowed_rooms": ["#alias:x"]}},
     ("restricted_group", "allowed_rooms[0]")),
    ({"restricted_group": {"policy_room_id": "#policy:x"}},
     ("restricted_group", "policy_room_id")),
    ({"restricted_group": ["@c:x"]}, ("restricted_group",)),
    ({"exempt_users": ["@a:x"], "restricted_group": {"users": ["@a:x"]}},
     ("restricted_group.users",)),
])
def test_mistakes_name_the_key(raw: dict[str, object], path: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        MembershipPolicy.parse_config(raw)
    assert tuple(info.value.path or ()) == path
    assert info.value.msg.startswith(".".join(path))
