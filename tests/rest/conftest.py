"""API tests go through the real ASGI app (Starlette TestClient runs the lifespan), on every
backend: the in-memory fake, SQLite and PostgreSQL (skipped with a reason when unreachable)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.validation import Validator
from healthbridge.rest.service import FhirService
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from tests.support import databases
from tests.support.databases import BACKEND_PARAMS, PostgresDatabase, open_backend


def make_client(
    kind: str, tmp_path: Path, postgres: PostgresDatabase | None = None, **overrides: object
) -> TestClient:
    settings = Settings(data_dir=tmp_path, access_log=False, **{"no_auth": True, **overrides})  # type: ignore[arg-type]
    stack = AsyncExitStack()

    async def factory() -> Repository:
        repo: Repository = await stack.enter_async_context(
            open_backend(kind, tmp_path, postgres)  # type: ignore[arg-type]
        )
        return _Closing(repo, stack)  # type: ignore[return-value]

    return TestClient(
        create_app(settings, repository_factory=factory), raise_server_exceptions=False
    )


class _Closing:
    """Delegates to the backend; ``close`` also leaves the backend's context."""

    def __init__(self, repo: Repository, stack: AsyncExitStack) -> None:
        self._repo = repo
        self._stack = stack

    def __getattr__(self, name: str) -> object:
        return getattr(self._repo, name)

    async def close(self) -> None:
        await self._stack.aclose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    with databases.postgres_database() as db:
        yield db


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(
    backend: str, tmp_path: Path, postgres_database: PostgresDatabase
) -> Iterator[TestClient]:
    if backend == "postgresql":
        postgres_database.require()
    with make_client(backend, tmp_path, postgres_database) as test_client:
        yield test_client


@pytest.fixture
def memory_client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client("memory", tmp_path) as test_client:
        yield test_client


@pytest.fixture
async def repository(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Repository]:
    """An empty backend of the parametrised kind, for tests that drive the service layer
    directly (many concurrent calls in one event loop)."""
    postgres: PostgresDatabase | None = None
    if backend == "postgresql":
        postgres = request.getfixturevalue("postgres_database")
        postgres.require()
    async with open_backend(backend, tmp_path, postgres) as repo:  # type: ignore[arg-type]
        yield repo


def fhir_service(repository: Repository) -> FhirService:
    """The FHIR service over ``repository`` with the R4 definitions, as the app builds it."""
    definitions = load_definitions()
    return FhirService(repository, definitions, Validator(definitions), SearchParser(definitions))
