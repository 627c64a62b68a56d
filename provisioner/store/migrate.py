"""Bring a database to the newest schema with Alembic's Python API (no alembic.ini).

Alembic (with Mako and Pygments) costs ~130 ms to import; every `hauspost offboard`
opens the store, so the common case — already current — is decided with one SELECT on
`alembic_version` against `HEADS`, and Alembic is imported only when there is work to do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

#: The newest revision(s). A unit test checks this against the migration scripts, so a new
#: migration that forgets to update it fails the suite.
HEADS = frozenset({"v0009_employee_language"})


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revisions() -> frozenset[str]:
    """Every head of the migration scripts, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return frozenset()
        rows = conn.execute(text("SELECT version_num FROM alembic_version"))
        return frozenset(str(row[0]) for row in rows)


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration in one transaction; a no-op when already current."""
    if current_revisions(engine) == HEADS:
        return
    from alembic import command

    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        # "heads", not "head": independent feature branches are all applied.
        command.upgrade(config, "heads")
    logger.info("store migrated to %s", ", ".join(sorted(head_revisions())))
