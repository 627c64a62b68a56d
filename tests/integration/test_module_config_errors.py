"""A bad policy-module config stops Synapse at start-up, with one line naming the key.

Synapse spells list positions in the path as `<item N>`; our message (in the output)
repeats the key path relative to the module config and says what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.homeserver.module_configs import ModuleEntry, encryption_policy, membership_policy
from provisioner.homeserver.synapse_process import SynapseStartError
from tests.harness.synapse_server import start_synapse

MEMBERSHIP = "synapse_modules.membership.MembershipPolicy"
ENCRYPTION = "synapse_modules.encryption.EncryptionPolicy"


def with_change(entry: ModuleEntry, **changes: Any) -> ModuleEntry:
    return ModuleEntry(entry.module, {**entry.config, **changes}, entry.why)


@pytest.mark.parametrize(("modules", "key_path", "detail"), [
    ([with_change(membership_policy("@hauspost:hauspost.test"),
                  allowed_server_names=["not a server"]), encryption_policy()],
     "modules.<item 0>.config.allowed_server_names[0]",
     "allowed_server_names[0]: expected a server name like 'example.com', got 'not a server'"),
    ([membership_policy("@hauspost:hauspost.test"),
      with_change(encryption_policy(), allowed_plaintext_types=["m.room.message"])],
     "modules.<item 1>.config.allowed_plaintext_types",
     "allowed_plaintext_types: expected a list that includes 'm.room.encrypted'"),
    ([ModuleEntry(MEMBERSHIP, {"restricted_group": {"users": [], "rooms": ["!a"]}}, "test")],
     "modules.<item 0>.config.restricted_group.rooms",
     "restricted_group.rooms: unknown key"),
    ([ModuleEntry(ENCRYPTION, {"plaintext_in_unencrypted_rooms": "sometimes"}, "test")],
     "modules.<item 0>.config.plaintext_in_unencrypted_rooms",
     "plaintext_in_unencrypted_rooms: expected one of 'refuse', 'allow', got 'sometimes'"),
])
def test_bad_config_stops_synapse(tmp_path: Path, modules: list[ModuleEntry], key_path: str,
                                  detail: str) -> None:
    with pytest.raises(SynapseStartError) as info:
        server = start_synapse(tmp_path, modules=modules)
        server.stop()  # only reached if the check failed
    headline = str(info.value)
    assert "\n" not in headline
    assert f"Error in configuration at '{key_path}'" in headline
    assert detail in info.value.output
