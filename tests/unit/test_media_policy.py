"""The media gate's pure rules: config, who may fetch, what may be uploaded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from synapse.module_api.errors import ConfigError
from synapse.types import create_requester

from synapse_modules.media_gate import local_user_of
from synapse_modules.media_policy import (
    OCTET_STREAM,
    MediaFacts,
    MediaGateConfig,
    detect_media_type,
    may_fetch,
    may_post_messages,
    media_type_refusal,
    parse_media_gate_config,
    upload_size_allowed,
)
from synapse_modules.media_withdraw import parse_content_uri

ALICE, BOB, CAROL = "@alice:hauspost.test", "@bob:hauspost.test", "@carol:hauspost.test"

# --- config ----------------------------------------------------------------------------


def test_config_defaults_and_sizes() -> None:
    config = parse_media_gate_config({"allowed_media_types": ["image/png", OCTET_STREAM]})
    assert config == MediaGateConfig(
        allowed_media_types=frozenset({"image/png", OCTET_STREAM}),
        max_upload_bytes=50 * 1024 * 1024, leaver_grace_period_days=30,
        sweep_interval_minutes=60, sweep_worker=None)
    for raw, expected in (("20M", 20 * 1024**2), ("512K", 512 * 1024), ("1G", 1024**3),
                          ("1000", 1000), ("2mb", 2 * 1024**2)):
        parsed = parse_media_gate_config({"allowed_media_types": ["image/png"],
                                          "max_upload_size": raw})
        assert parsed.max_upload_bytes == expected, raw


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "allowed_media_types: required key is missing"),
    ({"allowed_media_types": []}, "allowed_media_types: expected at least one MIME type"),
    ({"allowed_media_types": ["Image/PNG"]},
     "allowed_media_types[0]: expected a lower-case MIME type like 'image/png', got 'Image/PNG'"),
    ({"allowed_media_types": "image/png"}, "allowed_media_types: expected a list of"),
    ({"allowed_media_types": ["image/png"], "max_upload_size": "20 parsecs"},
     "max_upload_size: expected a size like \"20M\", \"512K\" or \"1G\", got '20 parsecs'"),
    ({"allowed_media_types": ["image/png"], "max_upload_size": "0M"},
     "max_upload_size: expected a size above zero, got '0M'"),
    ({"allowed_media_types": ["image/png"], "leaver_grace_period_days": -1},
     "leaver_grace_period_days: expected an integer >= 0, got -1"),
    ({"allowed_media_types": ["image/png"], "sweep_interval_minutes": 0},
     "sweep_interval_minutes: expected an integer >= 1, got 0"),
    ({"allowed_media_types": ["image/png"], "allowed_mime_types": ["x/y"]},
     "allowed_mime_types: unknown key"),
])
def test_config_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_media_gate_config(raw)
    assert message in excinfo.value.msg


# --- who may fetch ------------------------------------------------------------------------

ROOM_MATE = MediaFacts(uploader=ALICE, uploader_active=True,
                       shares_room_with_uploader=True,
                       is_profile_picture=False)
STRANGER = replace(ROOM_MATE, shares_room_with_uploader=False)


@pytest.mark.parametrize(("requester", "facts", "allowed"), [
    (BOB, ROOM_MATE, True),
    (ALICE, STRANGER, True),  # the uploader, with nobody in her rooms
    (CAROL, STRANGER, False),  # an employee outside Alice's rooms
    (CAROL, None, False),  # unknown media ID
    (None, ROOM_MATE, False),  # unauthenticated
    (BOB, replace(ROOM_MATE, uploader_active=False), False),  # a leaver's files
    (CAROL, replace(STRANGER, is_profile_picture=True), True),
])
def test_who_may_fetch(requester: str | None, facts: MediaFacts | None, allowed: bool) -> None:
    assert may_fetch(requester, facts) is allowed


def test_only_authenticated_local_users_count_as_requesters() -> None:
    def is_mine(user_id: str) -> bool:
        return user_id.endswith(":hauspost.test")

    assert local_user_of(create_requester(BOB), is_mine) == BOB
    assert local_user_of(None, is_mine) is None  # legacy endpoints: nobody authenticated
    assert local_user_of("other.example", is_mine) is None  # federation: origin server
    assert local_user_of(create_requester("@mallory:other.example"), is_mine) is None
    assert local_user_of(create_requester(BOB, is_guest=True), is_mine) is None


# --- uploads ----------------------------------------------------------------------------


def _pe() -> bytes:
    exe = bytearray(256)
    exe[0:2] = b"MZ"
    exe[60:64] = (128).to_bytes(4, "little")
    exe[128:132] = b"PE\x00\x00"
    return bytes(exe)


@pytest.mark.parametrize(("head", "expected"), [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
    (b"GIF89a....", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"%PDF-1.7\n", "application/pdf"),
    (b"PK\x03\x04\x14\x00", "application/zip"),
    (b"OggS\x00\x02", "audio/ogg"),
    (b"\x00\x00\x00\x18ftypheic", "image/heic"),
    (b"\x00\x00\x00\x18ftypisom", "video/mp4"),
    (b"\x00\x00\x00\x14ftypqt  ", "video/quicktime"),
    (b"\x7fELF\x02\x01\x01", "application/x-executable"),
    (_pe(), "application/x-msdownload"),
    (b"MZ" + b"\x00" * 200, OCTET_STREAM),  # "MZ" alone is not enough: ciphertext can start so
    (b"\xcf\xfa\xed\xfe\x07\x00", "application/x-mach-binary"),
    (b"#!/bin/sh\necho hi\n", "text/x-shellscript"),
    (b"<!DOCTYPE html><html>", "text/html"),
    (b"<?xml version='1.0'?>\n<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    ("Protokoll der Sitzung, Gr\u00fc\u00dfe".encode(), "text/plain"),
    ("cut in the middle: \u00e4".encode()[:-1], "text/plain"),
    (bytes(range(256)), OCTET_STREAM),
    (b"", OCTET_STREAM),
])
def test_detect_media_type(head: bytes, expected: str) -> None:
    assert detect_media_type(head) == expected


def test_random_ciphertext_is_octet_stream() -> None:
    import random

    # Encrypted attachments must never be mistaken for a refused type.
    rng = random.Random(5)  # noqa: S311 - reproducible stand-in for ciphertext
    for _ in range(2000):
        assert detect_media_type(rng.randbytes(4096)) == OCTET_STREAM


def test_refusal_message_and_size_limit() -> None:
    config = parse_media_gate_config({"allowed_media_types": ["image/png", OCTET_STREAM],
                                      "max_upload_size": "1K"})
    assert media_type_refusal(config, "image/png") is None
    assert media_type_refusal(config, "text/html") == (
        "Files of type text/html may not be uploaded to this server (judged from the "
        "file's content; allowed: application/octet-stream, image/png)")
    assert upload_size_allowed(config, 1024) is True
    assert upload_size_allowed(config, 1025) is False


# --- the withdraw request ----------------------------------------------------------------


def test_withdraw_request_parsing() -> None:
    from synapse.module_api.errors import SynapseError

    assert parse_content_uri({"content_uri": "mxc://hauspost.test/AbC_d-9"},
                             "hauspost.test") == "AbC_d-9"
    cases = [
        ({}, 400, "M_MISSING_PARAM"),
        ({"content_uri": 5}, 400, "M_INVALID_PARAM"),
        ({"content_uri": "mxc://hauspost.test/../etc/passwd"}, 400, "M_INVALID_PARAM"),
        ({"content_uri": "mxc://other.example/abc"}, 400, "M_INVALID_PARAM"),
        ({"content_uri": "mxc://hauspost.test/abc", "reason": "x"}, 400, "M_BAD_JSON"),
    ]
    for body, code, errcode in cases:
        with pytest.raises(SynapseError) as excinfo:
            parse_content_uri(body, "hauspost.test")
        assert (excinfo.value.code, excinfo.value.errcode) == (code, errcode), body


@pytest.mark.parametrize(("levels", "creators", "allowed"), [
    (None, frozenset(), True),  # no power levels: everyone may send
    ({}, frozenset(), True),
    ({"events_default": 50}, frozenset(), False),  # read-only room
    ({"events_default": 50}, frozenset({ALICE}), True),  # v12 creator: unlimited power
    ({"events_default": 50, "users": {ALICE: 50}}, frozenset(), True),
    ({"events_default": 50, "users_default": 50}, frozenset(), True),
    ({"events_default": 0, "events": {"m.room.encrypted": 100}}, frozenset(), False),
    ({"events_default": 100, "events": {"m.room.encrypted": 0}}, frozenset(), True),
    ({"events_default": "50", "users": {ALICE: "50"}}, frozenset(), True),  # old string levels
    ({"events_default": 50, "users": {ALICE: "lots"}}, frozenset(), False),  # unreadable
    ({"events_default": 50, "users": {BOB: 100}}, frozenset({BOB}), False),
])
def test_may_post_messages(levels: dict[str, Any] | None, creators: frozenset[str],
                           allowed: bool) -> None:
    assert may_post_messages(ALICE, levels, creators) is allowed
