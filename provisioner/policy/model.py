"""Typed, frozen room and space policies: what `policies/*.yaml` says, validated."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner.policy.rules import Everyone, Rule

FOR_EACH = ("department", "location", "group")
HISTORY_VISIBILITY = ("shared", "invited", "joined")
ON_REMOVED = ("archive", "keep")


@dataclass(frozen=True)
class SpacePolicy:
    key: str
    name: str
    topic: str | None = None
    avatar: str | None = None
    #: Key of the enclosing space, or None for a top-level space.
    parent: str | None = None
    #: "file:line" of the definition, for messages.
    source: str = ""


@dataclass(frozen=True)
class RoomPolicy:
    """One room, or with `for_each` a room per distinct attribute value ({value} in texts)."""

    key: str
    name: str
    topic: str | None = None
    avatar: str | None = None
    space: str | None = None
    members: Rule = Everyone()
    for_each: str | None = None
    #: Only values matching this pattern get a room (for_each only).
    match: re.Pattern[str] | None = None
    #: Members can't leave; members are joined without having to accept an invite.
    mandatory: bool = False
    #: Only moderators and posters send messages.
    read_only: bool = False
    #: Power level 50 (redact, pin, post in read-only rooms).
    moderators: Rule | None = None
    #: Power level 10 (post in read-only rooms).
    posters: Rule | None = None
    history_visibility: str = "shared"
    #: What happens when the room leaves the policy (or its for_each value disappears).
    on_removed: str = "archive"
    source: str = ""


@dataclass(frozen=True)
class Lifetime:
    """A retention period: as written in the policy, and in milliseconds."""

    text: str
    ms: int


@dataclass(frozen=True)
class RetentionPolicy:
    """How long messages are kept (Synapse's message retention, `m.room.retention`)."""

    #: Every room without an override: rooms people make themselves (direct chats, group
    #: chats) too, through Synapse's default policy.
    default: Lifetime
    #: Policy room key -> lifetime; a `for_each` key covers each of its rooms.
    rooms: Mapping[str, Lifetime] = field(default_factory=dict)
    #: Files nobody downloaded for this long are deleted (Synapse's local_media_lifetime).
    media: Lifetime | None = None
    #: "file:line" of the section, for messages.
    source: str = ""

    def for_room(self, key: str) -> Lifetime:
        """The lifetime of a managed room by its key (`project/projekt-apollo` -> `project`)."""
        return self.rooms.get(key.split("/", 1)[0], self.default)

    @property
    def shortest(self) -> Lifetime:
        return min([self.default, *self.rooms.values()], key=lambda life: life.ms)

    @property
    def longest(self) -> Lifetime:
        return max([self.default, *self.rooms.values()], key=lambda life: life.ms)


@dataclass(frozen=True)
class PolicySet:
    spaces: tuple[SpacePolicy, ...]
    rooms: tuple[RoomPolicy, ...]
    files: tuple[str, ...] = ()
    #: None: no `retention:` section, messages are kept until someone deletes them.
    retention: RetentionPolicy | None = None
