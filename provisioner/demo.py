"""The demo company: employees from config/demo/employees.csv become accounts with a demo password.

Only for `hauspost demo`. Real deployments use `hauspost sync` (LDAP / HR) instead.
"""

from __future__ import annotations

import csv
import logging
from datetime import date
from pathlib import Path

from provisioner.employee import Employee, Status
from provisioner.service_account import ensure_service_token
from provisioner.settings import Settings
from provisioner.synapse_admin import SynapseAdmin

logger = logging.getLogger(__name__)

DEMO_PASSWORD = "hauspost-demo"  # noqa: S105 - published demo password, documented in README
DEMO_CSV = Path(__file__).resolve().parent.parent / "config" / "demo" / "employees.csv"


def read_demo_employees(path: Path = DEMO_CSV) -> list[Employee]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    return [
        Employee(
            employee_id=row["employee_id"], localpart=row["login"],
            display_name=row["display_name"], email=row["email"] or None,
            department=row["department"] or None, location=row["location"] or None,
            manager_id=row["manager_id"] or None,
            status=Status.ACTIVE if row["status"] == "active" else Status.INACTIVE,
            leave_date=date.fromisoformat(row["leave_date"]) if row["leave_date"] else None,
        )
        for row in rows
    ]


async def seed_demo_accounts(settings: Settings) -> list[str]:
    """Create the demo accounts (idempotent); returns lines to show the user."""
    token = await ensure_service_token(settings)
    employees = read_demo_employees()
    active = [e for e in employees if e.status is Status.ACTIVE]
    async with SynapseAdmin(settings.homeserver_url, token) as admin:
        for emp in employees:
            user_id = f"@{emp.localpart}:{settings.server_name}"
            current = await admin.get_account(user_id)
            if emp.status is Status.ACTIVE and current is None:
                await admin.upsert_account(user_id, display_name=emp.display_name,
                                           password=DEMO_PASSWORD, email=emp.email)
            elif emp.status is Status.INACTIVE and current is not None and not current.deactivated:
                await admin.deactivate(user_id)
    leavers = [e for e in employees if e.status is Status.INACTIVE]
    return [
        f"{len(active)} demo employees; log in as e.g. {active[0].localpart} "
        f"or {active[1].localpart} with the password {DEMO_PASSWORD!r}.",
        f"Leaver (no access): {', '.join(e.localpart for e in leavers)}.",
    ]
