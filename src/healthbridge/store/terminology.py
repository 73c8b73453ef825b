"""Large code systems stored in their own tables: https://hl7.org/fhir/R4/terminology-service.html.

LOINC, SNOMED CT, RxNorm, ICD-10-CM and CVX are far too big to keep as CodeSystem resources
(SNOMED CT has ~370,000 concepts and ~1.5 million descriptions), so the loaders in
:mod:`healthbridge.terminology` stream their release files into concept tables that the
terminology operations query directly. Smaller code systems (R4 core, packages, operator uploads)
stay ordinary CodeSystem resources.

Semantics shared by every backend (memory fake, SQLite, PostgreSQL; the same contract tests run
on each):

* a code system version becomes visible only when its load finishes (``finish_load``); until then
  readers see the previous complete version, if any;
* a load is resumable: ``start_load`` with the same url, version and ``fingerprint`` (a digest of
  the release files) returns how many concepts the unfinished load already holds, and the loader
  skips that many; a different fingerprint starts over;
* each ``load_concepts`` batch commits in one transaction together with the new position, so a
  crash loses at most the batch in flight;
* ``parents`` may name codes that arrive in a later batch; hierarchy queries are answered only
  after ``finish_load``, which builds what they need (a transitive closure or equivalent index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from healthbridge.fhir.terminology.concepts import CodeSystemInfo, Concept

FilterOp = Literal[
    "=", "is-a", "descendent-of", "is-not-a", "regex", "in", "not-in", "generalizes", "exists"
]


@dataclass(frozen=True, slots=True)
class ConceptFilter:
    """``ValueSet.compose.include.filter``: ``property`` is ``concept`` (or ``code``) for the
    hierarchy operators, else a property code (or ``display`` for regex on the display)."""

    property: str
    op: FilterOp
    value: str


@dataclass(frozen=True, slots=True)
class ConceptQuery:
    """Concepts of one code system version matching every filter and, when ``text`` is given,
    containing every word of it (case-insensitive, in the display or a designation), in code
    order after ``after_code``."""

    filters: tuple[ConceptFilter, ...] = ()
    text: str | None = None
    active_only: bool = True
    after_code: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class LoadProgress:
    """Where a (possibly resumed) load stands: ``done`` concepts are already stored."""

    url: str
    version: str
    fingerprint: str
    done: int


class TerminologyStore(Protocol):
    # --- reading (complete versions only) ---
    async def code_systems(self) -> list[CodeSystemInfo]:
        """Every complete code system version, by url then version."""
        ...

    async def code_system(self, url: str, version: str | None = None) -> CodeSystemInfo | None:
        """That version, or the most recently loaded complete version when ``version`` is None."""
        ...

    async def concepts(self, url: str, version: str, codes: Sequence[str]) -> dict[str, Concept]:
        """The concepts with these codes (missing codes are absent from the answer)."""
        ...

    async def subsumes(self, url: str, version: str, ancestor: str, code: str) -> bool:
        """True when ``code`` is ``ancestor`` or is-a it (transitively)."""
        ...

    async def find(self, url: str, version: str, query: ConceptQuery) -> list[Concept]:
        """One page of matching concepts (``query.limit`` at most)."""
        ...

    async def count(self, url: str, version: str, query: ConceptQuery) -> int:
        """How many concepts match ``query`` (``after_code`` and ``limit`` ignored)."""
        ...

    async def find_from(
        self, url: str, version: str, query: ConceptQuery, offset: int
    ) -> list[Concept]:
        """Like :meth:`find` but the page starts at the ``offset``-th match (``after_code``
        ignored): ``$expand`` paging by ``offset``."""
        ...

    async def children(self, url: str, version: str, code: str) -> list[str]:
        """The codes whose parents include ``code`` (direct children), in code order."""
        ...

    # --- loading (used by the release-file loaders) ---
    async def start_load(self, info: CodeSystemInfo, fingerprint: str) -> LoadProgress:
        """Begin or resume loading ``info.url|info.version`` (version required)."""
        ...

    async def load_concepts(
        self, url: str, version: str, concepts: Sequence[Concept], done: int
    ) -> None:
        """Store one batch; ``done`` is the progress after it (committed atomically with it)."""
        ...

    async def finish_load(self, url: str, version: str) -> CodeSystemInfo:
        """Build the hierarchy index, count the concepts and make the version visible."""
        ...

    async def delete_code_system(self, url: str, version: str) -> bool:
        """Remove a version (complete or not); True when there was one."""
        ...
