"""Small helpers to validate YAML mappings once, at the edge, into typed values.

Every error names the file, the key path and what was expected.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, TypeVar

from provisioner.errors import ConfigError

T = TypeVar("T")


class Section:
    """A mapping read from a file, with its key path for error messages.

    Call `done()` after reading all keys: any key not read is reported as unknown.
    """

    def __init__(self, data: Any, *, file: str, path: str = "") -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"expected a mapping, got {type(data).__name__}",
                file=file, key=path or "(top level)",
            )
        self._data: Mapping[str, Any] = data
        self.file = file
        self.path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, key=self.key(name))

    def has(self, name: str) -> bool:
        return name in self._data

    def _get(self, name: str, expected: type[T] | tuple[type, ...], what: str,
             default: Any, required: bool) -> Any:
        self._seen.add(name)
        if name not in self._data or self._data[name] is None:
            if required:
                raise self.error(name, f"is required ({what})")
            return default
        value = self._data[name]
        # bool is an int in Python; never accept it where a number is expected.
        if isinstance(value, bool) and expected is not bool and bool not in (
            expected if isinstance(expected, tuple) else (expected,)
        ):
            raise self.error(name, f"expected {what}, got a boolean")
        if not isinstance(value, expected):
            raise self.error(name, f"expected {what}, got {type(value).__name__} {value!r}")
        return value

    def str(self, name: builtins.str, default: builtins.str | None = None, *,
            required: builtins.bool = False) -> Any:
        value = self._get(name, str, "a string", default, required)
        if isinstance(value, str) and not value.strip() and name in self._data:
            raise self.error(name, "must not be empty")
        return value

    def int(self, name: builtins.str, default: builtins.int | None = None, *,
            required: builtins.bool = False, minimum: builtins.int | None = None,
            maximum: builtins.int | None = None) -> Any:
        value = self._get(name, int, "an integer", default, required)
        if value is not None and minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        if value is not None and maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {maximum}, got {value}")
        return value

    def float(self, name: builtins.str, default: builtins.float | None = None, *,
              required: builtins.bool = False) -> Any:
        value = self._get(name, (int, float), "a number", default, required)
        return float(value) if value is not None else None

    def bool(self, name: builtins.str, default: builtins.bool = False) -> builtins.bool:
        value = self._get(name, bool, "true or false", default, False)
        return bool(value)

    def str_list(self, name: builtins.str, default: list[builtins.str] | None = None) -> list[builtins.str]:
        value = self._get(name, list, "a list of strings", default or [], False)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(
                    f"expected a string, got {type(item).__name__} {item!r}",
                    file=self.file, key=f"{self.key(name)}[{i}]",
                )
        return list(value)

    def section(self, name: builtins.str, *, required: builtins.bool = False) -> Section | None:
        self._seen.add(name)
        if name not in self._data or self._data[name] is None:
            if required:
                raise self.error(name, "is required (a mapping)")
            return None
        return Section(self._data[name], file=self.file, path=self.key(name))

    def raw(self, name: builtins.str) -> Any:
        self._seen.add(name)
        return self._data.get(name)

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            known = ", ".join(sorted(self._seen)) or "none"
            raise self.error(unknown[0], f"unknown key (known keys here: {known})")
