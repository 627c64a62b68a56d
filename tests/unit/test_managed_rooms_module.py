"""The managed-rooms module's pure decisions and config (the live tests are in
tests/integration/test_org_rooms.py)."""

from __future__ import annotations

import pytest
from synapse.module_api.errors import ConfigError

from synapse_modules.managed_rooms import (
    MARKER_REFUSAL,
    Marker,
    parse_managed_rooms_config,
    refuse_leaving,
    refuse_marker_write,
    refuse_membership_by_others,
)

ANNA, BEN, SVC = "@anna:x.test", "@ben:x.test", "@hauspost:x.test"
MANDATORY = Marker("announcements", True)
OPTIONAL = Marker("location/Berlin", False)


def test_config() -> None:
    assert parse_managed_rooms_config({"provisioner_users": [SVC]}).provisioner_users == {SVC}
    with pytest.raises(ConfigError, match="provisioner_users: expected at least one"):
        parse_managed_rooms_config({"provisioner_users": []})
    with pytest.raises(ConfigError, match="provisioner_users"):
        parse_managed_rooms_config({"provisioner_users": ["hauspost"]})
    with pytest.raises(ConfigError, match="unknown|mandatory"):
        parse_managed_rooms_config({"provisioner_users": [SVC], "mandatory": False})


def test_marker_reading_fails_towards_mandatory() -> None:
    assert Marker.from_content(None) is None
    assert Marker.from_content({}) is None  # released
    assert Marker.from_content({"mandatory": True}) is None  # no key: not ours
    assert Marker.from_content({"policy_key": "a", "mandatory": False}) == Marker("a", False)
    assert Marker.from_content({"policy_key": "a"}) == Marker("a", True)
    assert Marker.from_content({"policy_key": "a", "mandatory": "no"}) == Marker("a", True)


def test_leaving() -> None:
    assert refuse_leaving(MANDATORY, ANNA, ANNA, "leave", deactivated=False) is not None
    # Offboarding parts every room, mandatory ones included.
    assert refuse_leaving(MANDATORY, ANNA, ANNA, "leave", deactivated=True) is None
    assert refuse_leaving(OPTIONAL, ANNA, ANNA, "leave", deactivated=False) is None
    assert refuse_leaving(None, ANNA, ANNA, "leave", deactivated=False) is None
    assert refuse_leaving(MANDATORY, ANNA, ANNA, "join", deactivated=False) is None
    message = refuse_leaving(MANDATORY, ANNA, ANNA, "leave", deactivated=False)
    assert message is not None and message.message.startswith(
        "You can't leave this room: it is a mandatory company room (announcements).")


@pytest.mark.parametrize(("membership", "verb"), [
    ("invite", "invite people to"), ("leave", "remove people from"), ("ban", "ban people from"),
])
def test_only_the_provisioner_changes_other_peoples_membership(membership: str,
                                                               verb: str) -> None:
    refusal = refuse_membership_by_others(OPTIONAL, ANNA, BEN, membership)
    assert refusal is not None and refusal.message == (
        "This is a managed company room (location/Berlin): its members follow the org "
        f"chart, so only IT's provisioning service can {verb} it.")
    assert refuse_membership_by_others(None, ANNA, BEN, membership) is None
    assert refuse_membership_by_others(OPTIONAL, ANNA, ANNA, "leave") is None


def test_marker_write() -> None:
    assert refuse_marker_write("de.hauspost.managed") is MARKER_REFUSAL
    assert refuse_marker_write("m.room.name") is None
