"""Rebuilding the search index of stored resources: https://hl7.org/fhir/R4/searchparameter.html.

When custom search parameters change, resources stored before lack their index rows. A
:class:`Reindexer` rebuilds the index of live resources in resource-key order, one batch at a
time, so that a job can save its place and resume (:mod:`healthbridge.jobs.reindex`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ReindexBatch:
    processed: int
    next_after: int | None  # the resource key to go on after; None when nothing is left


class Reindexer(Protocol):
    async def count(self, types: Sequence[str] | None) -> int:
        """Live resources (of ``types``; all when None or empty)."""
        ...

    async def batch(
        self, types: Sequence[str] | None, after: int | None, limit: int
    ) -> ReindexBatch:
        """Rebuild the index of the next ``limit`` live resources after key ``after``, each
        against its current version."""
        ...
