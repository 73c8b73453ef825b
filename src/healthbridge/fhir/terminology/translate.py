"""ConceptMap translation: https://hl7.org/fhir/R4/conceptmap-operation-translate.html.

Pure: given ConceptMap resources, a source (system, code) and optionally the target system,
the matches with their equivalence (http://hl7.org/fhir/ValueSet/concept-map-equivalence).
``reverse`` translates from the targets back to the sources. ``group.unmapped`` (``provided``:
the same code, ``fixed``: the given code) answers codes no element maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from healthbridge.fhir.types import Resource

NO_MATCH = frozenset({"unmatched", "disjoint"})


@dataclass(frozen=True, slots=True)
class Match:
    equivalence: str
    system: str | None
    code: str
    display: str | None
    source: str  # the ConceptMap's url
    comment: str | None = None


def _groups(concept_map: Resource) -> Iterator[dict[str, Any]]:
    for group in concept_map.get("group") or []:
        if isinstance(group, dict):
            yield group


def _forward(group: dict[str, Any], code: str, url: str) -> list[Match]:
    out = []
    for element in group.get("element") or []:
        if not isinstance(element, dict) or element.get("code") != code:
            continue
        for target in element.get("target") or []:
            if isinstance(target, dict):
                out.append(
                    Match(
                        str(target.get("equivalence") or "equivalent"),
                        group.get("target"),
                        str(target.get("code") or ""),
                        target.get("display"),
                        url,
                        target.get("comment"),
                    )
                )
    return out


def _backward(group: dict[str, Any], code: str, url: str) -> list[Match]:
    out = []
    for element in group.get("element") or []:
        if not isinstance(element, dict) or not isinstance(element.get("code"), str):
            continue
        for target in element.get("target") or []:
            if isinstance(target, dict) and target.get("code") == code:
                equivalence = str(target.get("equivalence") or "equivalent")
                out.append(
                    Match(
                        _reversed(equivalence),
                        group.get("source"),
                        element["code"],
                        element.get("display"),
                        url,
                    )
                )
    return out


def _reversed(equivalence: str) -> str:
    return {"wider": "narrower", "narrower": "wider", "subsumes": "specializes"}.get(
        equivalence, "generalizes" if equivalence == "specializes" else equivalence
    )


def _unmapped(group: dict[str, Any], code: str, url: str) -> list[Match]:
    unmapped = group.get("unmapped")
    if not isinstance(unmapped, dict):
        return []
    mode = unmapped.get("mode")
    if mode == "provided":
        return [Match("equal", group.get("target"), code, None, url)]
    if mode == "fixed" and isinstance(unmapped.get("code"), str):
        display = unmapped.get("display")
        return [Match("inexact", group.get("target"), unmapped["code"], display, url)]
    return []


def translate(
    concept_maps: Iterable[Resource],
    system: str | None,
    code: str,
    target_system: str | None = None,
    *,
    reverse: bool = False,
) -> list[Match]:
    """Every match of ``system|code`` in the maps' groups (``system`` None: any group)."""
    matches: list[Match] = []
    for concept_map in concept_maps:
        url = str(concept_map.get("url") or "")
        for group in _groups(concept_map):
            source, target = group.get("source"), group.get("target")
            if reverse:
                source, target = target, source
            if system is not None and source not in (None, system):
                continue
            if target_system is not None and target not in (None, target_system):
                continue
            found = (_backward if reverse else _forward)(group, code, url)
            if not found and not reverse:
                found = _unmapped(group, code, url)
            matches.extend(found)
    return matches


def is_match(match: Match) -> bool:
    return match.equivalence not in NO_MATCH
