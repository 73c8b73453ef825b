"""What the commands that work on the database directly share: the repository opened for one
piece of work, and the FHIR service (https://hl7.org/fhir/R4/http.html semantics: validation,
indexing, outbox, audit) for the commands that write resources without a server
(``healthbridge import``, ``healthbridge packages install``), with the operator named as the
actor of every write (the outbox ``actor`` the audit trail reports)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from healthbridge.audit.records import Who
from healthbridge.rest.service import FhirService
from healthbridge.settings import Settings
from healthbridge.store.actor import reset_actor, set_actor
from healthbridge.store.repository import Repository

T = TypeVar("T")


def with_repository(settings: Settings, work: Callable[[Repository], Awaitable[T]]) -> T:
    """Run ``work`` over the configured database's repository, then close it."""

    async def run() -> T:
        from healthbridge.store.sql import open_repository

        repository = await open_repository(settings.database_url())
        try:
            return await work(repository)
        finally:
            await repository.close()

    return asyncio.run(run())


async def open_service(settings: Settings) -> FhirService:
    """The FHIR service over the configured database, indexing and searching with the custom
    SearchParameters in force, as the server does (close ``service.repository`` after)."""
    from healthbridge.fhir.definitions import load_definitions
    from healthbridge.fhir.search.parse import SearchParser
    from healthbridge.fhir.validation import Validator
    from healthbridge.jobs.search_registry import SearchRegistry
    from healthbridge.store.sql import open_repository

    repository = await open_repository(settings.database_url(), pool_size=settings.db_pool_size)
    try:
        definitions = load_definitions()
        registry = SearchRegistry(definitions)
        await registry.refresh(repository.jobs)  # index custom SearchParameters in force
        repository.use_definitions(registry.index_definitions)
    except BaseException:
        await repository.close()
        raise
    validator = Validator(definitions, max_string_length=settings.max_string_chars)
    search = SearchParser(registry.search_definitions)
    return FhirService(repository, definitions, validator, search)


def operator() -> str:
    """The login name of whoever runs the command ("unknown" where there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        return "unknown"


@contextmanager
def acting_as(command: str) -> Iterator[None]:
    """Name ``cli:<command>:<operator>`` the author of every write made inside (tasks started
    inside inherit it)."""
    token = set_actor(Who(subject=f"cli:{command}:{operator()}").actor())
    try:
        yield
    finally:
        reset_actor(token)
