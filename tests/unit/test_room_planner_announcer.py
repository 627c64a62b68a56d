"""The announcement bot in the pure room planner: member and poster of every read-only
room, never removed from a managed room, nowhere else. Given this room state, exactly
these actions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.accounts.policy import policy_for
from provisioner.employee import DirectoryRead
from provisioner.errors import ConfigError
from provisioner.policy import PolicySet, parse_texts
from provisioner.rooms.plan import (
    AddMember,
    ArchiveRoom,
    CreateRoom,
    Membership,
    RemoveMember,
    RoomPlanContext,
    RoomState,
    SetPowerLevels,
    expand,
    plan_rooms,
    power_levels,
)
from provisioner.rooms.run import context_for
from provisioner.settings import Settings
from tests.unit.test_room_planner import SERVICE, converged, kinds, member

BOT = "@hauspost-bot:example.com"
NEW_BOT = "@news-bot:example.com"
CTX = RoomPlanContext(server_name="example.com", service_user_id=SERVICE, announcer=BOT,
                      protected=frozenset({"@it:example.com", BOT}))
POSTING = "the announcement bot posts in read-only rooms"

POLICY = parse_texts({"p.yaml": """
spaces:
  - key: company
    name: Muster GmbH
rooms:
  - key: announcements
    name: Ankündigungen
    space: company
    mandatory: true
    read_only: true
    roles: {poster: {group: gf}}
  - key: news
    for_each: department
    name: "News {value}"
    read_only: true
  - key: chat
    name: Plaudern
    space: company
"""})


ANNA = member("anna", "Sales")
BEN = member("ben", "IT", groups=["gf"])
STAFF = [ANNA, BEN]

States = dict[str, RoomState]
Edit = Callable[[States], None]


def set_member(key: str, user_id: str, membership: str, sender: str) -> Edit:
    def edit(states: States) -> None:
        s = states[key]
        states[key] = dataclasses.replace(
            s, members={**s.members, user_id: Membership(membership, sender, 5)})
    return edit


def set_bot_level(key: str, level: int | None) -> Edit:
    def edit(states: States) -> None:
        s = states[key]
        users = {u: v for u, v in s.power_levels["users"].items() if u != BOT}
        if level is not None:
            users[BOT] = level
        states[key] = dataclasses.replace(s, power_levels={**s.power_levels, "users": users})
    return edit


def test_first_run_joins_the_bot_to_the_read_only_rooms_only_and_lets_it_post() -> None:
    plan = plan_rooms(POLICY, STAFF, {}, {}, CTX)
    adds = [a for a in plan.actions if isinstance(a, AddMember)]
    assert [(a.key, a.user_id, a.reason) for a in adds] == [
        ("company", ANNA.user_id, "matches members of the rooms inside"),
        ("company", BEN.user_id, "matches members of the rooms inside"),
        ("announcements", ANNA.user_id, "matches all employees (mandatory)"),
        ("announcements", BEN.user_id, "matches all employees (mandatory)"),
        ("announcements", BOT, POSTING),
        ("news/IT", BEN.user_id, "matches department IT"),
        ("news/IT", BOT, POSTING),
        ("news/Sales", ANNA.user_id, "matches department Sales"),
        ("news/Sales", BOT, POSTING),
        ("chat", ANNA.user_id, "matches all employees"),
        ("chat", BEN.user_id, "matches all employees"),
    ]
    created = {a.key: a.power_levels for a in plan.actions if isinstance(a, CreateRoom)}
    assert created == {
        "company": power_levels(space=True),  # a signpost: nobody posts
        "announcements": power_levels(posters={BOT, BEN.user_id}, read_only=True),
        "news/IT": power_levels(posters={BOT}, read_only=True),
        "news/Sales": power_levels(posters={BOT}, read_only=True),
        "chat": power_levels(),
    }
    assert created["announcements"]["users"] == {BEN.user_id: 10, BOT: 10}
    assert plan.desired_members == {"company": 2, "announcements": 3, "news/IT": 2,
                                    "news/Sales": 2, "chat": 2}


CASES: list[tuple[str, list[Edit], RoomPlanContext, list[tuple[str, ...]]]] = [
    ("converged: nothing", [], CTX, []),
    ("bot left a mandatory and an optional read-only room on its own: back into both",
     [set_member("announcements", BOT, "leave", BOT), set_member("news/Sales", BOT, "leave", BOT)],
     CTX, [("add_member", "announcements", BOT), ("add_member", "news/Sales", BOT)]),
    ("bot kicked by someone: back in",
     [set_member("news/IT", BOT, "leave", "@ben:example.com")],
     CTX, [("add_member", "news/IT", BOT)]),
    ("bot banned: not forced back in (the ban is somebody's decision)",
     [set_member("news/IT", BOT, "ban", SERVICE)], CTX, []),
    ("bot's posting power taken away: given back",
     [set_bot_level("announcements", None)], CTX, [("set_power_levels", "announcements")]),
    ("bot raised to moderator: put back to poster",
     [set_bot_level("news/Sales", 50)], CTX, [("set_power_levels", "news/Sales")]),
    ("bot also in a normal room and in the space: not removed, no power there",
     [set_member("chat", BOT, "join", SERVICE), set_member("company", BOT, "join", SERVICE)],
     CTX, []),
    ("bot given power in a normal room: reverted, but it stays a member",
     [set_member("chat", BOT, "join", SERVICE), set_bot_level("chat", 10)],
     CTX, [("set_power_levels", "chat")]),
    ("incomplete directory read: the bot is still added, nobody removed",
     [set_member("announcements", BOT, "leave", BOT),
      set_member("chat", "@gone:example.com", "join", "@gone:example.com")],
     dataclasses.replace(CTX, removals_allowed=False),
     [("add_member", "announcements", BOT)]),
    ("bot not protected from the account sync: same plan",
     [set_member("announcements", BOT, "leave", BOT)],
     dataclasses.replace(CTX, protected=frozenset()),
     [("add_member", "announcements", BOT)]),
    ("bot_localpart changed: the new bot joins, the old one is anybody, removed",
     [], dataclasses.replace(CTX, announcer=NEW_BOT, protected=frozenset({NEW_BOT})),
     [("set_power_levels", "announcements"), ("set_power_levels", "news/IT"),
      ("set_power_levels", "news/Sales"),
      ("add_member", "announcements", NEW_BOT), ("add_member", "news/IT", NEW_BOT),
      ("add_member", "news/Sales", NEW_BOT),
      ("remove_member", "announcements", BOT), ("remove_member", "news/IT", BOT),
      ("remove_member", "news/Sales", BOT)]),
    ("no announcer, bot protected: its power reverted, but it stays",
     [], dataclasses.replace(CTX, announcer=None),
     [("set_power_levels", "announcements"), ("set_power_levels", "news/IT"),
      ("set_power_levels", "news/Sales")]),
    ("no announcer, not protected: the bot is anybody, removed",
     [], dataclasses.replace(CTX, announcer=None, protected=frozenset()),
     [("set_power_levels", "announcements"), ("set_power_levels", "news/IT"),
      ("set_power_levels", "news/Sales"),
      ("remove_member", "announcements", BOT), ("remove_member", "news/IT", BOT),
      ("remove_member", "news/Sales", BOT)]),
]


@pytest.mark.parametrize(("edits", "context", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bot_in_managed_rooms(edits: list[Edit], context: RoomPlanContext,
                              expected: list[tuple[str, ...]]) -> None:
    managed, states = converged(POLICY, STAFF, BOT)
    for edit in edits:
        edit(states)
    plan = plan_rooms(POLICY, STAFF, managed, states, context)
    assert kinds(plan.actions) == expected
    desired = {d.key: d for d in expand(POLICY, STAFF, SERVICE, context.announcer)}
    for action in plan.actions:
        if isinstance(action, SetPowerLevels):
            assert action.new == desired[action.key].power_levels
            bot = context.announcer or BOT
            assert action.new["users"].get(bot) == (
                10 if context.announcer and action.key != "chat" else None)
        if isinstance(action, AddMember):
            assert action.reason == POSTING
        if isinstance(action, RemoveMember):
            assert action.reason == "not an active employee"


def test_an_archived_read_only_room_keeps_the_bot_and_removes_everyone_else() -> None:
    managed, states = converged(POLICY, STAFF, BOT)
    without_news = parse_texts({"p.yaml": """
spaces:
  - key: company
    name: Muster GmbH
rooms:
  - key: announcements
    name: Ankündigungen
    space: company
    mandatory: true
    read_only: true
    roles: {poster: {group: gf}}
  - key: chat
    name: Plaudern
    space: company
"""})
    plan = plan_rooms(without_news, STAFF, managed, states, CTX)
    reason = "no longer in the policy, or its for_each value no longer exists"
    assert plan.actions == (
        RemoveMember("news/IT", BEN.user_id, "room archived"),
        RemoveMember("news/Sales", ANNA.user_id, "room archived"),
        ArchiveRoom("news/IT", reason), ArchiveRoom("news/Sales", reason))


def test_the_bot_as_announcer_is_never_the_service_account_s_stand_in() -> None:
    """An announcer equal to the service account (a misconfiguration) adds nothing: the
    creator is never listed or joined."""
    context = dataclasses.replace(CTX, announcer=SERVICE)
    plan = plan_rooms(POLICY, STAFF, {}, {}, context)
    assert SERVICE not in {getattr(a, "user_id", None) for a in plan.actions}
    assert all(SERVICE not in a.power_levels["users"] for a in plan.actions
               if isinstance(a, CreateRoom))


# --- the adapters: which bot, and when ---------------------------------------------------


def _settings(tmp_path: Path, announcements: str | None) -> Settings:
    if announcements is not None:
        (tmp_path / "announcements.yaml").write_text(announcements, encoding="utf-8")
    return Settings(file=tmp_path / "hauspost.yaml", server_name="example.com",
                    homeserver_url="http://127.0.0.1:1", homeserver_config=tmp_path / "hs.yaml",
                    service_localpart="hauspost", service_token_file=tmp_path / "keys" / "t",
                    store_url="sqlite://")


WITHOUT_READ_ONLY = parse_texts({"p.yaml": "rooms:\n  - key: chat\n    name: Plaudern\n"})
READ = DirectoryRead(employees=(), source="test")


@pytest.mark.parametrize(("policy", "announcements", "announcer"), [
    (POLICY, None, BOT),
    (POLICY, "bot_localpart: news\n", "@news:example.com"),
    (WITHOUT_READ_ONLY, "bot_localpart: news\n", None),
    (None, None, None),
], ids=["default bot", "configured bot", "no read-only room", "no policy"])
def test_the_context_names_the_bot_only_when_a_read_only_room_exists(
        tmp_path: Path, policy: PolicySet | None, announcements: str | None,
        announcer: str | None) -> None:
    context = context_for(_settings(tmp_path, announcements), READ, {}, policy=policy)
    assert context.announcer == announcer


def test_a_broken_announcements_file_stops_the_room_sync_but_not_the_account_sync(
        tmp_path: Path) -> None:
    settings = _settings(tmp_path, "bot_localpart: Bot!\n")
    with pytest.raises(ConfigError, match="bot_localpart"):
        context_for(settings, READ, {}, policy=POLICY)
    assert context_for(settings, READ, {}, policy=WITHOUT_READ_ONLY).announcer is None
    assert BOT in policy_for(settings).protected


def test_the_account_sync_protects_the_configured_bot(tmp_path: Path) -> None:
    assert policy_for(_settings(tmp_path, "bot_localpart: news\n")).protected == {
        "@hauspost:example.com", "@news:example.com"}
