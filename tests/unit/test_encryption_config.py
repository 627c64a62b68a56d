"""EncryptionPolicy.parse_config: defaults, and each mistake named by its key."""

from __future__ import annotations

import pytest
from synapse.module_api.errors import ConfigError

from provisioner.homeserver.module_configs import encryption_policy
from synapse_modules.encryption import DEFAULT_ALLOWED_PLAINTEXT_TYPES, EncryptionPolicy


def test_defaults_allow_exactly_what_element_sends_in_the_clear() -> None:
    config = EncryptionPolicy.parse_config({})
    assert config.allowed_plaintext_types == frozenset(
        {"m.room.encrypted", "m.reaction", "m.room.redaction"})
    assert config.plaintext_allowed_senders == frozenset()
    assert config.plaintext_in_unencrypted_rooms == "refuse"


def test_provisioner_entry_matches_the_documented_defaults() -> None:
    entry = encryption_policy()
    parsed = EncryptionPolicy.parse_config(entry.config)
    assert parsed.allowed_plaintext_types == frozenset(DEFAULT_ALLOWED_PLAINTEXT_TYPES)


@pytest.mark.parametrize(("raw", "path", "fragment"), [
    ({"allowed_plaintext_types": ["m.reaction"]}, ("allowed_plaintext_types",),
     "includes 'm.room.encrypted'"),
    ({"allowed_plaintext_types": "m.reaction"}, ("allowed_plaintext_types",), "a list"),
    ({"allowed_plaintext_types": ["m.room.encrypted", ""]}, ("allowed_plaintext_types[1]",),
     "an event type"),
    ({"plaintext_allowed_senders": ["bot"]}, ("plaintext_allowed_senders[0]",), "user ID"),
    ({"plaintext_in_unencrypted_rooms": "maybe"}, ("plaintext_in_unencrypted_rooms",),
     "one of 'refuse', 'allow'"),
    ({"algorithm": "m.megolm.v1.aes-sha2"}, ("algorithm",), "unknown key"),
])
def test_mistakes_name_the_key(raw: dict[str, object], path: tuple[str, ...],
                               fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        EncryptionPolicy.parse_config(raw)
    assert tuple(info.value.path or ()) == path
    assert fragment in info.value.msg
