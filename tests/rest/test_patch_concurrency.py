"""Concurrent PATCHes without If-Match are all applied, one after the other, never lost
(https://hl7.org/fhir/R4/http.html#patch and #concurrency), on every backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.validation import Validator
from healthbridge.rest.service import FhirService
from tests.support.databases import PostgresDatabase, open_backend


async def test_parallel_patches_each_add_their_identifier(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    postgres: PostgresDatabase | None = (
        request.getfixturevalue("postgres_database") if backend == "postgresql" else None
    )
    definitions = load_definitions()
    async with open_backend(backend, tmp_path, postgres) as repo:  # type: ignore[arg-type]
        service = FhirService(repo, definitions, Validator(definitions))
        await service.update("Patient", "p1", {"resourceType": "Patient", "id": "p1"}, None)
        count = 6

        async def add(n: int) -> None:
            value = {"system": "urn:test", "value": str(n)}
            await service.patch(
                "Patient", "p1", [{"op": "add", "path": "/identifier/-", "value": value}], None
            )

        seed = [{"system": "urn:test", "value": "seed"}]
        first = {"op": "add", "path": "/identifier", "value": seed}
        await service.patch("Patient", "p1", [first], None)
        await asyncio.gather(*(add(n) for n in range(count)))
        stored = await service.read("Patient", "p1")
        values = sorted(i["value"] for i in jsonformat.loads(stored.content)["identifier"])
        assert values == sorted([*(str(n) for n in range(count)), "seed"])
        assert stored.version_id == 2 + count
