"""The pure room planner: policy + active employees + managed rooms' state -> room actions.

No I/O. Rules (docs/org-rooms.md explains each):
- Every space and room in the policy has a stable key; the store links key <-> room ID, so
  renaming a room in the policy renames it in Matrix and never creates a second room.
- `for_each: department|location|group` gives one room per distinct value among active
  employees (key `<key>/<value>`); a value nobody has any more removes that room.
- Name, topic, avatar, history visibility, power levels, the managed marker and (with a
  `retention:` section) the room's `m.room.retention` are kept as declared: a change made
  outside the policy is reverted (old and new value audited).
- Members: exactly the active employees the rule matches. Everyone is joined by the
  service account (no invite to accept); a pending invitation (an admin join cut between
  its invite and its join) counts as not joined. In a non-mandatory room somebody who left on
  their own is not added again (a leave by their deactivation before a rehire does not
  count); in a mandatory room they are.
- Members who no longer match are removed with a reason. Protected accounts and the
  accounts of skipped (bad) directory entries are neither added nor removed; after an
  incomplete read nobody is removed and no room is archived.
- The announcement bot (`announcer`) is a member and poster of every read-only room, so
  `hauspost announce` can post there; it is never removed from any managed room, and is
  not put into other rooms or spaces.
- A managed room that leaves the policy is archived (members removed, read-only, out of
  its space, history kept) or, with `on_removed: keep`, released: members stay and the
  room is no longer managed (nor mandatory). Rooms the policy never managed are left alone.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from provisioner.duration import describe_ms
from provisioner.employee import Employee
from provisioner.policy.model import PolicySet, RoomPolicy, SpacePolicy
from provisioner.policy.rules import attribute_values, employee_values

MARKER = "de.hauspost.managed"
RETENTION = "m.room.retention"

MODERATOR_LEVEL = 50
POSTER_LEVEL = 10
ADMIN_ONLY = 100


# --- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """An active employee with an active, linked Matrix account."""

    user_id: str
    employee: Employee


@dataclass(frozen=True)
class ManagedRoom:
    """A store row: policy key <-> room ID."""

    key: str
    room_id: str
    kind: str = "room"  # "room" | "space"
    status: str = "active"  # "active" | "archived" | "released"
    on_removed: str = "archive"


@dataclass(frozen=True)
class Membership:
    membership: str  # join | invite | leave | ban | knock
    sender: str
    #: origin_server_ts of the membership event (ms).
    at: int = 0


@dataclass(frozen=True)
class RoomState:
    """What Synapse holds for one managed room (from the admin API's room state)."""

    name: str | None = None
    topic: str | None = None
    avatar: str | None = None
    history_visibility: str | None = None
    power_levels: Mapping[str, Any] = field(default_factory=dict)
    marker: Mapping[str, Any] = field(default_factory=dict)
    members: Mapping[str, Membership] = field(default_factory=dict)
    #: Room IDs this space lists as children (non-empty m.space.child content).
    children: frozenset[str] = frozenset()
    #: m.room.retention content ({} when the room has none).
    retention: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoomPlanContext:
    server_name: str
    service_user_id: str
    protected: frozenset[str] = frozenset()
    #: Accounts of skipped directory entries: left exactly as they are.
    held: frozenset[str] = frozenset()
    #: False after an incomplete or partly bad directory read: nobody removed, nothing archived.
    removals_allowed: bool = True
    #: user ID -> when (ms) the account was last reactivated (rehire). Synapse's
    #: deactivation parts rooms *as the user*; a leave before the rehire is not a choice.
    rehired_at: Mapping[str, int] = field(default_factory=dict)
    #: The announcement bot: joined to and poster in every read-only room (even when it is
    #: also protected from the account sync), never removed from a managed room. None when
    #: the policy has no read-only room.
    announcer: str | None = None


# --- desired state -----------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredRoom:
    key: str
    kind: str
    name: str
    topic: str | None
    avatar: str | None
    parent: str | None
    members: frozenset[str]
    mandatory: bool
    power_levels: Mapping[str, Any]
    history_visibility: str
    on_removed: str
    rule: str
    #: max_lifetime (ms) from the policy's retention section; None: no section.
    retention_ms: int | None = None

    @property
    def marker(self) -> dict[str, Any]:
        return {"policy_key": self.key, "mandatory": self.mandatory}

    @property
    def retention(self) -> dict[str, Any]:
        """The m.room.retention content; {} (none) without a retention section."""
        return {} if self.retention_ms is None else {"max_lifetime": self.retention_ms}


def power_levels(*, moderators: Iterable[str] = (), posters: Iterable[str] = (),
                 read_only: bool = False, archived: bool = False,
                 space: bool = False) -> dict[str, Any]:
    """The complete m.room.power_levels content of a managed room.

    Rooms are version 12: the creator (the service account) has unlimited power and must
    not appear in `users`. Membership and settings are the provisioner's alone (100);
    moderators redact and pin; in a read-only room only posters and moderators send.
    A space is a signpost: nobody but the provisioner sends anything into it (Element
    never shows a space's timeline; synapse_modules/spaces.py refuses it as well).
    """
    users = dict.fromkeys(sorted(posters), POSTER_LEVEL)
    users.update(dict.fromkeys(sorted(moderators), MODERATOR_LEVEL))
    silent = archived or space
    if archived:
        users = {}
    return {
        "users": dict(sorted(users.items())),
        "users_default": 0,
        "events": {
            "m.room.name": ADMIN_ONLY, "m.room.topic": ADMIN_ONLY,
            "m.room.avatar": ADMIN_ONLY, "m.room.power_levels": ADMIN_ONLY,
            "m.room.history_visibility": ADMIN_ONLY, "m.room.canonical_alias": ADMIN_ONLY,
            "m.room.encryption": ADMIN_ONLY, "m.room.server_acl": ADMIN_ONLY,
            "m.room.tombstone": ADMIN_ONLY, "m.room.join_rules": ADMIN_ONLY,
            "m.space.child": ADMIN_ONLY, "m.space.parent": ADMIN_ONLY, MARKER: ADMIN_ONLY,
            "m.room.pinned_events": MODERATOR_LEVEL,
            # Acknowledging an announcement with a reaction stays possible.
            "m.reaction": ADMIN_ONLY if silent else 0,
        },
        "events_default": ADMIN_ONLY if silent else (POSTER_LEVEL if read_only else 0),
        "state_default": ADMIN_ONLY,
        "ban": ADMIN_ONLY,
        "kick": ADMIN_ONLY,
        "invite": ADMIN_ONLY,
        "redact": MODERATOR_LEVEL,
        "historical": ADMIN_ONLY,
        "notifications": {"room": MODERATOR_LEVEL},
    }


def _format(template: str | None, value: str | None) -> str | None:
    if template is None or value is None:
        return template
    return template.replace("{value}", value)


def _values(room: RoomPolicy, members: Sequence[Member]) -> dict[str, str]:
    """Distinct values (case-folded -> first spelling seen) of the room's for_each attribute."""
    out: dict[str, str] = {}
    assert room.for_each is not None  # noqa: S101 - only called for for_each rooms
    for m in sorted(members, key=lambda m: m.user_id):
        for value in sorted(attribute_values(m.employee, room.for_each)):
            if room.match is not None and not room.match.search(value):
                continue
            out.setdefault(value.casefold(), value)
    return out


def expand(policy: PolicySet, members: Sequence[Member], service_user_id: str,
           announcer: str | None = None) -> list[DesiredRoom]:
    """Every space and room the policy asks for, with exactly its members. Spaces first,
    parents before children. A read-only room also has the `announcer` as a member and
    poster (the spaces above it do not: the bot has nothing to do there)."""
    bot = frozenset({announcer} if announcer is not None else ()) - {service_user_id}
    rooms: list[DesiredRoom] = []
    for room in policy.rooms:
        matched = [m for m in members if room.members.matches(m.employee)]
        variants: list[tuple[str, str | None, list[Member]]]
        if room.for_each is None:
            variants = [(room.key, None, matched)]
        else:
            variants = []
            for folded, label in sorted(_values(room, members).items()):
                subset = [m for m in matched
                          if folded in employee_values(m.employee, room.for_each)]
                variants.append((f"{room.key}/{label}", label, subset))
        for key, value, subset in variants:
            ids = frozenset(m.user_id for m in subset) | (bot if room.read_only else frozenset())
            moderators = {m.user_id for m in subset
                          if room.moderators is not None and room.moderators.matches(m.employee)}
            posters = {m.user_id for m in subset
                       if room.posters is not None and room.posters.matches(m.employee)}
            if room.read_only:
                posters |= bot
            rule = room.members.describe()
            if value is not None:
                rule = f"{room.for_each} {value}" + ("" if rule == "all employees"
                                                     else f" and {rule}")
            rooms.append(DesiredRoom(
                key=key, kind="room", name=_format(room.name, value) or key,
                topic=_format(room.topic, value), avatar=room.avatar, parent=room.space,
                members=ids - {service_user_id}, mandatory=room.mandatory,
                power_levels=power_levels(moderators=moderators - {service_user_id},
                                          posters=posters - {service_user_id},
                                          read_only=room.read_only),
                history_visibility=room.history_visibility, on_removed=room.on_removed,
                rule=rule, retention_ms=(policy.retention.for_room(room.key).ms
                                         if policy.retention is not None else None)))
    spaces = _expand_spaces(policy.spaces, rooms, bot)
    return spaces + rooms


def _expand_spaces(spaces: Sequence[SpacePolicy], rooms: Sequence[DesiredRoom],
                   bot: frozenset[str]) -> list[DesiredRoom]:
    """A space's members are the members of everything inside it, so each employee sees
    the part of the hierarchy that concerns them."""
    by_key = {s.key: s for s in spaces}
    children: dict[str, list[str]] = defaultdict(list)
    for s in spaces:
        if s.parent is not None:
            children[s.parent].append(s.key)
    direct: dict[str, set[str]] = defaultdict(set)
    for r in rooms:
        if r.parent is not None:
            direct[r.parent] |= r.members - bot

    def members_of(key: str) -> set[str]:
        out = set(direct[key])
        for child in children[key]:
            out |= members_of(child)
        return out

    def depth(key: str) -> int:
        parent = by_key[key].parent
        return 0 if parent is None else 1 + depth(parent)

    out = []
    for s in sorted(spaces, key=lambda s: (depth(s.key), s.key)):
        out.append(DesiredRoom(
            key=s.key, kind="space", name=s.name, topic=s.topic, avatar=s.avatar,
            parent=s.parent, members=frozenset(members_of(s.key)), mandatory=False,
            power_levels=power_levels(space=True), history_visibility="shared",
            on_removed="archive",
            rule="members of the rooms inside"))
    return out


# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomAction:
    kind: ClassVar[str] = "room_action"
    #: The policy key of the room the action writes to.
    key: str

    def describe(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"action": self.kind, **self.__dict__}


@dataclass(frozen=True)
class CreateRoom(RoomAction):
    kind: ClassVar[str] = "create_room"
    is_space: ClassVar[bool] = False
    name: str
    topic: str | None
    avatar: str | None
    parent: str | None
    power_levels: Mapping[str, Any]
    history_visibility: str
    marker: Mapping[str, Any]
    on_removed: str
    #: m.room.retention content, {} for none.
    retention: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        where = f" in space {self.parent}" if self.parent else ""
        what = "space" if self.is_space else "room"
        kept = (f", messages kept {describe_lifetime(self.retention)}" if self.retention
                else "")
        return (f"create {what} {self.key} {self.name!r}{where} (encrypted, invite only"
                f"{kept})")


@dataclass(frozen=True)
class CreateSpace(CreateRoom):
    kind: ClassVar[str] = "create_space"
    is_space: ClassVar[bool] = True


@dataclass(frozen=True)
class SetRoomState(RoomAction):
    """Put one state event back as the policy declares it (drift or a policy change)."""

    event_type: ClassVar[str] = ""
    old: Any
    new: Any

    def describe(self) -> str:
        return f"{self.kind.replace('_', ' ')} of {self.key}: {self.old!r} -> {self.new!r}"


@dataclass(frozen=True)
class SetName(SetRoomState):
    kind: ClassVar[str] = "set_name"
    event_type: ClassVar[str] = "m.room.name"


@dataclass(frozen=True)
class SetTopic(SetRoomState):
    kind: ClassVar[str] = "set_topic"
    event_type: ClassVar[str] = "m.room.topic"


@dataclass(frozen=True)
class SetAvatar(SetRoomState):
    kind: ClassVar[str] = "set_avatar"
    event_type: ClassVar[str] = "m.room.avatar"


@dataclass(frozen=True)
class SetHistoryVisibility(SetRoomState):
    kind: ClassVar[str] = "set_history_visibility"
    event_type: ClassVar[str] = "m.room.history_visibility"


@dataclass(frozen=True)
class SetPowerLevels(SetRoomState):
    kind: ClassVar[str] = "set_power_levels"
    event_type: ClassVar[str] = "m.room.power_levels"

    def describe(self) -> str:
        return f"set power levels of {self.key}: {power_level_diff(self.old, self.new)}"


@dataclass(frozen=True)
class SetMarker(SetRoomState):
    kind: ClassVar[str] = "set_marker"
    event_type: ClassVar[str] = MARKER


def describe_lifetime(content: Any) -> str:
    """An m.room.retention content in words: {"max_lifetime": 63072000000} -> '2y'."""
    lifetime = content.get("max_lifetime") if isinstance(content, Mapping) else None
    if isinstance(lifetime, int) and not isinstance(lifetime, bool) and lifetime > 0:
        return describe_ms(lifetime)
    return "none" if not content else repr(dict(content))


@dataclass(frozen=True)
class SetRetention(SetRoomState):
    """m.room.retention: Synapse hides and, on its purge schedule, deletes older messages."""

    kind: ClassVar[str] = "set_retention"
    event_type: ClassVar[str] = RETENTION

    def describe(self) -> str:
        return (f"set retention of {self.key}: {describe_lifetime(self.old)} -> "
                f"{describe_lifetime(self.new)}")


@dataclass(frozen=True)
class AddSpaceChild(RoomAction):
    """List `child` in the space `key` (m.space.child)."""

    kind: ClassVar[str] = "add_space_child"
    child: str

    def describe(self) -> str:
        return f"put {self.child} into space {self.key}"


@dataclass(frozen=True)
class RemoveSpaceChild(RoomAction):
    kind: ClassVar[str] = "remove_space_child"
    child: str

    def describe(self) -> str:
        return f"take {self.child} out of space {self.key}"


@dataclass(frozen=True)
class AddMember(RoomAction):
    """Joined by the admin API: the employee does not have to accept an invite."""

    kind: ClassVar[str] = "add_member"
    user_id: str
    reason: str

    def describe(self) -> str:
        return f"add {self.user_id} to {self.key} ({self.reason})"


@dataclass(frozen=True)
class RemoveMember(RoomAction):
    kind: ClassVar[str] = "remove_member"
    user_id: str
    reason: str

    def describe(self) -> str:
        return f"remove {self.user_id} from {self.key} ({self.reason})"


@dataclass(frozen=True)
class ArchiveRoom(RoomAction):
    """Read-only for everyone, no longer mandatory, marked archived; history is kept."""

    kind: ClassVar[str] = "archive_room"
    reason: str

    def describe(self) -> str:
        return f"archive {self.key} ({self.reason})"


@dataclass(frozen=True)
class ReleaseRoom(RoomAction):
    """on_removed: keep: the room and its members stay; it is no longer managed."""

    kind: ClassVar[str] = "release_room"
    reason: str

    def describe(self) -> str:
        return f"release {self.key}: members stay, no longer managed ({self.reason})"


ROOM_ACTION_KINDS = ("create_space", "create_room", "set_name", "set_topic", "set_avatar",
                     "set_history_visibility", "set_power_levels", "set_marker",
                     "set_retention",
                     "add_space_child", "remove_space_child", "add_member", "remove_member",
                     "archive_room", "release_room")


_ACTION_TYPES: dict[str, type[RoomAction]] = {cls.kind: cls for cls in (
    CreateRoom, CreateSpace, SetName, SetTopic, SetAvatar, SetHistoryVisibility,
    SetPowerLevels, SetMarker, SetRetention, AddSpaceChild, RemoveSpaceChild, AddMember,
    RemoveMember, ArchiveRoom, ReleaseRoom)}


def action_from_json(data: Mapping[str, Any]) -> RoomAction:
    """The action `RoomAction.to_json()` wrote (a room intent). Raises ValueError."""
    fields = dict(data)
    cls = _ACTION_TYPES.get(str(fields.pop("action", "")))
    if cls is None:
        raise ValueError(f"not a room action: {data.get('action')!r}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"room action {cls.kind}: {exc}") from None


def power_level_diff(old: Any, new: Any) -> str:
    """Which top-level keys / users differ, for a one-line description."""
    old = old if isinstance(old, Mapping) else {}
    new = new if isinstance(new, Mapping) else {}
    parts = []
    old_users, new_users = dict(old.get("users") or {}), dict(new.get("users") or {})
    for user in sorted(set(old_users) | set(new_users)):
        if old_users.get(user) != new_users.get(user):
            parts.append(f"{user} {old_users.get(user, '-')} -> {new_users.get(user, '-')}")
    for k in sorted((set(old) | set(new)) - {"users"}):
        if old.get(k) != new.get(k):
            parts.append(f"{k} {old.get(k, '-')!r} -> {new.get(k, '-')!r}")
    return "; ".join(parts) or "(no difference)"


@dataclass(frozen=True)
class RoomPlan:
    actions: tuple[RoomAction, ...]
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: Desired member count per key (for `hauspost rooms`).
    desired_members: Mapping[str, int] = field(default_factory=dict)
    #: Desired m.room.retention content per room key (for `hauspost rooms`).
    desired_retention: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    withheld_removals: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def counts(self) -> dict[str, int]:
        counter = Counter(a.kind for a in self.actions)
        return {kind: counter.get(kind, 0) for kind in ROOM_ACTION_KINDS}

    def to_json(self) -> dict[str, Any]:
        return {"actions": [a.to_json() for a in self.actions], "counts": self.counts(),
                "problems": list(self.problems), "notes": list(self.notes),
                "withheld_removals": self.withheld_removals}


# --- the planner -------------------------------------------------------------------------


def _state_actions(want: DesiredRoom, have: RoomState) -> list[RoomAction]:
    out: list[RoomAction] = []
    if have.name != want.name:
        out.append(SetName(want.key, have.name, want.name))
    if (have.topic or None) != (want.topic or None):
        out.append(SetTopic(want.key, have.topic, want.topic))
    if (have.avatar or None) != (want.avatar or None):
        out.append(SetAvatar(want.key, have.avatar, want.avatar))
    if want.kind == "room" and have.history_visibility != want.history_visibility:
        out.append(SetHistoryVisibility(want.key, have.history_visibility,
                                        want.history_visibility))
    if dict(have.power_levels) != dict(want.power_levels):
        out.append(SetPowerLevels(want.key, dict(have.power_levels), dict(want.power_levels)))
    if dict(have.marker) != want.marker:
        out.append(SetMarker(want.key, dict(have.marker), want.marker))
    # Spaces hold no messages; their retention is not the policy's business.
    if want.kind == "room" and dict(have.retention) != want.retention:
        out.append(SetRetention(want.key, dict(have.retention), want.retention))
    return out


def plan_rooms(policy: PolicySet, members: Sequence[Member],
               managed: Mapping[str, ManagedRoom], states: Mapping[str, RoomState],
               context: RoomPlanContext) -> RoomPlan:
    """Compute the room actions that bring Synapse in line with the policy. Pure."""
    desired = expand(policy, members, context.service_user_id, context.announcer)
    known = {m.user_id for m in members}
    announcer = context.announcer
    # The announcer is added by this planner even though the account sync protects it.
    untouchable = (context.protected | context.held | {context.service_user_id}) - {announcer}
    # ...and, once in a managed room, never removed from it (the bot may be posting there).
    never_removed = untouchable | ({announcer} if announcer is not None else set())
    creates: list[RoomAction] = []
    settings: list[RoomAction] = []
    children: list[RoomAction] = []
    adds: list[RoomAction] = []
    removes: list[RoomAction] = []
    archives: list[RoomAction] = []
    problems: list[str] = []
    notes: list[str] = []
    withheld = 0
    desired_keys = {d.key for d in desired}

    for want in desired:
        row = managed.get(want.key)
        if row is None or row.status == "released":
            action = CreateSpace if want.kind == "space" else CreateRoom
            creates.append(action(want.key, want.name, want.topic, want.avatar, want.parent,
                                  want.power_levels, want.history_visibility, want.marker,
                                  want.on_removed,
                                  want.retention if want.kind == "room" else {}))
            have = RoomState()
            new = True
        else:
            state = states.get(want.key)
            if state is None:
                problems.append(f"room {want.key} ({row.room_id}) is managed but Synapse "
                                "has no state for it; left alone")
                continue
            have, new = state, False
            settings.extend(_state_actions(want, have))
        if want.parent is not None:
            parent_row = managed.get(want.parent)
            parent_state = states.get(want.parent)
            listed = (not new and parent_row is not None and parent_row.status != "released"
                      and parent_state is not None and row is not None
                      and row.room_id in parent_state.children)
            if not listed:
                children.append(AddSpaceChild(want.parent, want.key))
        for user_id in sorted(want.members - untouchable):
            current = have.members.get(user_id)
            # An invitation is an admin join cut between its two events (nobody is invited
            # otherwise): joined again, like a member missing.
            if current is not None and current.membership == "join":
                continue
            if current is not None and current.membership == "ban":
                continue
            if user_id == announcer:  # it posts here, even if it left once
                adds.append(AddMember(want.key, user_id,
                                      "the announcement bot posts in read-only rooms"))
                continue
            opted_out = (current is not None and current.membership == "leave"
                         and current.sender == user_id
                         and current.at > context.rehired_at.get(user_id, -1))
            if opted_out and not want.mandatory:
                continue
            reason = f"matches {want.rule}" + (" (mandatory)" if want.mandatory else "")
            adds.append(AddMember(want.key, user_id, reason))
        for user_id, current in sorted(have.members.items()):
            if current.membership not in ("join", "invite") or user_id in want.members:
                continue
            if user_id in never_removed:
                continue
            if not context.removals_allowed:
                withheld += 1
                continue
            reason = (f"no longer matches {want.rule}" if user_id in known
                      else "not an active employee")
            removes.append(RemoveMember(want.key, user_id, reason))

    # A room moved to another space in the policy leaves its old space.
    parent_of = {d.key: d.parent for d in desired}
    key_of_room = {r.room_id: k for k, r in managed.items() if r.status != "released"}
    for space_key in sorted(desired_keys & set(states)):
        for child_id in sorted(states[space_key].children):
            child = key_of_room.get(child_id)
            if child in parent_of and parent_of[child] != space_key:
                children.append(RemoveSpaceChild(space_key, child))

    for key, row in sorted(managed.items()):
        if key in desired_keys or row.status != "active":
            continue
        state = states.get(key)
        if state is None:
            problems.append(f"room {key} ({row.room_id}) left the policy but Synapse has no "
                            "state for it; left alone")
            continue
        if not context.removals_allowed:
            withheld += 1
            continue
        reason = "no longer in the policy, or its for_each value no longer exists"
        if row.on_removed == "keep":
            archives.append(ReleaseRoom(key, reason))
            continue
        archives.append(ArchiveRoom(key, reason))
        for user_id, current in sorted(state.members.items()):
            if current.membership in ("join", "invite") and user_id not in never_removed:
                removes.append(RemoveMember(key, user_id, "room archived"))
        for parent_key, parent_row in sorted(managed.items()):
            parent_state = states.get(parent_key)
            if (parent_row.kind == "space" and parent_state is not None
                    and row.room_id in parent_state.children
                    and parent_row.status != "released"):
                children.append(RemoveSpaceChild(parent_key, key))
    if withheld:
        notes.append(f"the directory read was incomplete or had bad entries: {withheld} "
                     "removal(s)/archiving(s) withheld")
    return RoomPlan(actions=tuple(creates + settings + children + adds + removes + archives),
                    problems=tuple(problems), notes=tuple(notes),
                    desired_members={d.key: len(d.members) for d in desired},
                    desired_retention={d.key: d.retention for d in desired if d.kind == "room"},
                    withheld_removals=withheld)
