"""Where a code system's concepts come from: https://hl7.org/fhir/R4/terminology-service.html.

One :class:`Source` shape over every kind of code system the server knows:

1. code systems loaded from release files into ``repository.terminology`` (SNOMED CT, LOINC...),
2. CodeSystem resources stored on the server (uploads, packages; ``content`` complete or
   fragment),
3. the R4 core code systems shipped with the server (:mod:`healthbridge.fhir.terminology.core`).

:class:`Resolver` finds the source of a ``url`` (optionally ``|version``) in that order, and
ValueSet and ConceptMap resources by canonical url (stored first, then core).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from healthbridge.fhir import jsonformat
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.terminology.code_system import code_system_info, concepts
from healthbridge.fhir.terminology.concept_index import ConceptIndex
from healthbridge.fhir.terminology.concepts import CodeSystemInfo, Concept
from healthbridge.fhir.terminology.core import CoreTerminology, core_terminology
from healthbridge.fhir.types import Resource
from healthbridge.store.repository import Repository
from healthbridge.store.terminology import ConceptQuery, TerminologyStore

CACHED_RESOURCES = 64
"""Stored CodeSystem resources kept indexed (by id and version) between requests."""


class Source(Protocol):
    @property
    def info(self) -> CodeSystemInfo: ...

    async def concepts(self, codes: Sequence[str]) -> dict[str, Concept]: ...

    async def subsumes(self, ancestor: str, code: str) -> bool: ...

    async def children(self, code: str) -> list[str]: ...

    async def find_from(self, query: ConceptQuery, offset: int) -> list[Concept]: ...

    async def count(self, query: ConceptQuery) -> int: ...


class IndexSource:
    """A code system held in memory (a CodeSystem resource, core or stored)."""

    def __init__(self, info: CodeSystemInfo, index: ConceptIndex) -> None:
        self.info = info
        self.index = index

    async def concepts(self, codes: Sequence[str]) -> dict[str, Concept]:
        found = self.index.concepts
        return {code: found[code] for code in codes if code in found}

    async def subsumes(self, ancestor: str, code: str) -> bool:
        return self.index.subsumes(ancestor, code)

    async def children(self, code: str) -> list[str]:
        return self.index.children(code)

    def _codes(self, query: ConceptQuery) -> list[str]:
        codes = self.index.select(query.filters, query.text, query.active_only)
        if query.after_code is not None:
            codes = codes[bisect.bisect_right(codes, query.after_code) :]
        return codes

    async def find_from(self, query: ConceptQuery, offset: int) -> list[Concept]:
        codes = self._codes(query)[offset : offset + query.limit]
        return [self.index.concepts[code] for code in codes]

    async def count(self, query: ConceptQuery) -> int:
        return len(self._codes(query))


class StoreSource:
    """A code system loaded into the terminology store."""

    def __init__(self, store: TerminologyStore, info: CodeSystemInfo) -> None:
        self.info = info
        self._store = store
        self._key = (info.url, str(info.version))

    async def concepts(self, codes: Sequence[str]) -> dict[str, Concept]:
        return await self._store.concepts(*self._key, codes)

    async def subsumes(self, ancestor: str, code: str) -> bool:
        return await self._store.subsumes(*self._key, ancestor, code)

    async def children(self, code: str) -> list[str]:
        return await self._store.children(*self._key, code)

    async def find_from(self, query: ConceptQuery, offset: int) -> list[Concept]:
        return await self._store.find_from(*self._key, query, offset)

    async def count(self, query: ConceptQuery) -> int:
        return await self._store.count(*self._key, query)


def split_canonical(url: str, version: str | None = None) -> tuple[str, str | None]:
    base, _, suffix = url.partition("|")
    return base, version or suffix or None


class Resolver:
    """Finds code systems, value sets and concept maps; one per process (its cache of indexed
    CodeSystem resources is keyed by resource id and version, so it never serves stale ones)."""

    def __init__(
        self, repository: Repository, parser: SearchParser, core: CoreTerminology | None = None
    ) -> None:
        self.repository = repository
        self.parser = parser
        self._core = core
        self._indexed: OrderedDict[tuple[str, str], IndexSource] = OrderedDict()

    @property
    def core(self) -> CoreTerminology:
        if self._core is None:
            self._core = core_terminology()
        return self._core

    async def stored(self, resource_type: str, url: str, version: str | None) -> Resource | None:
        """The stored resource with that canonical url (and version; else the newest)."""
        params = [("url", url), ("_count", "20")]
        if version is not None:
            params.append(("version", version))
        query = self.parser.parse(resource_type, params)
        page = await self.repository.search(query)
        found = [jsonformat.loads(match.content) for match in page.matches]
        found = [r for r in found if version is None or r.get("version") == version]
        if not found:
            return None
        newest: Resource = max(
            found, key=lambda r: str((r.get("meta") or {}).get("lastUpdated") or "")
        )
        return newest

    async def code_system(self, url: str, version: str | None = None) -> Source | None:
        url, version = split_canonical(url, version)
        store = self.repository.terminology
        loaded = await store.code_system(url, version)
        if loaded is not None:
            return StoreSource(store, loaded)
        resource = await self.stored("CodeSystem", url, version)
        if resource is not None and resource.get("content") not in ("not-present", None):
            return self.indexed(resource)
        core = self.core.code_system(url)
        if core is not None and version in (None, core[0].version):
            return IndexSource(*core)
        return None

    def indexed(self, resource: Resource, source: str = "resource") -> IndexSource:
        meta = resource.get("meta") or {}
        key = (str(resource.get("id")), str(meta.get("versionId") or meta.get("lastUpdated")))
        found = self._indexed.get(key) if resource.get("id") else None
        if found is None:
            info = code_system_info(resource, source)
            found = IndexSource(info, ConceptIndex(concepts(resource)))
            if resource.get("id"):
                self._indexed[key] = found
                while len(self._indexed) > CACHED_RESOURCES:
                    self._indexed.popitem(last=False)
        return found

    async def value_set(self, url: str) -> Resource | None:
        base, version = split_canonical(url)
        stored = await self.stored("ValueSet", base, version)
        if stored is not None:
            return stored
        return self.core.value_sets.get(base)

    async def concept_map(self, url: str) -> Resource | None:
        base, version = split_canonical(url)
        stored = await self.stored("ConceptMap", base, version)
        if stored is not None:
            return stored
        return self.core.concept_maps.get(base)
