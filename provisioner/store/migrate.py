"""Bring a database to the newest schema with Alembic's Python API (no alembic.ini)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revisions() -> frozenset[str]:
    """Every head of the migration scripts (feature branches may each add one)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads())


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration in one transaction; a no-op when already current."""
    heads = head_revisions()
    if current_revisions(engine) == heads:
        return
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        # "heads", not "head": independent feature branches are all applied.
        command.upgrade(config, "heads")
    logger.info("store migrated to %s", ", ".join(sorted(heads)))
