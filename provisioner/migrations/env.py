"""Alembic environment. `provisioner.store.migrate` passes an open connection in
`config.attributes["connection"]`; there is no alembic.ini and no logging set-up here, so
the CLI's own logging stays in charge."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from provisioner.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite can't ALTER most things; batch mode copies tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Only reached when someone runs the alembic CLI by hand with sqlalchemy.url set.
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)


run_migrations()
