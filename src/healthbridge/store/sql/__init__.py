"""The SQL storage backend: SQLite (apsw) or PostgreSQL (asyncpg), one schema, one code path.

Entry points for the composition root (``app.py``, ``cli.py``)::

    repository = await open_repository("sqlite:///data/healthbridge.db")
    repository = await open_repository("postgresql://user@host:5432/db", pool_size=20)
    migrate("postgresql://user@host:5432/db")   # `healthbridge migrate`

Semantics: https://hl7.org/fhir/R4/http.html (see :mod:`healthbridge.store.repository`).
"""

from __future__ import annotations

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search import Indexer
from healthbridge.store.instants import Clock, system_clock
from healthbridge.store.repository import Repository
from healthbridge.store.signals import ChangeSignal, FileSignal
from healthbridge.store.sql.apsw_engine import ApswEngine
from healthbridge.store.sql.asyncpg_engine import AsyncpgEngine
from healthbridge.store.sql.engine import Engine
from healthbridge.store.sql.indexing import IndexRows
from healthbridge.store.sql.notify_signal import NotifySignal
from healthbridge.store.sql.repository import SqlRepository
from healthbridge.store.sql.schema import (
    SchemaNotReady,
    check_revision,
    migrate,
    migrate_async,
)
from healthbridge.store.sql.urls import DatabaseUrl, parse_url

__all__ = ["SchemaNotReady", "migrate", "migrate_async", "open_repository"]


async def open_repository(
    url: str,
    *,
    pool_size: int = 10,
    migrate: bool = False,
    clock: Clock = system_clock,
    indexer: Indexer | None = None,
) -> Repository:
    """Connect to the database at ``url`` and check that its schema is current.

    ``url`` is ``sqlite:///relative/path.db``, ``sqlite:////abs/path.db`` or
    ``postgresql://user:password@host:port/db`` (``postgres://`` and ``postgresql+asyncpg://``
    too). ``pool_size`` bounds the PostgreSQL connections. The schema is not migrated unless
    ``migrate=True``: a missing, older or newer schema raises :class:`SchemaNotReady` that says to
    run ``healthbridge migrate``. ``indexer`` extracts search index rows on every write (by
    default one over the R4 definitions). An unreachable database raises
    :class:`~healthbridge.fhir.errors.Unavailable`; a malformed URL raises ValueError.
    """
    db = parse_url(url)
    if migrate:
        await migrate_async(url)
    engine: Engine
    if db.kind == "sqlite":
        engine = await ApswEngine.open(db)
    else:
        engine = await AsyncpgEngine.open(db, pool_size)
    try:
        check_revision(await engine.schema_revision(), str(db))
    except BaseException:
        await engine.close()
        raise
    index = IndexRows(indexer or Indexer(load_definitions()))
    return SqlRepository(engine, clock, index, signal=_revocation_signal(db, engine))


def _revocation_signal(db: DatabaseUrl, engine: Engine) -> ChangeSignal:
    """Processes sharing a SQLite file share a signal file beside it; PostgreSQL notifies."""
    if db.kind == "sqlite":
        return FileSignal(db.path.with_name(db.path.name + "-revocations"))
    signal = NotifySignal(engine, db.dsn)
    signal.start()
    return signal
