"""What an announcement says: validated request, Markdown rendered to HTML, event content.

Everything here runs before any network call, so bad input (empty body, deadline in the
past, oversize or forbidden attachment) stops `hauspost announce` with nothing sent.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from provisioner.announcements.media_limits import MediaLimits
from provisioner.announcements.messages import UTC_ENGLISH, CompanyLocale, ack_line
from provisioner.errors import HauspostError

ACK_KEY = "✅"
#: Custom key inside the encrypted content: clients ignore it, the bot reads it back.
CONTENT_KEY = "de.hauspost.announcement"


class AnnouncementInputError(HauspostError):
    """Bad input to `hauspost announce`: nothing was sent."""

    exit_code = 2


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes
    mimetype: str


@dataclass(frozen=True)
class AnnouncementRequest:
    body: str
    deadline: datetime | None = None
    attachment: Attachment | None = None

    @property
    def requires_ack(self) -> bool:
        return self.deadline is not None

    @property
    def title(self) -> str:
        first = next((line for line in self.body.splitlines() if line.strip()), "")
        return first.strip().lstrip("#").strip()[:200]


# Raw HTML in the Markdown source is shown as text: an announcement can't smuggle markup
# (or tracking pixels) into every client.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_html(markdown: str) -> str:
    return str(_MARKDOWN.render(markdown)).strip()


def read_attachment(path: Path, limits: MediaLimits) -> Attachment:
    """Read and check a file against the media gate's size and type limits."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AnnouncementInputError(f"attachment {path}: {exc.strerror or exc}") from None
    check_attachment_size(path.name, size, limits)
    return check_attachment(path.name, path.read_bytes(), limits)


def check_attachment_size(filename: str, size: int, limits: MediaLimits) -> None:
    if size > limits.max_upload_bytes:
        raise AnnouncementInputError(
            f"attachment {filename}: {size} bytes is over the server's upload limit of "
            f"{limits.max_upload_bytes} bytes ({limits.source})")
    if size == 0:
        raise AnnouncementInputError(f"attachment {filename} is empty")


def check_attachment(filename: str, data: bytes, limits: MediaLimits) -> Attachment:
    """The same checks for bytes already in hand (the console's upload)."""
    check_attachment_size(filename, len(data), limits)
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if limits.allowed_media_types and mimetype not in limits.allowed_media_types:
        raise AnnouncementInputError(
            f"attachment {filename}: files of type {mimetype} are not allowed by the media "
            f"policy (allowed: {', '.join(sorted(limits.allowed_media_types))})")
    return Attachment(filename=filename, data=data, mimetype=mimetype)


def validate_request(body: str, deadline: datetime | None, now: datetime,
                     attachment: Attachment | None = None) -> AnnouncementRequest:
    if not body.strip():
        raise AnnouncementInputError("the announcement body is empty")
    if deadline is not None:
        if deadline.tzinfo is None:
            raise AnnouncementInputError("the deadline needs a time zone (e.g. +01:00 or Z)")
        if deadline <= now:
            raise AnnouncementInputError(
                f"the deadline {deadline.isoformat()} is in the past (now "
                f"{now.astimezone(deadline.tzinfo).isoformat(timespec='minutes')})")
    return AnnouncementRequest(body=body, deadline=deadline, attachment=attachment)


def text_content(request: AnnouncementRequest, announcement_id: int,
                 locale: CompanyLocale = UTC_ENGLISH) -> dict[str, Any]:
    """The m.room.message content (encrypted before it leaves the bot); the deadline in the
    company's time and language."""
    body = request.body.strip()
    marker: dict[str, Any] = {"id": announcement_id}
    if request.deadline is not None:
        body = f"{body}\n\n{ack_line(request.deadline, locale)}"
        marker["acknowledge_by"] = request.deadline.isoformat()
    return {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
            "formatted_body": render_html(body), CONTENT_KEY: marker}


def file_content(attachment: Attachment, mxc: str, keys: dict[str, Any],
                 announcement_id: int) -> dict[str, Any]:
    msgtype = "m.image" if attachment.mimetype.startswith("image/") else "m.file"
    return {"msgtype": msgtype, "body": attachment.filename,
            "file": {**keys, "url": mxc},
            "info": {"mimetype": attachment.mimetype, "size": len(attachment.data)},
            CONTENT_KEY: {"id": announcement_id}}
