"""The directory's preferred language, as the announcements read it."""

from __future__ import annotations

import pytest

from provisioner.directory.language import preferred_language


@pytest.mark.parametrize(("raw", "expected"), [
    ("de", "de"), ("de-DE", "de"), ("DE_at", "de"), ("en-GB", "en"), ("tr", "tr"),
    ("en, de;q=0.8", "en"), ("de;q=0.5, en;q=0.9", "en"), ("fr;q=0, de", "de"),
    ("  Deutsch ", "de"), ("English", "en"), ("zh-Hant-TW", "zh"),
    (None, None), ("", None), ("*", None), ("de;q=x", None), ("klingon-language!", None),
    ("de;q=0", None), ("x-private, en", "en"),
])
def test_preferred_language(raw: str | None, expected: str | None) -> None:
    assert preferred_language(raw) == expected
