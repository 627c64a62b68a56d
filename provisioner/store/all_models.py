"""Every table the store has, registered on `Base.metadata` by importing its module.

Code that walks all tables (GDPR erasure) imports this, so no table is missed because its
model module happened not to be imported yet; tests/unit/test_store.py checks that the
list matches the migrations.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from provisioner.store import (  # noqa: F401 - imported for their tables
    announcement_models,
    gdpr_models,
    review_models,
    rooms_models,
    service_models,
)
from provisioner.store.models import Base


def metadata() -> MetaData:
    return Base.metadata
