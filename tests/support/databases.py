"""Backends for contract suites: memory, SQLite (a temporary file) and PostgreSQL.

Storage and REST suites parametrise over :data:`BACKEND_PARAMS` and open a fresh, empty
:class:`~healthbridge.store.repository.Repository` per test with :func:`open_backend`, so one
suite checks every backend against the FHIR RESTful API (https://hl7.org/fhir/R4/http.html).

PostgreSQL: ``HEALTHBRIDGE_TEST_POSTGRES_URL`` names a database to use (it is migrated and its
tables emptied before each test). Without it, a fresh uniquely named database is created on
``postgresql://postgres@127.0.0.1:5432/postgres`` for the test session and dropped at the end.
When no server answers, PostgreSQL cases are skipped with the reason, or fail if
``HEALTHBRIDGE_REQUIRE_POSTGRES=1`` (as in CI).

Use from a conftest::

    @pytest.fixture(scope="session")
    def postgres_database():
        with databases.postgres_database() as db:
            yield db

    @pytest.fixture(params=databases.BACKEND_PARAMS)
    async def repo(request, tmp_path, postgres_database):
        async with databases.open_backend(request.param, tmp_path, postgres_database) as repo:
            yield repo
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from healthbridge.fhir.errors import Unavailable
from healthbridge.store.instants import Clock, system_clock
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.repository import Repository
from healthbridge.store.sql import migrate_async, open_repository, text_index
from healthbridge.store.sql.tables import metadata

T = TypeVar("T")
BackendKind = Literal["memory", "sqlite", "postgresql"]
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKEND_PARAMS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
SQL_BACKEND_PARAMS = BACKEND_PARAMS[1:]


@dataclass(frozen=True)
class PostgresDatabase:
    """A migrated test database, or the reason there is none."""

    url: str | None
    reason: str = ""

    def require(self) -> str:
        """The URL; otherwise skip the test (or fail it when PostgreSQL is required)."""
        if self.url is None:
            if os.environ.get("HEALTHBRIDGE_REQUIRE_POSTGRES") == "1":
                pytest.fail(
                    f"PostgreSQL is required (HEALTHBRIDGE_REQUIRE_POSTGRES=1): {self.reason}"
                )
            pytest.skip(self.reason)
        return self.url


def run_blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion on its own loop, also when called from a running loop."""
    with ThreadPoolExecutor(1) as helper:
        return helper.submit(asyncio.run, work).result()


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'healthbridge.db'}"


def _database_url(server_url: str, database: str) -> str:
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


async def _admin(server_url: str, sql: str) -> None:
    connection = await asyncpg.connect(server_url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _create(server_url: str) -> str:
    name = f"healthbridge_test_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    return name


@contextmanager
def postgres_database() -> Iterator[PostgresDatabase]:
    """A migrated PostgreSQL database for one test session (see the module docstring)."""
    given = os.environ.get("HEALTHBRIDGE_TEST_POSTGRES_URL")
    if given:
        try:
            run_blocking(migrate_async(given))
        except Unavailable as exc:
            yield PostgresDatabase(None, f"HEALTHBRIDGE_TEST_POSTGRES_URL is unusable: {exc}")
            return
        yield PostgresDatabase(given)
        return
    try:
        name = run_blocking(_create(DEFAULT_POSTGRES_URL))
    except (OSError, asyncpg.PostgresError) as exc:
        reason = (
            f"no PostgreSQL at {DEFAULT_POSTGRES_URL} ({type(exc).__name__}: {exc}); "
            "set HEALTHBRIDGE_TEST_POSTGRES_URL"
        )
        yield PostgresDatabase(None, reason)
        return
    url = _database_url(DEFAULT_POSTGRES_URL, name)
    try:
        run_blocking(migrate_async(url))
        yield PostgresDatabase(url)
    finally:
        run_blocking(_admin(DEFAULT_POSTGRES_URL, f'DROP DATABASE "{name}" WITH (FORCE)'))


async def empty_postgres(url: str) -> None:
    """Remove every row of the HealthBridge tables and restart their sequences."""
    names = [table.name for table in metadata.sorted_tables] + [text_index.TABLE]
    await _admin(url, f"TRUNCATE {', '.join(names)} RESTART IDENTITY")


@asynccontextmanager
async def open_backend(
    kind: BackendKind,
    tmp_path: Path,
    postgres: PostgresDatabase | None = None,
    *,
    clock: Clock = system_clock,
) -> AsyncIterator[Repository]:
    """An empty repository of ``kind``, closed on exit."""
    repo: Repository
    if kind == "memory":
        repo = MemoryRepository(clock=clock)
    elif kind == "sqlite":
        repo = await open_repository(sqlite_url(tmp_path), migrate=True, clock=clock)
    else:
        url = (postgres or PostgresDatabase(None, "no PostgreSQL fixture given")).require()
        await empty_postgres(url)
        repo = await open_repository(url, clock=clock)
    try:
        yield repo
    finally:
        await repo.close()
