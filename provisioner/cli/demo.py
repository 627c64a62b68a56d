"""The demo company: `config/demo/employees.csv` and `policies/` through the real sync.

`hauspost demo` configures the HR-export source, the example room policy and a published
demo password, then runs the same `sync` an IT admin would. Only for trying Hauspost out.

The demo company ships inside the package (`demo_company/`: in a checkout, links to
`config/demo/employees.csv` and `policies/muster-gmbh.yaml`, which setuptools packs as
files), read through importlib.resources and copied into the data directory, so a wheel
from `pip install` runs the same demo as a git checkout.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Any

from provisioner.homeserver.service_account import ensure_service_token
from provisioner.private_files import write_private
from provisioner.settings import Settings
from provisioner.sync.run import run_sync

logger = logging.getLogger(__name__)

DEMO_PASSWORD = "hauspost-demo"  # noqa: S105 - published demo password, documented in README
DEMO_PASSWORD_FILE = "keys/demo_password"  # noqa: S105 - a path, not a secret
#: Where in the data directory the demo company is copied.
DEMO_DIR = "demo-company"
DEMO_CSV = f"{DEMO_DIR}/employees.csv"
DEMO_POLICIES = f"{DEMO_DIR}/policies"


def demo_company_text() -> dict[str, str]:
    """The demo company's files, by path relative to DEMO_DIR, from the package."""
    package = files("provisioner.cli") / "demo_company"
    texts = {"employees.csv": (package / "employees.csv").read_text(encoding="utf-8")}
    for entry in (package / "policies").iterdir():
        if entry.name.endswith(".yaml"):
            texts[f"policies/{entry.name}"] = entry.read_text(encoding="utf-8")
    return texts


def write_demo_company(data_dir: Path) -> None:
    """Copy the demo company into the data directory (kept current on every start)."""
    for relative, text in demo_company_text().items():
        path = data_dir / DEMO_DIR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def demo_settings(data_dir: Path) -> dict[str, Any]:
    """The hauspost.yaml sections that make the demo company (merged into `init`'s file)."""
    columns = {role: role for role in ("employee_id", "display_name", "email", "department",
                                       "location", "manager_id", "groups", "status",
                                       "leave_date")}
    columns["localpart"] = "login"
    return {
        "directory": {
            "sources": ["hr_csv"],
            "time_zone": "Europe/Berlin",
            "hr_csv": {"path": str(data_dir / DEMO_CSV), "columns": columns},
        },
        "sync": {"initial_password_file": DEMO_PASSWORD_FILE},
        "policies": str(data_dir / DEMO_POLICIES),
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
    csv = demo_company_text()["employees.csv"]
    directory_rows = [ln for ln in csv.splitlines()[1:] if ln]
    leavers = [row.split(";")[1] for row in directory_rows if ";left;" in row]
    actives = [row.split(";")[1] for row in directory_rows if ";active;" in row]
    rooms = f", {len(outcome.rooms.plan.actions)} room changes" if outcome.rooms else ""
    return [
        f"{len(actives)} demo employees (sync: {outcome.writes} writes{rooms}); log in as "
        f"e.g. {actives[0]} or {actives[1]} with the password {DEMO_PASSWORD!r}.",
        f"Leaver (no access): {', '.join(leavers)}.",
    ]
