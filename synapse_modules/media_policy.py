"""Who may fetch a local file, and what may be uploaded: pure rules, no Synapse calls.

The download rule (docs/media-control.md explains it for admins and employees):

* nobody fetches anything without being logged in as a local user (Synapse deletes
  every access token of a deactivated account, so a logged-in user is active);
* the uploader may fetch their own file;
* an active employee may fetch it while they *currently* share a room with the
  uploader in which the uploader may post messages, and only while the uploader is
  still active (a read-only announcement room everyone is in does not count: the
  uploader could not have shared the file there);
* a file that is its uploader's own current profile picture may be fetched by every
  active employee (central tools upload a picture as the employee it belongs to).

"Shares a room with the uploader", not "can see the event", because the server
cannot read encrypted events: it never learns in which room an encrypted file was
posted. Tying access to the *uploader's* rooms makes forwarding useless: Bob
forwarding Alice's file into a room with Carol does not give Carol a room with Alice.

A withdrawn file is refused to everyone, the uploader included, by Synapse itself:
withdrawal marks it quarantined in the database, then deletes it (media_store.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synapse_modules._config import ConfigReader

# A MIME type as RFC 6838 spells it (lower case is enforced: we compare exactly).
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_SIZE = re.compile(r"^([0-9]+)\s*([KMG]?)B?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}

# What encrypted attachments look like to the server: random bytes, declared as
# application/octet-stream by every Matrix client. Refusing it refuses all E2EE files.
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class MediaGateConfig:
    """The validated `config:` of synapse_modules.media_gate.MediaGate."""

    allowed_media_types: frozenset[str]
    max_upload_bytes: int
    leaver_grace_period_days: int
    sweep_interval_minutes: int
    sweep_worker: str | None


def parse_size(reader: ConfigReader, key: str, default: str) -> int:
    """A size in Synapse's notation: "20M", "512K", "1G" or a plain number of bytes."""
    raw = reader.string(key, default)
    match = _SIZE.match(raw.strip())
    if match is None:
        raise reader.error(key, 'a size like "20M", "512K" or "1G"', raw)
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if value <= 0:
        raise reader.error(key, "a size above zero", raw)
    return value


def parse_media_gate_config(raw: object) -> MediaGateConfig:
    reader = ConfigReader(raw)
    types = reader.str_list("allowed_media_types", pattern=_MIME,
                            what="a lower-case MIME type like 'image/png'")
    if not types:
        raise reader.error("allowed_media_types", "at least one MIME type", list(types))
    config = MediaGateConfig(
        allowed_media_types=frozenset(types),
        max_upload_bytes=parse_size(reader, "max_upload_size", "50M"),
        leaver_grace_period_days=reader.integer("leaver_grace_period_days", 30, minimum=0,
                                                maximum=3650),
        sweep_interval_minutes=reader.integer("sweep_interval_minutes", 60, minimum=1,
                                              maximum=7 * 24 * 60),
        sweep_worker=reader.optional_str("sweep_worker"),
    )
    reader.finish()
    return config


# --- downloads --------------------------------------------------------------------


@dataclass(frozen=True)
class MediaFacts:
    """What the server knows about one local file and one requester."""

    uploader: str
    uploader_active: bool
    shares_room_with_uploader: bool
    is_profile_picture: bool


def may_fetch(requester: str | None, facts: MediaFacts | None) -> bool:
    """True if `requester` may fetch the file.

    `requester` is the local user Synapse authenticated for this request, None when
    nobody was (legacy endpoints) or the request came from another server.

    `facts` is None for an unknown media ID. Every refusal looks the same to the client
    (404), so a refused requester can't tell whether the ID exists.
    """
    if requester is None or facts is None:
        return False
    is_uploader = requester == facts.uploader
    colleague_of_active_uploader = facts.uploader_active and facts.shares_room_with_uploader
    return is_uploader or colleague_of_active_uploader or facts.is_profile_picture


def _level(value: object, default: int) -> int:
    # Old rooms may hold levels as strings; anything unreadable falls back to the default.
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return default


def may_post_messages(user_id: str, power_levels: Mapping[str, Any] | None,
                      creators: frozenset[str]) -> bool:
    """Could `user_id` send an (encrypted) message into a room with these power levels?

    Room creators of room version 12 hold unlimited power and are not listed in
    `users`; older versions list them, so counting creators as able is right for both.
    """
    if user_id in creators or power_levels is None:
        return True  # without a power-levels event everyone may send (spec)
    users = power_levels.get("users")
    events = power_levels.get("events")
    user_level = _level(power_levels.get("users_default"), 0)
    if isinstance(users, Mapping) and user_id in users:
        user_level = _level(users[user_id], user_level)
    needed = _level(power_levels.get("events_default"), 0)
    if isinstance(events, Mapping) and "m.room.encrypted" in events:
        needed = _level(events["m.room.encrypted"], needed)
    return user_level >= needed


# --- uploads ----------------------------------------------------------------------


def upload_size_allowed(config: MediaGateConfig, size: int) -> bool:
    return size <= config.max_upload_bytes


def _printable_text(head: bytes) -> str | None:
    """`head` as text if it is UTF-8 without control characters (binary data never is)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut off at the end of the sample is still text.
        if exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")
    if any(ord(ch) < 32 and ch not in "\t\n\r\f" for ch in text) or "\x7f" in text:
        return None
    return text


def _is_windows_executable(head: bytes) -> bool:
    # "MZ" alone is two bytes: random ciphertext starts with it once in 65,536 uploads.
    # The PE header the DOS stub points to makes a false match practically impossible.
    if len(head) < 64 or head[:2] != b"MZ":
        return False
    offset = int.from_bytes(head[60:64], "little")
    return head[offset:offset + 4] == b"PE\x00\x00"


def detect_media_type(head: bytes) -> str:
    """The MIME type of a file judged from its first bytes, not from what the client claims.

    The claim (Content-Type) is not visible to module callbacks, and a client could lie
    anyway. Anything unrecognised, which includes every encrypted attachment, is
    application/octet-stream.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"  # also .docx, .xlsx, .odt: they are zip files
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head.startswith(b"\x7fELF"):
        return "application/x-executable"
    if _is_windows_executable(head):
        return "application/x-msdownload"
    if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe"):
        return "application/x-mach-binary"
    text = _printable_text(head)
    if text is not None and text:
        lowered = text.lstrip("\ufeff \t\r\n").lower()
        if lowered.startswith("#!"):
            return "text/x-shellscript"
        if lowered.startswith(("<!doctype html", "<html")):
            return "text/html"
        if "<svg" in lowered[:1024]:
            return "image/svg+xml"
        return "text/plain"
    return OCTET_STREAM


def media_type_refusal(config: MediaGateConfig, detected: str) -> str | None:
    """The message for a refused upload, or None if the detected type is allowed."""
    if detected in config.allowed_media_types:
        return None
    allowed = ", ".join(sorted(config.allowed_media_types))
    return (f"Files of type {detected} may not be uploaded to this server "
            f"(judged from the file's content; allowed: {allowed})")


#: Declared content types of programs and scripts. A file declared as one of these is
#: refused whatever its bytes look like: the receiving app trusts the declaration when it
#: offers to open or run the file.
DECLARED_PROGRAM_TYPES = frozenset({
    "application/x-msdownload", "application/x-msdos-program", "application/x-msi",
    "application/vnd.microsoft.portable-executable", "application/x-dosexec",
    "application/x-executable", "application/x-elf", "application/x-mach-binary",
    "application/x-sh", "application/x-shellscript", "text/x-shellscript", "text/x-sh",
    "application/x-bat", "application/x-msbatch", "text/x-msdos-batch",
    "application/x-powershell", "text/x-powershell", "application/java-archive",
    "application/x-java-archive", "application/vnd.android.package-archive",
    "application/x-apple-diskimage", "application/hta", "text/vbscript",
    "application/x-vbscript", "application/javascript", "text/javascript",
})
#: File name endings of programs and scripts on Windows, macOS, Linux and Android.
PROGRAM_EXTENSIONS = frozenset({
    "exe", "com", "scr", "pif", "msi", "msp", "dll", "cpl", "bat", "cmd", "ps1", "psm1",
    "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta", "lnk", "reg", "jar", "apk", "app",
    "dmg", "pkg", "sh", "bash", "zsh", "run", "bin", "elf", "command", "desktop", "appimage",
})


def declared_upload_refusal(media_type: str | None, upload_name: str | None) -> str | None:
    """A file *declared* as a program or script (type or name), or None."""
    declared = (media_type or "").split(";", 1)[0].strip().lower()
    if declared in DECLARED_PROGRAM_TYPES:
        return (f"Files declared as {declared} may not be uploaded to this server "
                "(programs and scripts are refused)")
    name = (upload_name or "").strip().rstrip(". ").lower()
    extension = name.rsplit(".", 1)[1] if "." in name else ""
    if extension in PROGRAM_EXTENSIONS:
        return (f"Files named *.{extension} may not be uploaded to this server "
                "(programs and scripts are refused)")
    return None
