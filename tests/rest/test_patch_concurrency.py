"""Concurrent PATCHes without If-Match are all applied, one after the other, never lost
(https://hl7.org/fhir/R4/http.html#patch and #concurrency), on every backend."""

from __future__ import annotations

import asyncio

from healthbridge.fhir import jsonformat
from healthbridge.store.repository import Repository
from tests.rest.conftest import fhir_service


async def test_parallel_patches_each_add_their_identifier(repository: Repository) -> None:
    service = fhir_service(repository)
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
