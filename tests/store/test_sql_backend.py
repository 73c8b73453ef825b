"""The SQL backend beyond the shared contract: URLs, migrations, schema checks, failures.

Spec: https://hl7.org/fhir/R4/http.html#transactional-integrity (a change is applied whole or not
at all): a server that loses its database answers 503 (``Unavailable``) and nothing is
half-written. Opening a repository checks the schema revision and, unless asked to migrate, says
to run ``healthbridge migrate``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import apsw
import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from healthbridge.fhir.errors import InvalidRequest, NotFound, Unavailable
from healthbridge.store.instants import system_clock
from healthbridge.store.sql import SchemaNotReady, migrate, open_repository, text_index
from healthbridge.store.sql.apsw_engine import ApswEngine, poll_for_the_lock
from healthbridge.store.sql.asyncpg_engine import AsyncpgEngine
from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.repository import SqlRepository
from healthbridge.store.sql.schema import head_revision
from healthbridge.store.sql.tables import metadata
from healthbridge.store.sql.urls import parse_url
from tests.support import databases

PATIENT = {"resourceType": "Patient"}


@pytest.mark.parametrize(
    ("url", "kind", "normalised"),
    [
        ("sqlite:////abs/dir/h.db", "sqlite", "sqlite:////abs/dir/h.db"),
        ("postgresql://u:pw@db:5433/fhir", "postgresql", "postgresql://u:***@db:5433/fhir"),
        ("postgres://u@db/fhir", "postgresql", "postgresql://u@db/fhir"),
        ("postgresql+asyncpg://u@db/fhir", "postgresql", "postgresql://u@db/fhir"),
    ],
)
def test_url_forms(url: str, kind: str, normalised: str) -> None:
    db = parse_url(url)
    assert (db.kind, str(db)) == (kind, normalised)


def test_relative_sqlite_paths_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_url("sqlite:///data/h.db").path == tmp_path / "data" / "h.db"
    assert parse_url("postgresql://u:p%40ss@h/d").dsn == "postgresql://u:p%40ss@h/d"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://x/y", "nonsense"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        parse_url(url)


async def test_migrate_creates_the_file_and_directory_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a/b/h.db"
    migrate(url)
    migrate(url)
    assert (tmp_path / "a" / "b" / "h.db").is_file()
    connection = apsw.Connection(str(tmp_path / "a" / "b" / "h.db"))
    assert connection.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert rows == [(head_revision(),)]
    repo = await open_repository(url)
    await repo.ping()
    await repo.close()


async def test_opening_a_missing_or_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    url = databases.sqlite_url(tmp_path)
    with pytest.raises(SchemaNotReady, match="healthbridge migrate"):
        await open_repository(url)
    apsw.Connection(str(tmp_path / "healthbridge.db")).execute("CREATE TABLE t (x)")
    with pytest.raises(SchemaNotReady, match=r"no HealthBridge schema.*healthbridge migrate"):
        await open_repository(url)
    repo = await open_repository(url, migrate=True)
    await repo.close()


async def test_a_schema_from_a_newer_healthbridge_is_refused(tmp_path: Path) -> None:
    url = databases.sqlite_url(tmp_path)
    migrate(url)
    apsw.Connection(str(tmp_path / "healthbridge.db")).execute(
        "UPDATE alembic_version SET version_num = 'r9999'"
    )
    with pytest.raises(SchemaNotReady, match="newer version"):
        await open_repository(url)


def _declared(name: str | None, kind: str, *_: object) -> bool:
    """Everything but the full-text index, whose storage differs by database (text_index)."""
    return not (kind == "table" and name is not None and name.startswith(text_index.TABLE))


def _schema_diff(connection: Connection) -> list[object]:
    options = {"compare_type": True, "include_name": _declared}
    context = MigrationContext.configure(connection, opts=options)
    return list(compare_metadata(context, metadata))


def _text_index_is_there(connection: Connection) -> None:
    names = set(inspect(connection).get_table_names())
    assert text_index.TABLE in names


async def test_migrations_build_exactly_the_declared_tables(
    sql_backend: databases.BackendKind, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if sql_backend == "sqlite":
        url = databases.sqlite_url(tmp_path)
        migrate(url)
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as connection:
            assert _schema_diff(connection) == []
            _text_index_is_there(connection)
        engine.dispose()
        return
    url = request.getfixturevalue("postgres_database").require()
    async_engine = create_async_engine(parse_url(url).sqlalchemy_url, poolclass=NullPool)
    async with async_engine.connect() as connection:
        assert await connection.run_sync(_schema_diff) == []
        await connection.run_sync(_text_index_is_there)
    await async_engine.dispose()


async def test_sqlite_writer_locked_by_another_process_is_unavailable(tmp_path: Path) -> None:
    url = databases.sqlite_url(tmp_path)
    migrate(url)
    other = apsw.Connection(str(tmp_path / "healthbridge.db"))
    other.execute("BEGIN IMMEDIATE")
    engine = await ApswEngine.open(parse_url(url), busy_timeout_ms=50)
    repo = SqlRepository(engine, system_clock)
    try:
        with pytest.raises(Unavailable, match="locked"):
            await repo.create("Patient", PATIENT)
        with pytest.raises(NotFound):  # reads go on meanwhile (WAL)
            await repo.read("Patient", "x")
        other.execute("ROLLBACK")
        assert (await repo.create("Patient", PATIENT)).version_id == 1
    finally:
        await repo.close()


def test_sqlite_writer_polls_for_the_lock_finely_until_the_busy_timeout() -> None:
    """https://sqlite.org/c3ref/busy_handler.html: the writer retries every 0.1-1 ms (not
    SQLite's default 1-100 ms sleeps), and gives up once the busy timeout has passed."""
    busy = poll_for_the_lock(30)
    start = time.monotonic()
    calls = 0
    while busy(calls):
        calls += 1
    elapsed = time.monotonic() - start
    assert 0.03 <= elapsed < 0.5
    assert calls >= 10  # SQLite's own handler would have slept 1, 2, 5, 10 and 15 ms


async def test_sqlite_reads_do_not_wait_for_or_see_an_open_write(tmp_path: Path) -> None:
    url = databases.sqlite_url(tmp_path)
    repo = await open_repository(url, migrate=True)
    try:
        started, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with repo.transaction() as tx:
                await tx.create("Patient", PATIENT, id="p")
                started.set()
                await release.wait()

        task = asyncio.create_task(writer())
        await started.wait()
        with pytest.raises(NotFound):
            await repo.read("Patient", "p")
        release.set()
        await task
        assert (await repo.read("Patient", "p")).version_id == 1
    finally:
        await repo.close()


async def test_a_cancelled_unit_of_work_leaves_nothing_and_the_writer_usable(
    tmp_path: Path,
) -> None:
    repo = await open_repository(databases.sqlite_url(tmp_path), migrate=True)
    try:
        started = asyncio.Event()

        async def writer() -> None:
            async with repo.transaction() as tx:
                await tx.create("Patient", PATIENT, id="p")
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(writer())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(NotFound):
            await repo.read("Patient", "p")
        assert (await repo.create("Patient", PATIENT, id="p")).version_id == 1
        assert len(await repo.outbox_since(0)) == 1
    finally:
        await repo.close()


@pytest.fixture
async def closed_repo(
    sql_backend: databases.BackendKind, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SqlRepository]:
    postgres = request.getfixturevalue("postgres_database") if sql_backend == "postgresql" else None
    async with databases.open_backend(sql_backend, tmp_path, postgres) as repo:
        assert isinstance(repo, SqlRepository)
        await repo.create("Patient", PATIENT, id="p")
        yield repo


async def test_a_closed_repository_is_unavailable(closed_repo: SqlRepository) -> None:
    await closed_repo.close()
    with pytest.raises(Unavailable):
        await closed_repo.read("Patient", "p")
    with pytest.raises(Unavailable):
        await closed_repo.create("Patient", PATIENT)


async def test_postgres_on_a_closed_port_is_unavailable() -> None:
    url = "postgresql://postgres@127.0.0.1:1/healthbridge"
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
        await open_repository(url)
    with pytest.raises(Unavailable):
        migrate(url)


@pytest.mark.postgres
async def test_postgres_connection_lost_mid_transaction_writes_nothing(
    postgres_database: databases.PostgresDatabase,
) -> None:
    url = postgres_database.require()
    await databases.empty_postgres(url)
    repo = await open_repository(url, pool_size=2)
    admin = await asyncpg.connect(url)
    try:
        with pytest.raises(Unavailable, match="nothing was written"):
            async with repo.transaction() as tx:
                await tx.create("Patient", PATIENT, id="p")
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'healthbridge'"
                )
                await tx.create("Patient", PATIENT, id="q")
        for _ in range(3):  # the pool replaces the lost connections
            try:
                await repo.ping()
                break
            except Unavailable:
                await asyncio.sleep(0.1)
        with pytest.raises(NotFound):
            await repo.read("Patient", "p")
        assert await repo.outbox_since(0) == []
    finally:
        await admin.close()
        await repo.close()


@pytest.mark.postgres
async def test_postgres_rejected_values_are_invalid_requests(
    postgres_database: databases.PostgresDatabase,
) -> None:
    engine = await AsyncpgEngine.open(parse_url(postgres_database.require()), 1)
    try:
        with pytest.raises(InvalidRequest, match="rejected a value"):
            await engine.fetch_one(Statement("SELECT $1::text", ("v",), {}), ("nul\x00",))
    finally:
        await engine.close()


@pytest.mark.postgres
async def test_postgres_reads_survive_dropped_idle_connections(
    postgres_database: databases.PostgresDatabase,
) -> None:
    url = postgres_database.require()
    await databases.empty_postgres(url)
    repo = await open_repository(url, pool_size=8)
    admin = await asyncpg.connect(url)
    try:
        await repo.create("Patient", PATIENT, id="p")
        await asyncio.gather(*(repo.read("Patient", "p") for _ in range(8)))  # warm readers
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'healthbridge'"
        )
        await asyncio.sleep(0.2)  # the client notices the closed sockets
        assert (await repo.read("Patient", "p")).version_id == 1
    finally:
        await admin.close()
        await repo.close()
