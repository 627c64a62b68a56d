"""The leaver's data timeline, run by `hauspost gdpr timeline` (cron) and `hauspost serve`:

1. offboarding ends access at once (provisioner/accounts/offboard.py);
2. the media gate deletes the leaver's files after `leaver_grace_period_days` — except files
   under legal hold, which this run keeps protected (Synapse's media protect flag);
3. `data_protection.erase_after_days` after offboarding the account is erased
   (provisioner/gdpr/erase.py) — unless the person is on legal hold.
Every step is audited; a failure for one person is reported and the others proceed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from provisioner.errors import HauspostError
from provisioner.gdpr.erase import due_for_erasure, erase_person
from provisioner.gdpr.holds import held_employee_ids
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store.models import AccountRow

logger = logging.getLogger(__name__)

TIMELINE_ACTOR = "hauspost-timeline"


async def user_media(admin: SynapseAdmin, user_id: str) -> list[dict[str, Any]]:
    media: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        resp = await admin.request(
            "GET", f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/media"
                   f"?limit=500&from={start}")
        body = resp.json()
        media.extend(body.get("media", []))
        start = body.get("next_token")
    return media


async def protect_media(admin: SynapseAdmin, user_id: str, *, protect: bool) -> int:
    """Set or clear Synapse's protect flag on every file the person uploaded."""
    changed = 0
    verb = "protect" if protect else "unprotect"
    for item in await user_media(admin, user_id):
        if bool(item.get("safe_from_quarantine")) == protect:
            continue
        await admin.request("POST", f"/_synapse/admin/v1/media/{verb}/"
                                    f"{quote(item['media_id'], safe='')}")
        changed += 1
    return changed


@dataclass
class TimelineResult:
    erased: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    files_protected: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"erased": self.erased, "withheld_by_legal_hold": self.withheld,
                "failed": [{"employee_id": e, "error": m} for e, m in self.failed],
                "files_protected": self.files_protected}


async def run_timeline(settings: Settings, store: Store, *, now: datetime | None = None,
                       actor: str = TIMELINE_ACTOR) -> TimelineResult:
    now = now or datetime.now(UTC)
    result = TimelineResult()
    held = held_employee_ids(store)
    if held:
        with store.session() as session:
            users = session.scalars(select(AccountRow.user_id).where(
                AccountRow.employee_id.in_(held), AccountRow.erased_at.is_(None))).all()
        token = await ensure_service_token(settings)
        async with SynapseAdmin(settings.homeserver_url, token) as admin:
            for user_id in users:
                result.files_protected += await protect_media(admin, user_id, protect=True)
    due, result.withheld = due_for_erasure(store, now, settings.data_protection.erase_after_days)
    for employee_id in due:
        try:
            report = await erase_person(
                settings, store, employee_id, actor=actor, now=datetime.now(UTC),
                reason=f"leaver timeline: {settings.data_protection.erase_after_days} days "
                       "after offboarding")
        except HauspostError as exc:
            logger.error("timeline: erasing employee %s failed: %s", employee_id, exc)
            result.failed.append((employee_id, str(exc)))
            continue
        result.erased.append(report.subject)
    return result


async def protect_user_files(settings: Settings, store: Store, employee_id: str, *,
                             protect: bool) -> int:
    """Protect (hold set) or release (hold lifted) the files of one person's account."""
    with store.session() as session:
        user_id = session.scalar(select(AccountRow.user_id).where(
            AccountRow.employee_id == employee_id))
    if user_id is None:
        return 0
    token = await ensure_service_token(settings)
    async with SynapseAdmin(settings.homeserver_url, token) as admin:
        return await protect_media(admin, user_id, protect=protect)
