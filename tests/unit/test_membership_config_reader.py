"""synapse_modules._config: every mistake is a ConfigError naming the key path."""

from __future__ import annotations

import pytest
from synapse.module_api.errors import ConfigError

from synapse_modules._config import ConfigReader


def test_reads_typed_values_and_accepts_defaults() -> None:
    reader = ConfigReader({"flag": False, "count": 3, "name": "x",
                           "servers": ["a.example", "b.example:8448"],
                           "users": ["@a:b.example"], "rooms": ["!abc"]})
    assert reader.boolean("flag") is False
    assert reader.boolean("missing_flag", default=True) is True
    assert reader.integer("count", minimum=1) == 3
    assert reader.string("name") == "x"
    assert reader.server_name_list("servers") == ("a.example", "b.example:8448")
    assert reader.user_id_list("users") == ("@a:b.example",)
    assert reader.room_id_list("rooms") == ("!abc",)
    reader.finish()


@pytest.mark.parametrize(("raw", "read", "path", "fragment"), [
    ({"flag": "yes"}, lambda r: r.boolean("flag"), ("flag",), "expected true or false"),
    ({"count": True}, lambda r: r.integer("count"), ("count",), "expected an integer"),
    ({"count": 0}, lambda r: r.integer("count", minimum=1), ("count",), ">= 1"),
    ({}, lambda r: r.string("name"), ("name",), "required key is missing"),
    ({"servers": "a.example"}, lambda r: r.server_name_list("servers"), ("servers",),
     "expected a list"),
    ({"servers": ["ok.example", "bad name"]}, lambda r: r.server_name_list("servers"),
     ("servers[1]",), "server name"),
    ({"users": ["alice"]}, lambda r: r.user_id_list("users"), ("users[0]",), "Matrix user ID"),
    ({"rooms": ["#alias:x"]}, lambda r: r.room_id_list("rooms"), ("rooms[0]",), "room ID"),
    ({"mode": "loose"}, lambda r: r.string("mode", choices=("strict", "open")), ("mode",),
     "one of 'strict', 'open'"),
    ({"sub": []}, lambda r: r.section("sub"), ("sub",), "expected a mapping"),
])
def test_bad_values_name_the_key(raw: dict[str, object], read: object,
                                 path: tuple[str, ...], fragment: str) -> None:
    reader = ConfigReader(raw)
    with pytest.raises(ConfigError) as info:
        read(reader)  # type: ignore[operator]
    assert tuple(info.value.path or ()) == path
    assert fragment in info.value.msg
    assert info.value.msg.startswith(".".join(path) + ":")


def test_unknown_keys_are_errors_with_nested_path() -> None:
    reader = ConfigReader({"outer": {"known": 1, "typo_key": 2}})
    inner = reader.section("outer")
    inner.integer("known")
    with pytest.raises(ConfigError) as info:
        inner.finish()
    assert tuple(info.value.path or ()) == ("outer", "typo_key")
    assert "outer.typo_key: unknown key (known keys: known)" == info.value.msg


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        ConfigReader(["not", "a", "mapping"])
    assert info.value.msg == "config: expected a mapping, got list"


def test_null_config_reads_as_empty() -> None:
    reader = ConfigReader(None)
    assert reader.str_list("things", default=()) == ()
    reader.finish()
