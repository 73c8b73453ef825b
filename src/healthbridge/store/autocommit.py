"""Single-change writes: each runs in its own unit of work (https://hl7.org/fhir/R4/http.html).

A repository that implements ``transaction()`` gets ``create``/``update``/``delete`` from
:class:`AutocommitWrites` (the memory fake does); the REST layer uses these for plain create,
update and delete interactions, and ``transaction()`` for Bundles. The SQL backend implements
them more cheaply itself (:mod:`healthbridge.store.sql.repository`) with the same semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from healthbridge.fhir.types import Resource
from healthbridge.store.repository import Applied, Change, StoredResource, Transaction


class AutocommitWrites:
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        raise NotImplementedError

    async def create(
        self, resource_type: str, resource: Resource, id: str | None = None
    ) -> StoredResource:
        async with self.transaction() as tx:
            return await tx.create(resource_type, resource, id)

    async def update(
        self, resource_type: str, id: str, resource: Resource, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        async with self.transaction() as tx:
            return await tx.update(resource_type, id, resource, if_match)

    async def delete(
        self, resource_type: str, id: str, if_match: int | None = None
    ) -> StoredResource | None:
        async with self.transaction() as tx:
            return await tx.delete(resource_type, id, if_match)

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        async with self.transaction() as tx:
            return await tx.apply(changes)
