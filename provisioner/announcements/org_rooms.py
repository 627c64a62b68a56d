"""Announcement rooms from the org policy (`policies/`, issue 6's managed rooms).

A target maps to a managed room only when that room is read-only and holds exactly the
target's people:

* `all`                -> a read-only room for `members: all` (no for_each),
* `department:<name>`  -> a read-only `for_each: department` room for all members, its
  instance for <name> (likewise `location:` and `group:`; names compare case-insensitively,
  as the policy's rules do),
* `person:` targets have no org room.

If any target has no such room, the announcement gets a room of its own (the caller falls
back to `NewRoomPerAnnouncement`), so one announcement never mixes the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from provisioner.announcements.targets import Target
from provisioner.policy import PolicySet, load_policies
from provisioner.policy.rules import Everyone
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store.rooms_models import ManagedRoomRow


@dataclass(frozen=True)
class OrgRooms:
    policy: PolicySet
    #: policy key ("announcements", "department/Sales") -> room id, active rooms only.
    managed: Mapping[str, str]

    def room_for(self, target: Target) -> str | None:
        for room in self.policy.rooms:
            if not room.read_only or not isinstance(room.members, Everyone):
                continue
            if target.kind == "all" and room.for_each is None:
                if room.key in self.managed:
                    return self.managed[room.key]
            elif target.kind != "all" and room.for_each == target.kind:
                wanted = f"{room.key}/{target.value}".casefold()
                for key, room_id in sorted(self.managed.items()):
                    if key.casefold() == wanted:
                        return room_id
        return None

    def rooms_for(self, targets: Sequence[Target]) -> list[str] | None:
        rooms: list[str] = []
        for target in targets:
            room_id = self.room_for(target)
            if room_id is None:
                return None
            if room_id not in rooms:
                rooms.append(room_id)
        return rooms or None


def active_managed_rooms(store: Store) -> dict[str, str]:
    with store.session() as session:
        rows = session.execute(select(ManagedRoomRow.policy_key, ManagedRoomRow.room_id)
                               .where(ManagedRoomRow.kind == "room",
                                      ManagedRoomRow.status == "active")).all()
    return {r[0]: r[1] for r in rows}


def org_rooms(settings: Settings, store: Store) -> OrgRooms | None:
    """The org rooms, or None when hauspost.yaml names no `policies:` directory."""
    if settings.policies is None:
        return None
    return OrgRooms(load_policies(settings.policies), active_managed_rooms(store))
