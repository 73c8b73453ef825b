"""Fixtures for the release-file loaders: the synthetic releases under ``data/`` and an empty
terminology store on each backend (memory, SQLite, PostgreSQL when one answers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from healthbridge.store.repository import Repository
from tests.support import databases

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[databases.PostgresDatabase]:
    with databases.postgres_database() as database:
        yield database


@pytest.fixture(params=databases.BACKEND_PARAMS)
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    kind: databases.BackendKind = request.param
    postgres = request.getfixturevalue("postgres_database") if kind == "postgresql" else None
    async with databases.open_backend(kind, tmp_path, postgres) as repository:
        yield repository
