"""Open the store: engine, SQLite pragmas, migrations to head, sessions, append-only guard."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from provisioner.errors import ConfigError, HauspostError
from provisioner.store.migrate import upgrade_to_head
from provisioner.store.models import AccountRow, AuditRow

logger = logging.getLogger(__name__)


class AppendOnlyError(HauspostError):
    """Code tried to change or delete an audit row or an employee/account link."""


class StoreError(HauspostError):
    pass


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, flush_context: Any, instances: Any) -> None:
    # The database triggers catch raw SQL too; this catches ORM mistakes on every backend.
    for obj in session.dirty:
        if isinstance(obj, AuditRow) and session.is_modified(obj):
            raise AppendOnlyError("audit_log is append-only: an audit row cannot change")
        if isinstance(obj, AccountRow):
            attrs = inspect(obj).attrs
            if attrs.user_id.history.deleted or attrs.employee_id.history.deleted:
                raise AppendOnlyError(
                    "the employee/account link is written once and never changed")
    for obj in session.deleted:
        if isinstance(obj, AuditRow | AccountRow):
            raise AppendOnlyError(f"{type(obj).__tablename__} rows cannot be deleted")


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL + NORMAL: one audit row per change stays cheap; a crash loses at most the
    # last transaction, never consistency.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {exc}", key="store.url") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in a transaction, committed on success."""
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str) -> Store:
    """Open (and create or migrate to head) the store at a SQLAlchemy URL."""
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {make_url(url).render_as_string()}: "
                         f"{exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}"
                         ) from None
    return Store(engine)
