"""`announcements.yaml` (optional, next to hauspost.yaml): the bot, reminders, retention.

    bot_localpart: hauspost-bot
    bot_display_name: Hauspost
    reminder_hours_before_deadline: [24, 0]   # 0 = at the deadline
    reminder_not_before_share: 0.5    # no reminder before half the time to the deadline passed
    reminder_quiet_hours_after_sending: 1     # and none in the first hour after sending
    retention_days: 90      # per-person rows deleted this long after the deadline
    language: de            # de | en; default: de for Europe/Berlin, Vienna, Zurich, else en
    direct_chats_ahead_seconds: 30    # per tick: open reminder chats ahead (0 = only when due)

Kept in its own file so the announcement feature can be configured without touching the
account sync's settings; every key is validated and unknown keys are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from provisioner.errors import ConfigError
from provisioner.validation import Section

ANNOUNCEMENTS_FILE = "announcements.yaml"
_LOCALPART = re.compile(r"^[a-z0-9._=/+-]+$")
#: The languages of provisioner/announcements/messages.py (this layer may not import it).
LANGUAGES = ("de", "en")


@dataclass(frozen=True)
class AnnouncementConfig:
    bot_localpart: str = "hauspost-bot"
    bot_display_name: str = "Hauspost"
    #: Hours before the deadline at which a reminder goes out, largest first.
    reminder_hours: tuple[int, ...] = (24, 0)
    retention_days: int = 90
    #: Share of the time between sending and the deadline that passes before any reminder.
    reminder_not_before_share: float = 0.5
    #: Hours after sending in which no reminder goes out, however close the deadline.
    reminder_quiet_hours: float = 1.0
    #: "de" or "en"; None: decided by the company time zone (messages.default_language).
    language: str | None = None
    #: Seconds per tick spent opening the direct chats later reminders will need (0: open
    #: them only when a reminder is due).
    direct_chats_ahead_seconds: float = 30.0


def parse_announcement_config(data: object, file: str) -> AnnouncementConfig:
    top = Section(data, file=file)
    localpart: str = top.str("bot_localpart", "hauspost-bot")
    if not _LOCALPART.match(localpart):
        raise top.error("bot_localpart", f"expected a Matrix localpart like hauspost-bot, "
                                         f"got {localpart!r}")
    display: str = top.str("bot_display_name", "Hauspost")
    raw_hours = top.raw("reminder_hours_before_deadline")
    hours: list[int] = [24, 0] if raw_hours is None else []
    if raw_hours is not None:
        if not isinstance(raw_hours, list):
            raise top.error("reminder_hours_before_deadline",
                            f"expected a list of whole hours like [24, 0], got {raw_hours!r}")
        for i, value in enumerate(raw_hours):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 24 * 60:
                raise ConfigError(f"expected whole hours between 0 and 1440, got {value!r}",
                                  file=file, key=f"reminder_hours_before_deadline[{i}]")
            hours.append(value)
        if len(set(hours)) != len(hours):
            raise top.error("reminder_hours_before_deadline", f"duplicate values in {hours}")
    retention: int = top.int("retention_days", 90, minimum=0, maximum=3650)
    share: float = top.float("reminder_not_before_share", 0.5)
    if not 0.0 <= share < 1.0:
        raise top.error("reminder_not_before_share",
                        f"expected a share of the time to the deadline from 0 to below 1 "
                        f"(0.5 = half), got {share!r}")
    quiet: float = top.float("reminder_quiet_hours_after_sending", 1.0)
    if not 0.0 <= quiet <= 24 * 7:
        raise top.error("reminder_quiet_hours_after_sending",
                        f"expected hours from 0 to 168, got {quiet!r}")
    ahead: float = top.float("direct_chats_ahead_seconds", 30.0)
    if not 0.0 <= ahead <= 3600.0:
        raise top.error("direct_chats_ahead_seconds",
                        f"expected seconds from 0 to 3600, got {ahead!r}")
    language: str | None = top.str("language", None)
    if language is not None and language not in LANGUAGES:
        raise top.error("language", f"expected one of {', '.join(LANGUAGES)}, got {language!r}")
    top.done()
    return AnnouncementConfig(bot_localpart=localpart, bot_display_name=display,
                              reminder_hours=tuple(sorted(hours, reverse=True)),
                              retention_days=retention, reminder_not_before_share=share,
                              reminder_quiet_hours=quiet, language=language,
                              direct_chats_ahead_seconds=ahead)


def load_announcement_config(data_dir: Path) -> AnnouncementConfig:
    path = data_dir / ANNOUNCEMENTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AnnouncementConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", file=str(path)) from None
    return parse_announcement_config(data, str(path))
