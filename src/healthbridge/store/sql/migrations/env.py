"""Alembic environment (https://alembic.sqlalchemy.org/en/latest/tutorial.html#the-env-py-file).

HealthBridge configures Alembic in code (:mod:`healthbridge.store.sql.schema`) and hands this
script an open connection in ``config.attributes["connection"]``. For developers generating a
revision with the ``alembic`` command, ``sqlalchemy.url`` (a synchronous URL such as
``sqlite:///dev.db``) is used instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from healthbridge.store.sql.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("Give a connection in config.attributes or set sqlalchemy.url")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


run_migrations_online()
