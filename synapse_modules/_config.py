"""Read a Synapse module's `config:` mapping into typed values, once, at start-up.

Shared by all our modules so every config mistake reads the same way: Synapse prints
`Error in configuration at 'modules.<i>.config.<key path>'` and our message repeats the
key path and says what was expected. Unknown keys are errors (a typo must not silently
loosen a policy).

Usage::

    reader = ConfigReader(raw)
    servers = reader.str_list("allowed_server_names", default=[])
    strict = reader.boolean("strict", default=True)
    reader.finish()  # raises on keys nobody read
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from synapse.module_api.errors import ConfigError

T = TypeVar("T")

_MISSING: Any = object()

# Matrix user IDs (spec appendix "User Identifiers"), historical localparts included.
_MXID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
# Server names: DNS name or IP literal, optional port (spec appendix "Server Name").
_SERVER_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?$")
# Room IDs are opaque; only the sigil is fixed (v12 IDs have no ":server" part).
_ROOM_ID = re.compile(r"^![^\s]+$")


def _type_name(value: object) -> str:
    return type(value).__name__ if value is not None else "null"


class ConfigReader:
    """Typed access to one config mapping, remembering which keys were read."""

    def __init__(self, raw: object, path: Sequence[str] = ()) -> None:
        self._path = tuple(path)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{self._where()}: expected a mapping, got {_type_name(raw)}", self._path
            )
        for key in raw:
            if not isinstance(key, str):
                raise ConfigError(
                    f"{self._where()}: keys must be strings, got {key!r}", self._path
                )
        self._raw: Mapping[str, object] = raw
        self._read: set[str] = set()

    # -- helpers -----------------------------------------------------------------------

    def _where(self, key: str | None = None) -> str:
        parts = self._path + ((key,) if key is not None else ())
        return "config" if not parts else ".".join(parts)

    def error(self, key: str, expected: str, value: object = _MISSING) -> ConfigError:
        """A ConfigError for `key` of this mapping; callers use it for semantic checks too."""
        got = "" if value is _MISSING else f", got {value!r}"
        return ConfigError(f"{self._where(key)}: expected {expected}{got}", self._path + (key,))

    def _get(self, key: str, default: object) -> object:
        self._read.add(key)
        if key in self._raw:
            return self._raw[key]
        if default is _MISSING:
            raise ConfigError(f"{self._where(key)}: required key is missing", self._path + (key,))
        return default

    # -- scalars -----------------------------------------------------------------------

    def boolean(self, key: str, default: bool | Any = _MISSING) -> bool:
        value = self._get(key, default)
        # bool is a subclass of int; "yes" strings are refused on purpose (YAML 1.1 quirks).
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def integer(self, key: str, default: int | Any = _MISSING, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "an integer", value)
        if minimum is not None and value < minimum:
            raise self.error(key, f"an integer >= {minimum}", value)
        if maximum is not None and value > maximum:
            raise self.error(key, f"an integer <= {maximum}", value)
        return value

    def string(self, key: str, default: str | Any = _MISSING, *,
            choices: Sequence[str] | None = None) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value:
            raise self.error(key, "a non-empty string", value)
        if choices is not None and value not in choices:
            raise self.error(key, "one of " + ", ".join(repr(c) for c in choices), value)
        return value

    def optional_str(self, key: str) -> str | None:
        if self._raw.get(key) is None:
            self._read.add(key)
            return None
        return self.string(key)

    # -- lists -------------------------------------------------------------------------

    def str_list(self, key: str, default: Sequence[str] | Any = _MISSING, *,
                 pattern: re.Pattern[str] | None = None, what: str = "a non-empty string",
                 choices: Sequence[str] | None = None) -> tuple[str, ...]:
        value = self._get(key, default)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.error(key, f"a list of {what}s" if not choices else "a list", value)
        out: list[str] = []
        for i, item in enumerate(value):
            item_key = f"{key}[{i}]"
            if not isinstance(item, str) or not item:
                raise self.error(item_key, what, item)
            if pattern is not None and not pattern.match(item):
                raise self.error(item_key, what, item)
            if choices is not None and item not in choices:
                raise self.error(item_key, "one of " + ", ".join(repr(c) for c in choices), item)
            out.append(item)
        return tuple(out)

    def user_id_list(self, key: str, default: Sequence[str] | Any = _MISSING) -> tuple[str, ...]:
        return self.str_list(key, default, pattern=_MXID,
                             what="a Matrix user ID like '@alice:example.com'")

    def provisioner_users(self, key: str = "provisioner_users") -> frozenset[str]:
        """The service account(s) a policy exempts or trusts: at least one Matrix ID."""
        users = self.user_id_list(key)
        if not users:
            raise self.error(key, "at least one Matrix ID (the service account)", users)
        return frozenset(users)

    def server_name_list(self, key: str,
                         default: Sequence[str] | Any = _MISSING) -> tuple[str, ...]:
        return self.str_list(key, default, pattern=_SERVER_NAME,
                             what="a server name like 'example.com'")

    def room_id_list(self, key: str, default: Sequence[str] | Any = _MISSING) -> tuple[str, ...]:
        return self.str_list(key, default, pattern=_ROOM_ID,
                             what="a room ID like '!abc123'")

    # -- nesting -----------------------------------------------------------------------

    def section(self, key: str, *, required: bool = False) -> ConfigReader:
        """A reader for a nested mapping (missing and null read as empty unless required)."""
        value = self._get(key, _MISSING if required else None)
        if value is not None and not isinstance(value, Mapping):
            raise self.error(key, "a mapping", value)
        return ConfigReader(value, self._path + (key,))

    def section_list(self, key: str, default: Sequence[object] | Any = _MISSING
                     ) -> list[ConfigReader]:
        """Readers for a list of mappings, each with its `key[i]` path."""
        value = self._get(key, default)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.error(key, "a list of mappings", value)
        readers: list[ConfigReader] = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.error(f"{key}[{i}]", "a mapping", item)
            readers.append(ConfigReader(item, self._path + (f"{key}[{i}]",)))
        return readers

    def finish(self) -> None:
        """Refuse keys nobody asked for: a typo must not silently loosen a policy."""
        unknown = sorted(k for k in self._raw if k not in self._read)
        if unknown:
            raise ConfigError(
                f"{self._where(unknown[0])}: unknown key (known keys: "
                + ", ".join(sorted(self._read)) + ")",
                self._path + (unknown[0],),
            )
