"""SCIM groups as employee groups, and SCIM people as directory records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.directory.scim_groups import groups_by_employee
from provisioner.store import Store, open_store
from provisioner.store.service_models import ScimResourceRow

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'hauspost.db'}")
    yield s
    s.close()


def _row(rid: str, kind: str, body: dict[str, Any], employee_id: str | None = None) -> Any:
    return ScimResourceRow(id=rid, resource_type=kind, body=body, employee_id=employee_id,
                           user_id=f"@{rid}:corp.test" if employee_id else None,
                           created_at=NOW, updated_at=NOW)


def test_groups_and_people(store: Store) -> None:
    with store.session() as s:
        s.add_all([
            _row("u1", "User", {"userName": "ann@corp.test", "displayName": "Ann"}, "E1"),
            _row("u2", "User", {"userName": "ben", "active": False}, "E2"),
            _row("g1", "Group", {"displayName": "Sales", "members": [{"value": "u1"},
                                                                     {"value": "u2"}]}),
            _row("g2", "Group", {"displayName": " Berlin ", "members": [{"value": "u1"},
                                                                        {"value": "ghost"}]}),
            _row("g3", "Group", {"displayName": "", "members": [{"value": "u1"}]}),
        ])
    with store.session() as s:
        assert groups_by_employee(s) == {"E1": frozenset({"Sales", "Berlin"}),
                                         "E2": frozenset({"Sales"})}
