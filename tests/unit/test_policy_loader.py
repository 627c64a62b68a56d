"""Policy files: valid ones become typed objects; every mistake names file:line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import EXIT_CONFIG
from provisioner.policy import PolicyError, load_policies, parse_texts
from provisioner.policy.rules import AllOf, AnyOf, AttributeIs, Everyone, Not

REPO = Path(__file__).resolve().parents[2]


def problems(text: str, name: str = "p.yaml") -> tuple[str, ...]:
    with pytest.raises(PolicyError) as info:
        parse_texts({name: text})
    assert info.value.exit_code == EXIT_CONFIG
    return info.value.problems


def test_example_policy_of_the_demo_company_loads() -> None:
    policy = load_policies(REPO / "policies")
    assert [s.key for s in policy.spaces] == ["company", "locations", "departments",
                                              "projects"]
    assert [r.key for r in policy.rooms] == ["announcements", "department", "location",
                                             "project", "sales-north"]
    announcements = policy.rooms[0]
    assert announcements.mandatory and announcements.read_only
    assert announcements.members == Everyone()
    assert announcements.posters == AttributeIs("group", frozenset({"geschaeftsfuehrung",
                                                                    "kommunikation"}))
    assert announcements.source.endswith("muster-gmbh.yaml:20")
    north = policy.rooms[4]
    assert north.members == AllOf((AttributeIs("department", frozenset({"sales"})),
                                   AnyOf((AttributeIs("location", frozenset({"berlin"})),
                                          AttributeIs("location", frozenset({"hamburg"}))))))
    assert north.on_removed == "keep"
    assert policy.rooms[3].match is not None and policy.rooms[3].match.pattern == "^projekt-"


def test_unknown_key_names_file_line_and_key() -> None:
    text = "rooms:\n  - key: a\n    name: A\n    mandatroy: true\n"
    assert problems(text) == ("p.yaml:4: rooms[0].mandatroy: unknown key (expected one of: "
                              "key, name, topic, avatar, space, members, for_each, match, "
                              "mandatory, read_only, roles, history_visibility, on_removed)",)


def test_unknown_top_level_key() -> None:
    assert problems("spaces: []\nroom:\n  - key: a\n") == (
        "p.yaml:2: room: unknown key (expected one of: spaces, rooms, retention)",)


def test_wrong_type() -> None:
    text = "rooms:\n  - key: a\n    name: A\n    mandatory: 'yes'\n"
    assert problems(text) == ("p.yaml:4: rooms[0].mandatory: expected true or false, got "
                              "str 'yes'",)
    text = "rooms:\n  - key: a\n    name: [A]\n"
    assert problems(text) == ("p.yaml:3: rooms[0].name: expected a string, got list ['A']",)


def test_duplicate_room_key_across_files_names_both_places() -> None:
    with pytest.raises(PolicyError) as info:
        parse_texts({"a.yaml": "rooms:\n  - key: sales\n    name: Sales\n",
                     "b.yaml": "spaces:\n  - key: x\n    name: X\nrooms:\n"
                               "  - key: sales\n    name: Sales 2\n"})
    assert info.value.problems == (
        "b.yaml:5: key: duplicate key 'sales' (first defined at a.yaml:2); each space and "
        "room needs its own key",)


def test_rule_on_unknown_attribute() -> None:
    text = ("rooms:\n  - key: a\n    name: A\n    members:\n"
            "      all_of:\n        - {department: IT}\n        - {title: Boss}\n")
    assert problems(text) == (
        "p.yaml:7: rooms[0].members.all_of[1].title: rule on an unknown attribute 'title' "
        "(expected one of department, location, group, all_of, any_of, not)",)


def test_rule_shapes() -> None:
    policy = parse_texts({"p.yaml": (
        "rooms:\n  - key: a\n    name: A\n    members: {not: {any_of: [{group: x}, "
        "{location: [Köln, Bonn]}]}}\n")})
    assert policy.rooms[0].members == Not(AnyOf((
        AttributeIs("group", frozenset({"x"})),
        AttributeIs("location", frozenset({"köln", "bonn"})))))
    assert problems("rooms:\n  - key: a\n    name: A\n    members: everyone\n") == (
        "p.yaml:4: rooms[0].members: expected `all` or a mapping with one of department, "
        "location, group, all_of, any_of, not, got str 'everyone'",)
    assert problems("rooms:\n  - key: a\n    name: A\n    members: {department: IT, "
                    "location: Köln}\n")[0].startswith(
        "p.yaml:4: rooms[0].members: a rule has exactly one key")
    assert problems("rooms:\n  - key: a\n    name: A\n    members: {any_of: []}\n") == (
        "p.yaml:4: rooms[0].members.any_of: expected a non-empty list of rules, got list",)


def test_all_problems_are_reported_and_good_items_do_not_hide_them() -> None:
    text = ("rooms:\n  - key: ok\n    name: OK\n  - key: Bad Key\n    name: B\n"
            "  - key: c\n    name: C\n    space: nowhere\n")
    assert problems(text) == (
        "p.yaml:4: rooms[1].key: expected lower-case letters, digits, '.', '_' or '-' "
        "(at most 64), got 'Bad Key'",
        "p.yaml:6: space: no space with key 'nowhere'")


def test_missing_name_and_yaml_duplicate_key_and_bad_yaml() -> None:
    assert problems("rooms:\n  - key: a\n") == ("p.yaml:2: rooms[0]: name: is required "
                                                "(a string)",)
    assert problems("rooms:\n  - key: a\n    name: A\n    name: B\n") == (
        "p.yaml:4: rooms[0].name: duplicate key (first at line 3)",)
    assert problems("rooms: [\n") [0].startswith("p.yaml:2: not valid YAML")


def test_templates_for_each_and_match() -> None:
    assert problems("rooms:\n  - key: a\n    name: 'Team {value}'\n") == (
        "p.yaml:3: rooms[0].name: {value} needs for_each",)
    assert problems("rooms:\n  - key: a\n    for_each: group\n    name: '{grp}'\n") == (
        "p.yaml:4: rooms[0].name: unknown placeholder(s) grp; only {value} (with for_each) "
        "is allowed",)
    assert problems("rooms:\n  - key: a\n    for_each: title\n    name: A\n") == (
        "p.yaml:3: rooms[0].for_each: expected one of department, location, group, got "
        "'title'",)
    assert problems("rooms:\n  - key: a\n    name: A\n    match: x\n") == (
        "p.yaml:4: rooms[0].match: match needs for_each",)
    assert problems("rooms:\n  - key: a\n    for_each: group\n    name: A\n    match: '('\n"
                    )[0].startswith("p.yaml:5: rooms[0].match: not a valid regular expression")


def test_spaces_parent_cycle_and_unknown_parent() -> None:
    text = ("spaces:\n  - key: a\n    name: A\n    parent: b\n  - key: b\n    name: B\n"
            "    parent: a\n  - key: c\n    name: C\n    parent: zz\n")
    assert problems(text) == (
        "p.yaml:8: parent: no space with key 'zz'",
        "p.yaml:2: parent: spaces form a cycle (a -> b -> a)",
        "p.yaml:5: parent: spaces form a cycle (b -> a -> b)")


def test_roles_and_avatar_and_choices() -> None:
    assert problems("rooms:\n  - key: a\n    name: A\n    roles: {poster: all}\n") == (
        "p.yaml:4: rooms[0].roles.poster: poster only means something in a read_only room",)
    assert problems("rooms:\n  - key: a\n    name: A\n    roles: {admin: all}\n") == (
        "p.yaml:4: rooms[0].roles.admin: unknown key (expected one of: moderator, poster)",)
    assert problems("rooms:\n  - key: a\n    name: A\n    avatar: http://x/y.png\n") == (
        "p.yaml:4: rooms[0].avatar: expected an mxc:// URI, got 'http://x/y.png'",)
    assert problems("rooms:\n  - key: a\n    name: A\n    on_removed: delete\n") == (
        "p.yaml:4: rooms[0].on_removed: expected one of archive, keep, got 'delete'",)


def test_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path / "missing")
    assert "not a directory" in str(info.value)
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path)
    assert info.value.problems == (f"{tmp_path}: no *.yaml policy files",)
    (tmp_path / "x.yaml").write_text("rooms:\n  - key: a\n    name: A\n    mandatory: 1\n")
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path)
    assert info.value.problems == (f"{tmp_path / 'x.yaml'}:4: rooms[0].mandatory: expected "
                                   "true or false, got int 1",)
