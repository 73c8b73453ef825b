"""Schema migrations with Alembic, configured in code (no alembic.ini needed).

``migrate(url)`` upgrades a database to the newest revision; it is idempotent, creates a SQLite
file and its directory, and lets concurrent callers take turns (SQLite ``BEGIN IMMEDIATE``, a
PostgreSQL advisory lock). SQLite migrates through the stdlib sqlite3 driver, PostgreSQL through
SQLAlchemy's ``postgresql+asyncpg`` async engine with Alembic's ``run_sync`` pattern
(https://alembic.sqlalchemy.org/en/latest/cookbook.html#using-asyncio-with-alembic).
Opening a repository never migrates unless asked to: it raises :class:`SchemaNotReady`.
The tables serve the FHIR RESTful API (https://hl7.org/fhir/R4/http.html).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from healthbridge.fhir.errors import FhirError
from healthbridge.store.sql.dialects import POSTGRESQL
from healthbridge.store.sql.urls import DatabaseUrl, parse_url

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
_RUN_MIGRATE = "Run `healthbridge migrate` with the same database URL first."


class SchemaNotReady(RuntimeError):
    """The database is missing, never migrated, behind or ahead of this HealthBridge."""


def missing_database(where: str) -> str:
    return f"The SQLite database {where} does not exist. {_RUN_MIGRATE}"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations directory holds no revision"
    return head


def check_revision(found: str | None, where: str) -> None:
    """Raise SchemaNotReady unless ``found`` is the newest revision."""
    head = head_revision()
    if found == head:
        return
    if found is None:
        raise SchemaNotReady(f"The database {where} has no HealthBridge schema. {_RUN_MIGRATE}")
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if found in known:
        raise SchemaNotReady(
            f"The database {where} is at schema revision {found}, older than {head}. {_RUN_MIGRATE}"
        )
    raise SchemaNotReady(
        f"The database {where} is at schema revision {found}, which this HealthBridge does not "
        "know: it was migrated by a newer version. Upgrade HealthBridge."
    )


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade to ``revision`` on ``connection``, inside its open transaction."""
    if connection.dialect.name == POSTGRESQL.name and POSTGRESQL.migration_lock:
        connection.exec_driver_sql(POSTGRESQL.migration_lock)
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _migrate_sqlite(path: Path, revision: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=30)) as raw:
        raw.execute("PRAGMA journal_mode=WAL")  # persistent: every later connection uses WAL
    engine = create_engine(
        f"sqlite:///{path}",
        poolclass=NullPool,
        connect_args={"isolation_level": None, "timeout": 30},
    )

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        # Take the write lock up front, so that concurrent migrations run one after the other.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as connection:
            upgrade(connection, revision)
    finally:
        engine.dispose()


async def _migrate_postgres(db: DatabaseUrl, revision: str) -> None:
    engine = create_async_engine(db.sqlalchemy_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade, revision)
    except Exception as exc:
        mapped = _map_chain(exc, str(db))
        if mapped is None:
            raise
        raise mapped from exc
    finally:
        await engine.dispose()


def _map_chain(exc: BaseException, where: str) -> FhirError | None:
    """Map the first driver error found in ``exc``'s chain (SQLAlchemy wraps asyncpg's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        mapped = POSTGRESQL.map_error(current, where)
        if mapped is not None:
            return mapped
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


async def migrate_async(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to the newest schema (from a running event loop);
    ``revision`` stops at an older one (tests of data migrations)."""
    db = parse_url(url)
    if db.kind == "sqlite":
        await asyncio.to_thread(_migrate_sqlite, db.path, revision)
    else:
        await _migrate_postgres(db, revision)


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to the newest schema; idempotent.

    Blocks until done; called from a running event loop it migrates on a helper thread (use
    :func:`migrate_async` there instead to keep the loop responsive).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(migrate_async(url, revision))
        return
    with ThreadPoolExecutor(1, thread_name_prefix="healthbridge-migrate") as helper:
        helper.submit(asyncio.run, migrate_async(url, revision)).result()
