"""`provisioner.store.all_models` names every table the migrations create: code that walks
all tables (GDPR erasure) must never miss one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from provisioner.store import open_store
from provisioner.store.all_models import metadata


def test_all_models_cover_every_migrated_table(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    try:
        migrated = set(inspect(store.engine).get_table_names()) - {"alembic_version"}
    finally:
        store.close()
    assert set(metadata().tables) == migrated
