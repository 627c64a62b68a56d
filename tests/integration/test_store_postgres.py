"""The provisioner's store on a real PostgreSQL: every migration, the same checks as SQLite.

The store checks of tests/unit/test_store.py that take only a `store` run unchanged
against a fresh PostgreSQL database each (migrated to head by `open_store`), so the
append-only triggers, the write-once link, the run lock and the group commit are proven
on both backends.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text

import tests.unit.test_store as store_checks
from provisioner.store import Store, open_store
from provisioner.store.migrate import current_revisions, head_revisions
from tests.harness.postgres_server import PostgresServer, start_postgres

_names = itertools.count(1)

STORE_CHECKS = sorted(
    name for name, fn in vars(store_checks).items()
    if name.startswith("test_") and callable(fn)
    and list(inspect.signature(fn).parameters) == ["store"])


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_store(postgres: PostgresServer) -> Iterator[Store]:
    name = f"hauspost_{next(_names)}"
    postgres.create_database(name)
    store = open_store(postgres.url(name, driver="postgresql+psycopg2"))
    try:
        yield store
    finally:
        store.close()


def test_every_store_check_is_found() -> None:
    assert len(STORE_CHECKS) >= 10, STORE_CHECKS


def test_migrations_reach_head_on_postgres_and_reopening_is_a_no_op(
        postgres: PostgresServer) -> None:
    url = postgres.url("hauspost_reopen", driver="postgresql+psycopg2")
    postgres.create_database("hauspost_reopen")
    first = open_store(url)
    try:
        assert current_revisions(first.engine) == head_revisions()
        with first.engine.connect() as conn:
            triggers = {row[0] for row in conn.execute(text(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))}
        assert {"audit_log_append_only", "audit_log_no_truncate",
                "accounts_link_immutable"} <= triggers
        tables = set(sa_inspect(first.engine).get_table_names())
    finally:
        first.close()
    second = open_store(url)
    try:
        assert current_revisions(second.engine) == head_revisions()
        assert set(sa_inspect(second.engine).get_table_names()) == tables
    finally:
        second.close()


@pytest.mark.parametrize("check", STORE_CHECKS)
def test_store_check_on_postgres(pg_store: Store, check: str) -> None:
    run: Callable[[Store], Any] = getattr(store_checks, check)
    result = run(pg_store)
    if inspect.iscoroutine(result):
        asyncio.run(result)
