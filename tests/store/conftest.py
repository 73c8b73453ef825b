"""Fixtures for the storage contract suite: every test runs on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from healthbridge.store.repository import Repository
from healthbridge.store.sql import migrate
from tests.support import databases
from tests.support.clock import FakeClock


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[databases.PostgresDatabase]:
    with databases.postgres_database() as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=databases.BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> databases.BackendKind:
    kind: databases.BackendKind = request.param
    return kind


@pytest.fixture(params=databases.SQL_BACKEND_PARAMS)
def sql_backend(request: pytest.FixtureRequest) -> databases.BackendKind:
    kind: databases.BackendKind = request.param
    return kind


@pytest.fixture
async def repo(
    backend: databases.BackendKind,
    tmp_path: Path,
    clock: FakeClock,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Repository]:
    postgres = request.getfixturevalue("postgres_database") if backend == "postgresql" else None
    async with databases.open_backend(backend, tmp_path, postgres, clock=clock) as repository:
        yield repository


@pytest.fixture(params=databases.SQL_BACKEND_PARAMS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty SQL database for repositories the test opens itself."""
    if request.param == "sqlite":
        url = databases.sqlite_url(tmp_path)
        migrate(url)
        return url
    postgres: databases.PostgresDatabase = request.getfixturevalue("postgres_database")
    url = postgres.require()
    databases.run_blocking(databases.empty_postgres(url))
    return url
