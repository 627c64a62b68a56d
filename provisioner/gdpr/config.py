"""The `data_protection:` section of hauspost.yaml: the leaver's data timeline.

    data_protection:
      erase_after_days: 0     # days after offboarding until the account is erased; 0: never
                              # automatically (erase by hand: hauspost gdpr erase)

Files follow the media gate's `leaver_grace_period_days` (30 by default, homeserver.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.validation import Section


@dataclass(frozen=True)
class DataProtectionSettings:
    erase_after_days: int = 0


def parse_data_protection(section: Section | None) -> DataProtectionSettings:
    if section is None:
        return DataProtectionSettings()
    days = section.int("erase_after_days", 0, minimum=0, maximum=36500)
    section.done()
    return DataProtectionSettings(erase_after_days=days)
