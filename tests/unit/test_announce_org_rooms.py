"""Targets map to the org policy's read-only rooms only when those hold exactly them."""

from __future__ import annotations

from provisioner.announcements.org_rooms import OrgRooms
from provisioner.announcements.targets import Target, parse_target
from provisioner.policy import parse_texts

POLICY = parse_texts({"rooms.yaml": """
rooms:
  - key: announcements
    name: Ankündigungen
    members: all
    mandatory: true
    read_only: true
  - key: chat
    name: Plaudern
    members: all
  - key: dept-news
    for_each: department
    name: "News {value}"
    read_only: true
  - key: location
    for_each: location
    name: "Standort {value}"
  - key: leads
    name: Leads
    members: {group: teamleads}
    read_only: true
"""})
MANAGED = {"announcements": "!all", "chat": "!chat", "dept-news/Sales": "!sales",
           "dept-news/IT": "!it", "location/Berlin": "!berlin", "leads": "!leads"}
ORG = OrgRooms(POLICY, MANAGED)


def rooms(*targets: str) -> list[str] | None:
    return ORG.rooms_for([parse_target(t) for t in targets])


def test_all_goes_to_the_read_only_everyone_room() -> None:
    assert rooms("all") == ["!all"]


def test_department_goes_to_its_read_only_instance_case_insensitively() -> None:
    assert rooms("department:Sales") == ["!sales"]
    assert rooms("department:it") == ["!it"]
    assert rooms("department:Sales", "department:IT", "department:sales") == ["!sales", "!it"]


def test_no_read_only_room_for_the_target_means_a_room_of_its_own() -> None:
    assert rooms("location:Berlin") is None  # the location room is not read-only
    assert rooms("department:Ops") is None  # no instance (nobody in Ops yet)
    assert rooms("group:teamleads") is None  # Leads is read-only but not a for_each room
    assert rooms("person:anna") is None
    assert rooms("department:Sales", "person:anna") is None  # never mixed


def test_unmanaged_all_room_is_not_used() -> None:
    assert OrgRooms(POLICY, {}).rooms_for([Target("all")]) is None
