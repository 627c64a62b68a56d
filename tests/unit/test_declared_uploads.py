"""What a file is declared as (type, name) decides too, not only its bytes."""

from __future__ import annotations

import pytest

from synapse_modules.media_policy import declared_upload_refusal

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("media_type", "name", "refused"), [
    ("image/png", "foto.png", None),
    ("application/pdf", "Vertrag 2027.pdf", None),
    ("application/octet-stream", None, None),            # every E2EE attachment
    ("application/octet-stream", "bericht", None),
    (None, None, None),
    ("application/x-msdownload", "foto.png", "declared as application/x-msdownload"),
    ("Application/X-SH; charset=utf-8", "a.txt", "declared as application/x-sh"),
    ("text/javascript", "a.txt", "declared as text/javascript"),
    ("image/png", "rechnung.pdf.exe", "named *.exe"),
    ("text/plain", "START.BAT", "named *.bat"),
    ("text/plain", "setup.ps1. ", "named *.ps1"),
    ("application/zip", "app-release.apk", "named *.apk"),
    ("text/plain", "notes.sh.txt", None),                # ends in .txt: a text file
])
def test_declared_upload_refusal(media_type: str | None, name: str | None,
                                 refused: str | None) -> None:
    refusal = declared_upload_refusal(media_type, name)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal
