"""The account plan's policy for one installation: protected accounts, guard, time zone.

The one place the company time zone and the protected set are derived from the settings;
the account sync, the room sync, offboarding and the service all ask `policy_for`.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from provisioner.accounts.bot_account import bot_user_id
from provisioner.accounts.plan import GuardSettings, PlanPolicy
from provisioner.announcements.config import AnnouncementConfig, load_announcement_config
from provisioner.directory.read import directory_config
from provisioner.errors import ConfigError
from provisioner.settings import Settings

logger = logging.getLogger(__name__)


def _announcement_bot(settings: Settings) -> str:
    try:
        config = load_announcement_config(settings.data_dir)
    except ConfigError as exc:
        # Offboarding must not wait for a typo in announcements.yaml; the room sync and
        # `hauspost announce` refuse the broken file themselves.
        logger.warning("protecting the default announcement bot: %s", exc)
        config = AnnouncementConfig()
    return bot_user_id(config, settings.server_name)


def policy_for(settings: Settings) -> PlanPolicy:
    # The announcement bot belongs to hauspost, not to an employee (docs/announcements.md).
    protected = frozenset({settings.service_user_id, *settings.protected_accounts,
                           *settings.sync.protected_accounts, _announcement_bot(settings)})
    try:
        directory = directory_config(settings)
        tz, unexplained = directory.time_zone, directory.unexplained
    except ConfigError:
        # No source configured: reading the directory will say so.
        tz, unexplained = ZoneInfo("UTC"), "report"
    return PlanPolicy(server_name=settings.server_name, protected=protected,
                      guard=GuardSettings(settings.sync.guard_max_count,
                                          settings.sync.guard_max_share),
                      time_zone=tz, unexplained=unexplained)
