"""Fixtures for the SQL search planner's own tests (https://hl7.org/fhir/R4/search.html): a
migrated, empty database on SQLite and PostgreSQL (``sql_url`` from tests/store/conftest.py)
and SQL repositories over it with a chosen search timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from healthbridge.store.instants import system_clock
from healthbridge.store.sql.apsw_engine import ApswEngine
from healthbridge.store.sql.asyncpg_engine import AsyncpgEngine
from healthbridge.store.sql.engine import Engine
from healthbridge.store.sql.repository import SqlRepository
from healthbridge.store.sql.urls import parse_url

OpenRepo = Callable[..., Awaitable[SqlRepository]]


async def open_engine(url: str) -> Engine:
    db = parse_url(url)
    if db.kind == "sqlite":
        return await ApswEngine.open(db)
    return await AsyncpgEngine.open(db, 4)


@pytest.fixture
async def open_repo(sql_url: str) -> AsyncIterator[OpenRepo]:
    """``await open_repo(search_timeout_s=...)``: a repository on the test database."""
    opened: list[SqlRepository] = []

    async def open_one(**options: float) -> SqlRepository:
        repo = SqlRepository(await open_engine(sql_url), system_clock, **options)
        opened.append(repo)
        return repo

    yield open_one
    for repo in opened:
        await repo.close()


@pytest.fixture
async def sql_repo(open_repo: OpenRepo) -> SqlRepository:
    return await open_repo()
