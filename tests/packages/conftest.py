"""Package installs run on every backend: memory, SQLite and PostgreSQL (skipped with the
reason when no server answers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.validation import Validator
from healthbridge.rest.service import FhirService
from tests.support import databases

REPO_ROOT = Path(__file__).resolve().parents[2]
IGS = REPO_ROOT.parent / "shared" / "data" / "fhir-igs"


def shared_package(name: str) -> Path:
    """A package under ``../shared/data/fhir-igs``; skips the test with the reason when absent."""
    path = IGS / name
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[databases.PostgresDatabase]:
    with databases.postgres_database() as database:
        yield database


@pytest.fixture(params=databases.BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> databases.BackendKind:
    kind: databases.BackendKind = request.param
    return kind


@pytest.fixture
async def service(
    backend: databases.BackendKind, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[FhirService]:
    postgres = request.getfixturevalue("postgres_database") if backend == "postgresql" else None
    async with databases.open_backend(backend, tmp_path, postgres) as repository:
        definitions = load_definitions()
        yield FhirService(repository, definitions, Validator(definitions))
