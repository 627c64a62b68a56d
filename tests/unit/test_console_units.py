"""The console's pure parts: its config section, sessions, sign-in limits, language,
search folding, redirects and the plan fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.console.config import ConsoleSettings
from provisioner.console.i18n import CATALOGUE, LANGUAGES, pick_language, translate
from provisioner.console.queries import fold
from provisioner.console.sessions import LoginLimiter, SessionStore
from provisioner.console.sync_pages import PlanView
from provisioner.console.web import safe_next
from provisioner.errors import ConfigError
from provisioner.settings import parse_settings

BASE: dict[str, Any] = {"server_name": "corp.test", "homeserver": {"url": "http://127.0.0.1:8008"}}
FILE = Path("/srv/hauspost/hauspost.yaml")


def _parse(console: Any) -> ConsoleSettings | None:
    return parse_settings({**BASE, "console": console}, FILE).console


def test_console_is_off_without_its_section_and_parses_every_key() -> None:
    assert parse_settings(dict(BASE), FILE).console is None
    config = _parse({"roles": {"hr": ["Personal"], "it": ["it-admins", "root"]},
                     "idle_minutes": 10, "login_attempts": 3,
                     "login_attempts_per_address": 50, "secure_cookies": True,
                     "trusted_proxies": ["10.0.0.5", "172.16.0.0/12"]})
    assert config is not None
    assert config.roles == {"hr": frozenset({"Personal"}), "it": frozenset({"it-admins", "root"})}
    assert (config.idle_seconds, config.login_attempts, config.login_attempts_per_address,
            config.secure_cookies) == (600, 3, 50, True)
    assert config.trusted_proxies == frozenset({"10.0.0.5", "172.16.0.0/12"})
    assert config.roles_for(["personal", "sales"]) == frozenset({"hr"})
    assert config.roles_for(["ROOT", "Personal"]) == frozenset({"hr", "it"})
    assert config.roles_for(None) == frozenset()
    assert _parse({"roles": {"hr": ["x"]}, "enabled": False}) is None


@pytest.mark.parametrize(("console", "key", "message"), [
    ({}, "console.roles", "is required"),
    ({"roles": {}}, "console.roles", "expected at least one of hr, comms, it, auditor"),
    ({"roles": {"boss": ["x"]}}, "console.roles.boss", "unknown key"),
    ({"roles": {"hr": "personal"}}, "console.roles.hr", "a list of strings"),
    ({"roles": {"hr": ["x"]}, "idle_minutes": 0}, "console.idle_minutes", "at least 1"),
    ({"roles": {"hr": ["x"]}, "secure_cookies": "yes"}, "console.secure_cookies",
     "expected auto, true or false"),
    ({"roles": {"hr": ["x"]}, "trusted_proxies": ["proxy.local"]},
     "console.trusted_proxies[0]", "expected an IP address or network"),
    ({"roles": {"hr": ["x"]}, "password": "x"}, "console.password", "unknown key"),
])
def test_config_errors_name_file_and_key(console: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(console)
    assert str(FILE) in str(err.value) and key in str(err.value) and message in str(err.value)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_end_when_idle_at_sign_out_and_for_an_offboarded_person() -> None:
    clock = Clock()
    store = SessionStore(60, clock=clock)
    anonymous = store.anonymous()
    signed = store.sign_in(anonymous, user_id="@a:corp.test", employee_id="E1",
                           display_name="A", roles=frozenset({"hr"}))
    assert signed.sid != anonymous.sid and signed.csrf != anonymous.csrf
    assert store.get(anonymous.sid) is None  # the pre-sign-in id is worth nothing now
    clock.now += 59
    assert store.get(signed.sid) is signed  # use refreshes the idle timer
    clock.now += 59
    assert store.get(signed.sid) is signed
    clock.now += 61
    assert store.get(signed.sid) is None
    one = store.sign_in(store.anonymous(), user_id="@b:corp.test", employee_id="E2",
                        display_name="B", roles=frozenset({"it"}))
    two = store.sign_in(store.anonymous(), user_id="@b:corp.test", employee_id="E2",
                        display_name="B", roles=frozenset({"it"}))
    other = store.sign_in(store.anonymous(), user_id="@c:corp.test", employee_id="E3",
                          display_name="C", roles=frozenset({"it"}))
    assert store.end_user("@b:corp.test") == 2
    assert store.get(one.sid) is None and store.get(two.sid) is None
    assert store.get(other.sid) is other
    store.end(other.sid)
    assert store.get(other.sid) is None and store.get(None) is None


def test_sessions_are_bounded() -> None:
    store = SessionStore(60, max_sessions=3, clock=Clock())
    first = store.anonymous()
    for _ in range(3):
        store.anonymous()
    assert len(store) == 3 and store.get(first.sid) is None


def test_login_limiter_counts_failures_in_a_sliding_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(3, 900, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("anna") == 0
        limiter.failed("anna")
        clock.now += 10
    assert limiter.retry_after("anna") == pytest.approx(900 - 30)
    assert limiter.retry_after("bert") == 0
    clock.now += 900 - 30 + 0.01
    assert limiter.retry_after("anna") == 0
    limiter.failed("anna")
    limiter.succeeded("anna")
    assert limiter.retry_after("anna") == 0


def test_every_text_exists_in_german_and_english() -> None:
    for key, texts in CATALOGUE.items():
        assert set(texts) == set(LANGUAGES), key
        assert all(texts[lang].strip() for lang in LANGUAGES), key
    assert translate("de", "access_ended", ms="41") == "Zugang beendet in 41 ms."
    assert translate("en", "results", count=3) == "3 found"


@pytest.mark.parametrize(("header", "cookie", "expected"), [
    ("de-DE,de;q=0.9,en;q=0.8", None, "de"),
    ("en-US,en;q=0.9,de;q=0.8", None, "en"),
    ("fr-FR,de;q=0.5,en;q=0.7", None, "en"),
    ("fr-FR,de;q=0.5", None, "de"),
    ("", None, "en"),
    (None, None, "en"),
    ("de", "en", "en"),
    ("en", "de", "de"),
    ("en", "xx", "en"),
    ("de;q=banana", None, "en"),
])
def test_language_from_browser_and_cookie(header: str | None, cookie: str | None,
                                          expected: str) -> None:
    assert pick_language(header, cookie) == expected


def test_search_folding() -> None:
    assert fold("Jürgen MÜLLER") == "jurgen muller"
    assert fold("Straße") == "strasse"
    assert fold("Zoë Ørsted") == "zoe orsted"
    assert fold("Łukasz Ærø") == "lukasz aero"
    assert fold("李 明") == "李 明"


@pytest.mark.parametrize(("value", "expected"), [
    ("/console/people?q=a", "/console/people?q=a"),
    ("//evil.example/x", "/console/"),
    ("https://evil.example/console/", "/console/"),
    ("/console/\\evil", "/console/"),
    ("/other", "/console/"),
    (None, "/console/"),
])
def test_redirects_stay_inside_the_console(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_plan_fingerprint_changes_with_any_action() -> None:
    view = PlanView(accounts=(("create", "create @a"),), rooms=(("add_member", "add @a"),),
                    problems=(), notes=(), deactivations=0, guard_trips=False)
    same = PlanView(accounts=(("create", "create @a"),), rooms=(("add_member", "add @a"),),
                    problems=(("x", "y"),), notes=("n",), deactivations=0, guard_trips=False)
    moved = PlanView(accounts=(("create", "create @a"), ("add_member", "add @a")), rooms=(),
                     problems=(), notes=(), deactivations=0, guard_trips=False)
    assert view.fingerprint == same.fingerprint
    assert view.fingerprint != moved.fingerprint
    assert PlanView(accounts=(), rooms=(), problems=(), notes=(), deactivations=37,
                    guard_trips=True).phrase == "deactivate 37"
