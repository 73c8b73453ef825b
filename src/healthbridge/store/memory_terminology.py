"""The in-memory :class:`~healthbridge.store.terminology.TerminologyStore` (same contract as
:mod:`.sql.terminology`): https://hl7.org/fhir/R4/terminology-service.html.

No method awaits, so each is atomic on the event loop. Concept filters and text matching are
those of :class:`~healthbridge.fhir.terminology.concept_index.ConceptIndex`. Nothing survives
the process; used by the memory repository in tests and demos.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from healthbridge.fhir.terminology.concept_index import ConceptIndex
from healthbridge.fhir.terminology.concepts import CodeSystemInfo, Concept
from healthbridge.store.terminology import ConceptQuery, LoadProgress

Key = tuple[str, str]


@dataclass
class _Loading:
    info: CodeSystemInfo
    fingerprint: str
    done: int = 0
    concepts: dict[str, Concept] = field(default_factory=dict)


@dataclass(frozen=True)
class _Complete:
    info: CodeSystemInfo
    index: ConceptIndex
    seq: int


def _require_version(info: CodeSystemInfo) -> str:
    if not info.version:
        raise ValueError(f"loading {info.url} needs a version")
    return info.version


class MemoryTerminology:
    def __init__(self) -> None:
        self._complete: dict[Key, _Complete] = {}
        self._loading: dict[Key, _Loading] = {}
        self._seq = itertools.count(1)

    # --- reading -------------------------------------------------------------------------
    async def code_systems(self) -> list[CodeSystemInfo]:
        return [self._complete[key].info for key in sorted(self._complete)]

    async def code_system(self, url: str, version: str | None = None) -> CodeSystemInfo | None:
        if version is not None:
            found = self._complete.get((url, version))
            return found.info if found else None
        candidates = [c for (u, _), c in self._complete.items() if u == url]
        return max(candidates, key=lambda c: c.seq).info if candidates else None

    def _index(self, url: str, version: str) -> ConceptIndex | None:
        found = self._complete.get((url, version))
        return found.index if found else None

    async def concepts(self, url: str, version: str, codes: Sequence[str]) -> dict[str, Concept]:
        index = self._index(url, version)
        if index is None:
            return {}
        return {code: index.concepts[code] for code in codes if code in index.concepts}

    async def subsumes(self, url: str, version: str, ancestor: str, code: str) -> bool:
        index = self._index(url, version)
        return index is not None and index.subsumes(ancestor, code)

    def _codes(self, url: str, version: str, query: ConceptQuery) -> tuple[list[str], ConceptIndex]:
        index = self._index(url, version)
        if index is None:
            return [], ConceptIndex(())
        return index.select(query.filters, query.text, query.active_only), index

    async def find(self, url: str, version: str, query: ConceptQuery) -> list[Concept]:
        codes, index = self._codes(url, version, query)
        start = 0 if query.after_code is None else bisect.bisect_right(codes, query.after_code)
        return [index.concepts[c] for c in codes[start : start + max(query.limit, 0)]]

    async def find_from(
        self, url: str, version: str, query: ConceptQuery, offset: int
    ) -> list[Concept]:
        codes, index = self._codes(url, version, query)
        start = max(offset, 0)
        return [index.concepts[c] for c in codes[start : start + max(query.limit, 0)]]

    async def count(self, url: str, version: str, query: ConceptQuery) -> int:
        return len(self._codes(url, version, query)[0])

    async def children(self, url: str, version: str, code: str) -> list[str]:
        index = self._index(url, version)
        return [] if index is None else index.children(code)

    # --- loading -------------------------------------------------------------------------
    async def start_load(self, info: CodeSystemInfo, fingerprint: str) -> LoadProgress:
        version = _require_version(info)
        key = (info.url, version)
        loading = self._loading.get(key)
        if loading is None or loading.fingerprint != fingerprint:
            loading = self._loading[key] = _Loading(info, fingerprint)
        else:
            loading.info = info
        return LoadProgress(info.url, version, fingerprint, loading.done)

    def _loading_of(self, url: str, version: str) -> _Loading:
        loading = self._loading.get((url, version))
        if loading is None:
            raise LookupError(f"no load of {url}|{version} was started")
        return loading

    async def load_concepts(
        self, url: str, version: str, concepts: Sequence[Concept], done: int
    ) -> None:
        loading = self._loading_of(url, version)
        for concept in concepts:
            loading.concepts.setdefault(concept.code, concept)
        loading.done = done

    async def finish_load(self, url: str, version: str) -> CodeSystemInfo:
        loading = self._loading_of(url, version)
        info = replace(loading.info, count=len(loading.concepts))
        index = ConceptIndex(loading.concepts.values())
        self._complete[(url, version)] = _Complete(info, index, next(self._seq))
        del self._loading[(url, version)]
        return info

    async def delete_code_system(self, url: str, version: str) -> bool:
        complete = self._complete.pop((url, version), None)
        loading = self._loading.pop((url, version), None)
        return complete is not None or loading is not None
