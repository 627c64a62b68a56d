"""Validate located YAML data into PolicySet. Unknown keys, wrong types, bad rules and
duplicate keys are errors naming file:line and key path; all problems are reported."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from provisioner.duration import EXPECTED, duration_ms
from provisioner.policy.located import Located, Path, PolicyError
from provisioner.policy.model import (
    FOR_EACH,
    HISTORY_VISIBILITY,
    ON_REMOVED,
    Lifetime,
    PolicySet,
    RetentionPolicy,
    RoomPolicy,
    SpacePolicy,
)
from provisioner.policy.rules import (
    ATTRIBUTES,
    COMBINATORS,
    AllOf,
    AnyOf,
    AttributeIs,
    Everyone,
    Not,
    Rule,
)

T = TypeVar("T")

_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_MXC = re.compile(r"^mxc://[^/\s]+/[^/\s]+$")
_PLACEHOLDER = re.compile(r"\{([^}]*)\}")
SPACE_KEYS = ("key", "name", "topic", "avatar", "parent")
ROOM_KEYS = ("key", "name", "topic", "avatar", "space", "members", "for_each", "match",
             "mandatory", "read_only", "roles", "history_visibility", "on_removed")
ROLE_KEYS = ("moderator", "poster")
RETENTION_KEYS = ("default", "media", "rooms")
TOP_KEYS = ("spaces", "rooms", "retention")


class _ItemError(Exception):
    """One problem, already formatted; the item is skipped and parsing goes on."""


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _Reader:
    def __init__(self, doc: Located, problems: list[str]) -> None:
        self.doc = doc
        self.problems = problems

    def fail(self, path: Path, message: str) -> _ItemError:
        return _ItemError(self.doc.problem(path, message))

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_type_name(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(path + (key,), f"unknown key (expected one of: "
                                               f"{', '.join(allowed)})")
        return value

    def typed(self, data: dict[str, Any], key: str, path: Path, kind: type[T], what: str,
              default: T | None = None, *, required: bool = False) -> T | None:
        if key not in data or data[key] is None:
            if required:
                raise self.fail(path + (key,) if key in data else path,
                                f"{key}: is required ({what})")
            return default
        value = data[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise self.fail(path + (key,), f"expected {what}, got {_type_name(value)} "
                                           f"{value!r}")
        return value

    def text(self, data: dict[str, Any], key: str, path: Path, *,
             required: bool = False) -> str | None:
        value = self.typed(data, key, path, str, "a string", required=required)
        if value is not None and not value.strip():
            raise self.fail(path + (key,), "must not be empty")
        return value

    def choice(self, data: dict[str, Any], key: str, path: Path, choices: tuple[str, ...],
               default: str | None) -> str | None:
        value = self.text(data, key, path)
        if value is None:
            return default
        if value not in choices:
            raise self.fail(path + (key,), f"expected one of {', '.join(choices)}, "
                                           f"got {value!r}")
        return value

    def policy_key(self, data: dict[str, Any], path: Path) -> str:
        key = self.text(data, "key", path, required=True)
        assert key is not None  # noqa: S101 - required=True (for mypy)
        if not _KEY.match(key):
            raise self.fail(path + ("key",), "expected lower-case letters, digits, '.', '_' "
                                             f"or '-' (at most 64), got {key!r}")
        return key

    def avatar(self, data: dict[str, Any], path: Path) -> str | None:
        value = self.text(data, "avatar", path)
        if value is not None and not _MXC.match(value):
            raise self.fail(path + ("avatar",), f"expected an mxc:// URI, got {value!r}")
        return value

    def rule(self, value: Any, path: Path) -> Rule:
        if value == "all":
            return Everyone()
        if isinstance(value, str) or not isinstance(value, dict):
            raise self.fail(path, "expected `all` or a mapping with one of "
                                  f"{', '.join(ATTRIBUTES + COMBINATORS)}, got "
                                  f"{_type_name(value)} {value!r}")
        if len(value) != 1:
            raise self.fail(path, f"a rule has exactly one key, got {sorted(value)} "
                                  "(combine rules with all_of / any_of)")
        [(name, arg)] = value.items()
        sub = path + (name,)
        if name in ("all_of", "any_of"):
            if not isinstance(arg, list) or not arg:
                raise self.fail(sub, f"expected a non-empty list of rules, got "
                                     f"{_type_name(arg)}")
            rules = tuple(self.rule(item, sub + (i,)) for i, item in enumerate(arg))
            return AllOf(rules) if name == "all_of" else AnyOf(rules)
        if name == "not":
            return Not(self.rule(arg, sub))
        if name not in ATTRIBUTES:
            raise self.fail(sub, f"rule on an unknown attribute {name!r} (expected one of "
                                 f"{', '.join(ATTRIBUTES + COMBINATORS)})")
        values = arg if isinstance(arg, list) else [arg]
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise self.fail(sub, f"expected a value or a list of values (strings), got "
                                 f"{arg!r}")
        return AttributeIs(name, frozenset(v.casefold() for v in values))

    def each(self, items: Any, path: Path, parse: Callable[[Any, Path], T]) -> list[T]:
        if items is None:
            return []
        if not isinstance(items, list):
            self.problems.append(self.doc.problem(path, f"expected a list, got "
                                                        f"{_type_name(items)}"))
            return []
        out: list[T] = []
        for index, item in enumerate(items):
            try:
                out.append(parse(item, path + (index,)))
            except _ItemError as exc:
                self.problems.append(str(exc))
        return out

    # -- items ----------------------------------------------------------------------

    def space(self, raw: Any, path: Path) -> SpacePolicy:
        data = self.mapping(raw, path, SPACE_KEYS)
        key = self.policy_key(data, path)
        parent = self.text(data, "parent", path)
        name = self.text(data, "name", path, required=True)
        assert name is not None  # noqa: S101 - required=True (for mypy)
        return SpacePolicy(key=key, name=name, topic=self.text(data, "topic", path),
                           avatar=self.avatar(data, path), parent=parent,
                           source=f"{self.doc.file}:{self.doc.line(path)}")

    def template(self, data: dict[str, Any], key: str, path: Path,
                 for_each: str | None) -> str | None:
        value = self.text(data, key, path, required=key == "name")
        if value is None:
            return None
        names = set(_PLACEHOLDER.findall(value))
        if names - {"value"}:
            raise self.fail(path + (key,), f"unknown placeholder(s) "
                                           f"{', '.join(sorted(names - {'value'}))}; only "
                                           "{value} (with for_each) is allowed")
        if names and for_each is None:
            raise self.fail(path + (key,), "{value} needs for_each")
        return value

    def room(self, raw: Any, path: Path) -> RoomPolicy:
        data = self.mapping(raw, path, ROOM_KEYS)
        key = self.policy_key(data, path)
        for_each = self.choice(data, "for_each", path, FOR_EACH, None)
        match = None
        pattern = self.text(data, "match", path)
        if pattern is not None:
            if for_each is None:
                raise self.fail(path + ("match",), "match needs for_each")
            try:
                match = re.compile(pattern)
            except re.error as exc:
                raise self.fail(path + ("match",), f"not a valid regular expression: "
                                                   f"{exc}") from None
        members: Rule = Everyone()
        if "members" in data:
            members = self.rule(data["members"], path + ("members",))
        moderators = posters = None
        roles = data.get("roles")
        if roles is not None:
            roles = self.mapping(roles, path + ("roles",), ROLE_KEYS)
            if "moderator" in roles:
                moderators = self.rule(roles["moderator"], path + ("roles", "moderator"))
            if "poster" in roles:
                posters = self.rule(roles["poster"], path + ("roles", "poster"))
        read_only = bool(self.typed(data, "read_only", path, bool, "true or false", False))
        if posters is not None and not read_only:
            raise self.fail(path + ("roles", "poster"), "poster only means something in a "
                                                        "read_only room")
        name = self.template(data, "name", path, for_each)
        assert name is not None  # noqa: S101 - required (for mypy)
        return RoomPolicy(
            key=key, name=name, topic=self.template(data, "topic", path, for_each),
            avatar=self.avatar(data, path), space=self.text(data, "space", path),
            members=members, for_each=for_each, match=match,
            mandatory=bool(self.typed(data, "mandatory", path, bool, "true or false", False)),
            read_only=read_only, moderators=moderators, posters=posters,
            history_visibility=self.choice(data, "history_visibility", path,
                                           HISTORY_VISIBILITY, "shared") or "shared",
            on_removed=self.choice(data, "on_removed", path, ON_REMOVED,
                                   "archive") or "archive",
            source=f"{self.doc.file}:{self.doc.line(path)}")


    def lifetime(self, value: Any, path: Path) -> Lifetime:
        ms = duration_ms(value)
        if ms is None:
            raise self.fail(path, f"expected {EXPECTED}, got {_type_name(value)} {value!r}")
        return Lifetime(str(value), ms)

    def retention(self, raw: Any, path: Path) -> RetentionPolicy | None:
        """The `retention:` section; every bad value is reported, then None."""
        data = self.mapping(raw, path, RETENTION_KEYS)
        if data.get("default") is None:
            raise self.fail(path, "default: is required (how long messages are kept in "
                                  "every room without an override, e.g. 1y)")
        rooms = data.get("rooms")
        if rooms is not None and not isinstance(rooms, dict):
            raise self.fail(path + ("rooms",), f"expected a mapping of room key to duration, "
                                               f"got {_type_name(rooms)}")
        wanted: list[tuple[str, Any, Path]] = [("default", data["default"], path + ("default",))]
        if data.get("media") is not None:
            wanted.append(("media", data["media"], path + ("media",)))
        wanted += [(f"rooms/{key}", value, path + ("rooms", key))
                   for key, value in (rooms or {}).items()]
        found: dict[str, Lifetime] = {}
        for name, value, where in wanted:
            try:
                found[name] = self.lifetime(value, where)
            except _ItemError as exc:
                self.problems.append(str(exc))
        if len(found) != len(wanted):
            return None
        return RetentionPolicy(
            default=found["default"], media=found.get("media"),
            rooms={k.removeprefix("rooms/"): v for k, v in found.items()
                   if k.startswith("rooms/")},
            source=f"{self.doc.file}:{self.doc.line(path)}")


def _check_retention(retention: RetentionPolicy, doc: Located, rooms: list[RoomPolicy],
                     spaces: list[SpacePolicy]) -> list[str]:
    room_keys = {r.key for r in rooms}
    space_keys = {s.key for s in spaces}
    problems = []
    for key in retention.rooms:
        if key in room_keys:
            continue
        why = ("is a space: spaces hold no messages" if key in space_keys
               else f"no room with key {key!r}")
        problems.append(doc.problem(("retention", "rooms", key), why))
    return problems


def parse_documents(docs: list[Located]) -> PolicySet:
    """Validate every document; raise PolicyError listing every problem found."""
    problems: list[str] = []
    spaces: list[SpacePolicy] = []
    rooms: list[RoomPolicy] = []
    retention: tuple[RetentionPolicy, Located] | None = None
    for doc in docs:
        reader = _Reader(doc, problems)
        try:
            top = reader.mapping(doc.data, (), TOP_KEYS)
        except _ItemError as exc:
            problems.append(str(exc))
            continue
        spaces += reader.each(top.get("spaces"), ("spaces",), reader.space)
        rooms += reader.each(top.get("rooms"), ("rooms",), reader.room)
        if "retention" not in top:
            continue
        if retention is not None:
            problems.append(doc.problem(("retention",), f"a second retention section (the "
                                                        f"first is at {retention[0].source}); "
                                                        "the policy has one"))
            continue
        try:
            section = reader.retention(top["retention"], ("retention",))
        except _ItemError as exc:
            problems.append(str(exc))
            continue
        if section is not None:
            retention = (section, doc)

    seen: dict[str, str] = {}
    items: list[SpacePolicy | RoomPolicy] = [*spaces, *rooms]
    for item in items:
        if item.key in seen:
            problems.append(f"{item.source}: key: duplicate key {item.key!r} (first defined "
                            f"at {seen[item.key]}); each space and room needs its own key")
        else:
            seen[item.key] = item.source
    space_keys = {s.key: s for s in spaces}
    for space in spaces:
        if space.parent is not None and space.parent not in space_keys:
            problems.append(f"{space.source}: parent: no space with key {space.parent!r}")
    for room in rooms:
        if room.space is not None and room.space not in space_keys:
            problems.append(f"{room.source}: space: no space with key {room.space!r}")
    for space in spaces:
        chain, current = [space.key], space.parent
        while current is not None and current in space_keys:
            if current in chain:
                problems.append(f"{space.source}: parent: spaces form a cycle "
                                f"({' -> '.join([*chain, current])})")
                break
            chain.append(current)
            current = space_keys[current].parent
    if retention is not None:
        problems += _check_retention(retention[0], retention[1], rooms, spaces)
    if problems:
        raise PolicyError(problems)
    return PolicySet(spaces=tuple(spaces), rooms=tuple(rooms),
                     files=tuple(d.file for d in docs),
                     retention=retention[0] if retention is not None else None)
