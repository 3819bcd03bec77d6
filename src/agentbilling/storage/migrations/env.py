"""Alembic environment: runs on the connection handed over by agentbilling.storage.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from agentbilling.storage.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(
        connection=conn,
        target_metadata=metadata,
        render_as_batch=conn.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # `alembic` run by hand, e.g. for autogenerate
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as conn:
        _run(conn)
