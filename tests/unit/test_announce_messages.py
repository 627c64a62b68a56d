"""The announcement catalogue: every key in both languages, same placeholders; language
default from the company time zone."""

from __future__ import annotations

import string
from zoneinfo import ZoneInfo

import pytest

from provisioner.announcements.config import LANGUAGES as CONFIG_LANGUAGES
from provisioner.announcements.messages import (
    CATALOGUE,
    LANGUAGES,
    CompanyLocale,
    default_language,
    room_name,
    text,
)

pytestmark = pytest.mark.unit


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(CATALOGUE))
def test_every_key_in_every_language_with_the_same_placeholders(key: str) -> None:
    entry = CATALOGUE[key]
    assert set(entry) == set(LANGUAGES)
    assert all(entry[lang].strip() for lang in LANGUAGES)
    assert _fields(entry["de"]) == _fields(entry["en"])


def test_config_accepts_exactly_the_catalogue_languages() -> None:
    assert CONFIG_LANGUAGES == LANGUAGES == ("de", "en")


@pytest.mark.parametrize(("zone", "language"), [
    ("Europe/Berlin", "de"), ("Europe/Vienna", "de"), ("Europe/Zurich", "de"),
    ("UTC", "en"), ("Europe/London", "en"), ("Europe/Paris", "en")])
def test_default_language_follows_the_company_time_zone(zone: str, language: str) -> None:
    assert default_language(ZoneInfo(zone)) == language


def test_text_fills_placeholders_and_room_names_are_local() -> None:
    assert text("missing", "de", count=3) == "Nicht bestätigt (3)"
    from datetime import UTC, datetime
    sent = datetime(2026, 12, 7, 7, 30, tzinfo=UTC)
    assert room_name(sent, CompanyLocale(ZoneInfo("Europe/Berlin"), "de")) == (
        "📢 Ankündigung Mo., 7. Dez. 2026, 08:30 MEZ")
    assert room_name(sent, CompanyLocale(ZoneInfo("UTC"), "en")) == (
        "📢 Announcement Mon 7 Dec 2026, 07:30 UTC")
