"""Announcement input checks and content: everything decided before any network call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from provisioner.announcements.compose import (
    CONTENT_KEY,
    AnnouncementInputError,
    read_attachment,
    render_html,
    text_content,
    validate_request,
)
from provisioner.announcements.media_limits import MediaLimits, limits_from_config
from provisioner.announcements.messages import CompanyLocale
from provisioner.errors import ConfigError

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
LIMITS = MediaLimits(max_upload_bytes=1000, allowed_media_types=frozenset(
    {"application/pdf", "image/png", "application/octet-stream"}), source="homeserver.yaml")


@pytest.mark.parametrize("body", ["", "   ", "\n\t\n"])
def test_empty_body_is_refused(body: str) -> None:
    with pytest.raises(AnnouncementInputError, match="^the announcement body is empty$"):
        validate_request(body, None, NOW)


@pytest.mark.parametrize("deadline", [NOW, NOW - timedelta(seconds=1), NOW - timedelta(days=400)])
def test_deadline_not_in_the_future_is_refused(deadline: datetime) -> None:
    with pytest.raises(AnnouncementInputError, match="is in the past"):
        validate_request("news", deadline, NOW)


def test_naive_deadline_is_refused() -> None:
    with pytest.raises(AnnouncementInputError, match="needs a time zone"):
        validate_request("news", datetime(2030, 1, 1), NOW)


def test_future_deadline_requires_acknowledgement_and_no_deadline_does_not() -> None:
    assert validate_request("news", NOW + timedelta(minutes=1), NOW).requires_ack
    assert not validate_request("news", None, NOW).requires_ack


def test_title_is_first_non_empty_line_without_heading_marks() -> None:
    assert validate_request("\n\n## Neue Regel  \nText", None, NOW).title == "Neue Regel"


def test_markdown_is_rendered_and_raw_html_is_escaped() -> None:
    html = render_html("**fett** <img src=x onerror=alert(1)>\n\n- a\n- b")
    assert "<strong>fett</strong>" in html
    assert "<img" not in html and "&lt;img" in html
    assert "<li>a</li>" in html


def test_text_content_carries_the_ack_line_and_marker() -> None:
    deadline = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    content = text_content(validate_request("Hallo", deadline, NOW), 7)
    assert content["msgtype"] == "m.text"
    assert content["format"] == "org.matrix.custom.html"
    assert content["body"] == ("Hallo\n\n**Please acknowledge by Tue 1 Dec 2026, 12:00 UTC:** "
                               "react with ✅ to this message.")
    assert content[CONTENT_KEY] == {"id": 7, "acknowledge_by": "2026-12-01T12:00:00+00:00"}
    assert text_content(validate_request("Hallo", None, NOW), 8)[CONTENT_KEY] == {"id": 8}


def test_ack_line_in_german_company_time() -> None:
    deadline = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
    berlin = CompanyLocale(ZoneInfo("Europe/Berlin"), "de")
    content = text_content(validate_request("Hallo", deadline, NOW), 7, berlin)
    assert content["body"] == ("Hallo\n\n**Bitte bis Mo., 7. Dez. 2026, 12:00 MEZ bestätigen:** "
                               "reagieren Sie mit ✅ auf diese Nachricht.")
    assert "<strong>Bitte bis Mo., 7. Dez. 2026, 12:00 MEZ bestätigen:</strong>" in (
        content["formatted_body"])
    # The machine-readable marker keeps the exact instant.
    assert content[CONTENT_KEY]["acknowledge_by"] == "2026-12-07T11:00:00+00:00"


def test_attachment_over_the_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "plan.pdf"
    big.write_bytes(b"%PDF" + b"0" * 997)
    with pytest.raises(AnnouncementInputError,
                       match=r"^attachment plan.pdf: 1001 bytes is over the server's upload "
                             r"limit of 1000 bytes \(homeserver.yaml\)$"):
        read_attachment(big, LIMITS)


def test_attachment_of_a_type_outside_the_media_policy_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html></html>")
    with pytest.raises(AnnouncementInputError, match="files of type text/html are not allowed"):
        read_attachment(page, LIMITS)


def test_missing_and_empty_attachments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AnnouncementInputError, match="No such file"):
        read_attachment(tmp_path / "nope.pdf", LIMITS)
    (tmp_path / "empty.pdf").write_bytes(b"")
    with pytest.raises(AnnouncementInputError, match="is empty"):
        read_attachment(tmp_path / "empty.pdf", LIMITS)


def test_allowed_attachment_is_read(tmp_path: Path) -> None:
    ok = tmp_path / "plan.pdf"
    ok.write_bytes(b"%PDF-1.4 hi")
    attachment = read_attachment(ok, LIMITS)
    assert (attachment.filename, attachment.mimetype, attachment.data) == (
        "plan.pdf", "application/pdf", b"%PDF-1.4 hi")


def test_limits_take_the_smaller_of_synapse_and_the_media_gate() -> None:
    config = {"max_upload_size": "100M", "modules": [
        {"module": "synapse_modules.membership.MembershipPolicy", "config": {}},
        {"module": "synapse_modules.media_gate.MediaGate",
         "config": {"max_upload_size": "20M", "allowed_media_types": ["image/png"]}}]}
    limits = limits_from_config(config, "hs.yaml")
    assert limits.max_upload_bytes == 20 * 1024 * 1024
    assert limits.allowed_media_types == frozenset({"image/png"})
    assert limits_from_config({"max_upload_size": "512K"}, "hs.yaml") == MediaLimits(
        512 * 1024, frozenset(), "hs.yaml")


def test_bad_size_in_homeserver_yaml_names_the_key() -> None:
    with pytest.raises(ConfigError, match="max_upload_size: expected a size"):
        limits_from_config({"max_upload_size": "lots"}, "hs.yaml")
