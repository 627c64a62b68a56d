"""The `sync:` section of hauspost.yaml: how `hauspost sync` applies changes, validated once.

    sync:
      concurrency: 8            # admin-API requests in flight at once
      guard:
        max_count: 25           # refuse a run deactivating more than 25 accounts ...
        max_share: 0.10         # ... or more than 10 % of the managed accounts
      protected_accounts: ["@it-admin:example.com"]   # never touched (plus Synapse admins)
      initial_password_file: keys/initial_password     # demo mode without LDAP only

The company time zone (leave dates) lives in `directory.time_zone`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.validation import Section

_MXID = re.compile(r"^@[^:\s]+:[^\s]+$")


@dataclass(frozen=True)
class SyncSettings:
    concurrency: int = 8
    guard_max_count: int = 25
    guard_max_share: float = 0.10
    protected_accounts: tuple[str, ...] = ()
    #: Demo / no-LDAP mode: new and reactivated accounts get this password. None: no local
    #: password (employees log in with their LDAP password).
    initial_password_file: Path | None = None


def parse_sync(section: Section | None, base: Path) -> SyncSettings:
    if section is None:
        return SyncSettings()
    concurrency: int = section.int("concurrency", 8, minimum=1, maximum=64)
    guard = section.section("guard")
    max_count, max_share = 25, 0.10
    if guard is not None:
        max_count = guard.int("max_count", 25, minimum=0)
        max_share = guard.float("max_share", 0.10)
        if not 0.0 <= max_share <= 1.0:
            raise guard.error("max_share", f"expected a share between 0 and 1 (0.10 = 10 %), "
                                           f"got {max_share}")
        guard.done()
    protected: list[Any] = section.str_list("protected_accounts")
    for i, user_id in enumerate(protected):
        if not _MXID.match(user_id):
            raise section.error(f"protected_accounts[{i}]",
                                f"expected a Matrix ID like @admin:example.com, got {user_id!r}")
    if section.has("initial_password"):
        raise section.error("initial_password",
                            "secrets are not allowed inline; use initial_password_file")
    password_file = section.str("initial_password_file")
    # An absolute path replaces `base` (pathlib's `/`).
    password_path = base / password_file if password_file is not None else None
    section.done()
    return SyncSettings(concurrency=concurrency, guard_max_count=max_count,
                        guard_max_share=max_share, protected_accounts=tuple(protected),
                        initial_password_file=password_path)
