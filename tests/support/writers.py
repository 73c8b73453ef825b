"""Write load from other threads and processes against one database file or server.

Each worker opens its own repository, as a separate server process would (several Granian
workers on one SQLite file, or N API nodes on one PostgreSQL), and reports the versions it made
(https://hl7.org/fhir/R4/http.html#versioning). Workers are module-level functions so that
``multiprocessing`` can start them in fresh interpreters.
"""

from __future__ import annotations

import asyncio

from healthbridge.fhir.errors import Conflict, PreconditionFailed
from healthbridge.store.sql import open_repository

Outcome = int | str  # a version id, or the name of the contract error raised


async def _updates(url: str, resource_type: str, id: str, count: int) -> list[Outcome]:
    repo = await open_repository(url)
    try:
        outcomes: list[Outcome] = []
        for _ in range(count):
            stored, _created = await repo.update(resource_type, id, {"resourceType": resource_type})
            outcomes.append(stored.version_id)
        return outcomes
    finally:
        await repo.close()


def update_many(url: str, resource_type: str, id: str, count: int) -> list[Outcome]:
    """``count`` updates without If-Match; the version ids they produced."""
    return asyncio.run(_updates(url, resource_type, id, count))


async def _guarded_update(url: str, resource_type: str, id: str, if_match: int) -> Outcome:
    repo = await open_repository(url)
    try:
        body = {"resourceType": resource_type}
        stored, _created = await repo.update(resource_type, id, body, if_match=if_match)
        return stored.version_id
    except PreconditionFailed:
        return "PreconditionFailed"
    finally:
        await repo.close()


def update_if_match(url: str, resource_type: str, id: str, if_match: int) -> Outcome:
    return asyncio.run(_guarded_update(url, resource_type, id, if_match))


async def _create(url: str, resource_type: str, id: str) -> Outcome:
    repo = await open_repository(url)
    try:
        return (await repo.create(resource_type, {"resourceType": resource_type}, id=id)).version_id
    except Conflict:
        return "Conflict"
    finally:
        await repo.close()


def create_with_id(url: str, resource_type: str, id: str) -> Outcome:
    return asyncio.run(_create(url, resource_type, id))
