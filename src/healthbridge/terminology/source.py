"""What a release-file parser hands the loader: https://hl7.org/fhir/R4/codesystem.html.

A :class:`Source` is a code system version (``CodeSystem`` minus its concepts) and a way to read
its concepts as a stream, always in the same order, so that a resumed load can skip the concepts
an interrupted one already stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from healthbridge.fhir.terminology.concepts import CodeSystemInfo, Concept, Designation

SNOMED = "http://snomed.info/sct"
FSN = (SNOMED, "900000000000003001")
"""Designation use: fully specified name (https://hl7.org/fhir/R4/valueset-designation-use.html)."""
SYNONYM = (SNOMED, "900000000000013009")
"""Designation use: synonym."""


@dataclass(frozen=True, slots=True)
class Source:
    """``concepts()`` yields every concept once, in the same order on every call; ``total`` is
    how many when known beforehand (for progress and ETA)."""

    info: CodeSystemInfo
    fingerprint: str
    total: int | None
    concepts: Callable[[], Iterator[Concept]]


def synonym(value: str, language: str | None = "en") -> Designation:
    return Designation(value, language, SYNONYM)


def batched(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
