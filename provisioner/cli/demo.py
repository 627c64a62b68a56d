"""The demo company: `config/demo/employees.csv` and `policies/` through the real sync.

`hauspost demo` configures the HR-export source, the example room policy and a published
demo password, then runs the same `sync` an IT admin would. Only for trying Hauspost out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from provisioner.homeserver.service_account import ensure_service_token
from provisioner.private_files import write_private
from provisioner.settings import Settings
from provisioner.sync.run import run_sync

logger = logging.getLogger(__name__)

DEMO_PASSWORD = "hauspost-demo"  # noqa: S105 - published demo password, documented in README
REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CSV = REPO_ROOT / "config" / "demo" / "employees.csv"
DEMO_POLICIES = REPO_ROOT / "policies"
DEMO_PASSWORD_FILE = "keys/demo_password"  # noqa: S105 - a path, not a secret


def demo_settings() -> dict[str, Any]:
    """The hauspost.yaml sections that make the demo company (merged into `init`'s file)."""
    columns = {role: role for role in ("employee_id", "display_name", "email", "department",
                                       "location", "manager_id", "groups", "status",
                                       "leave_date")}
    columns["localpart"] = "login"
    return {
        "directory": {
            "sources": ["hr_csv"],
            "time_zone": "Europe/Berlin",
            "hr_csv": {"path": str(DEMO_CSV), "columns": columns},
        },
        "sync": {"initial_password_file": DEMO_PASSWORD_FILE},
        "policies": str(DEMO_POLICIES),
    }


def write_demo_password(data_dir: Path) -> None:
    path = data_dir / DEMO_PASSWORD_FILE
    if not path.exists():
        write_private(path, DEMO_PASSWORD + "\n")


async def seed_demo_accounts(settings: Settings) -> list[str]:
    """Run the real sync for the demo company (idempotent); returns lines to show the user."""
    token = await ensure_service_token(settings)
    outcome = await run_sync(settings, token, actor="hauspost demo", progress=False)
    if outcome.status == "failed":
        logger.warning("demo sync had failures: %s", outcome.to_json().get("failures"))
    directory_rows = [ln for ln in DEMO_CSV.read_text(encoding="utf-8").splitlines()[1:] if ln]
    leavers = [row.split(";")[1] for row in directory_rows if ";left;" in row]
    actives = [row.split(";")[1] for row in directory_rows if ";active;" in row]
    rooms = f", {len(outcome.rooms.plan.actions)} room changes" if outcome.rooms else ""
    return [
        f"{len(actives)} demo employees (sync: {outcome.writes} writes{rooms}); log in as "
        f"e.g. {actives[0]} or {actives[1]} with the password {DEMO_PASSWORD!r}.",
        f"Leaver (no access): {', '.join(leavers)}.",
    ]
