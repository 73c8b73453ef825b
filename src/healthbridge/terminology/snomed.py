"""SNOMED CT concepts from RF2 rows: https://hl7.org/fhir/R4/snomedct.html and
https://confluence.ihtsdotools.org/display/DOCRELFMT (the RF2 release file specification).

Pure functions over the tab-separated rows of the snapshot files (the joining of files lives in
:mod:`healthbridge.terminology.snomed_release`):

* ``sct2_Concept_Snapshot``: ``id effectiveTime active moduleId definitionStatusId``;
* ``sct2_Description_Snapshot-<lang>`` and ``sct2_TextDefinition_Snapshot-<lang>``: ``id
  effectiveTime active moduleId conceptId languageCode typeId term caseSignificanceId``;
* ``sct2_Relationship_Snapshot``: ``id effectiveTime active moduleId sourceId destinationId
  relationshipGroup typeId characteristicTypeId modifierId`` (active ``116680003 |is a|`` rows
  are the parents);
* ``der2_cRefset_LanguageSnapshot-<lang>``: ``id effectiveTime active moduleId refsetId
  referencedComponentId acceptabilityId``.

The display is the synonym preferred in the US English language reference set (or in any
language reference set, else the first synonym); every active description is a designation with
its use (fully specified name or synonym) and language. Inactive concepts stay, marked inactive.
The version is ``http://snomed.info/sct/<edition module>/version/<YYYYMMDD>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    Designation,
    PropertyDefinition,
)
from healthbridge.terminology.release import ReleaseError
from healthbridge.terminology.source import FSN, SNOMED, SYNONYM

IS_A = "116680003"
DEFINITION = "900000000000550004"
PREFERRED = "900000000000548007"
US_ENGLISH = "900000000000509007"
FULLY_DEFINED = "900000000000073002"
EDITIONS = {
    "900000000000207008": "International Edition",
    "731000124108": "US Edition",
    "999000041000000102": "UK Edition",
    "32506021000036107": "Australian Edition",
    "20621000087109": "Canadian Edition",
}
HEADERS = {
    "concept": ("id", "effectiveTime", "active", "moduleId", "definitionStatusId"),
    "description": (
        "id", "effectiveTime", "active", "moduleId", "conceptId", "languageCode", "typeId",
        "term", "caseSignificanceId",
    ),
    "relationship": (
        "id", "effectiveTime", "active", "moduleId", "sourceId", "destinationId",
        "relationshipGroup", "typeId", "characteristicTypeId", "modifierId",
    ),
    "language": (
        "id", "effectiveTime", "active", "moduleId", "refsetId", "referencedComponentId",
        "acceptabilityId",
    ),
    "module dependency": (
        "id", "effectiveTime", "active", "moduleId", "refsetId", "referencedComponentId",
        "sourceEffectiveTime", "targetEffectiveTime",
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Description:
    """An active description of a concept; ``preferred`` ranks its acceptability (0: preferred
    in US English, 1: preferred in another language reference set, 2: not preferred)."""

    id: str
    type: str
    language: str
    term: str
    preferred: int = 2


def rows(lines: Iterable[str], kind: str, where: str) -> Iterator[list[str]]:
    """The rows of an RF2 file (header checked and skipped); ``kind`` keys :data:`HEADERS`."""
    expected = HEADERS[kind]
    iterator = iter(lines)
    header = next(iterator, "").rstrip("\r\n").split("\t")
    if tuple(header[: len(expected)]) != expected:
        raise ReleaseError(
            f"{where} is not an RF2 {kind} file: its header should be "
            f"{' '.join(expected)} (from the Snapshot folder of the SNOMED CT release)"
        )
    for line in iterator:
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) >= len(expected):
            yield fields


def active(rows: Iterable[list[str]]) -> Iterator[list[str]]:
    return (row for row in rows if row[2] == "1")


def concept(
    row: Sequence[str], descriptions: Sequence[Description], parents: Sequence[str]
) -> Concept:
    """One ``sct2_Concept`` row with its active descriptions and is-a parents."""
    code, effective, is_active, module, status = row[:5]
    synonyms = [d for d in descriptions if d.type not in {DEFINITION, FSN[1]}]
    fsn = next((d.term for d in descriptions if d.type == FSN[1]), None)
    best = min(synonyms, key=lambda d: (d.preferred, int(d.id)), default=None)
    definition = next((d.term for d in descriptions if d.type == DEFINITION), None)
    designations = tuple(
        Designation(d.term, d.language or None, FSN if d.type == FSN[1] else SYNONYM)
        for d in descriptions
        if d.type != DEFINITION
    )
    properties = (
        ConceptProperty("inactive", is_active != "1"),
        ConceptProperty("moduleId", module),
        ConceptProperty("effectiveTime", effective),
        ConceptProperty("sufficientlyDefined", status == FULLY_DEFINED),
    )
    return Concept(
        code=code,
        display=best.term if best else fsn,
        definition=definition,
        designations=designations,
        properties=properties,
        parents=tuple(parents),
        inactive=is_active != "1",
    )


def edition_module(dependencies: Iterable[Sequence[str]]) -> str | None:
    """The edition's own module: the one no other module depends on (module dependency rows:
    ``moduleId`` depends on ``referencedComponentId``), preferring a known edition."""
    modules: set[str] = set()
    depended: set[str] = set()
    for row in dependencies:
        modules.add(row[3])
        depended.add(row[5])
    tops = sorted(modules - depended)
    known = [module for module in tops if module in EDITIONS]
    if len(known) == 1:
        return known[0]
    return tops[0] if len(tops) == 1 else None


def version_uri(module: str, effective_time: str) -> str:
    return f"{SNOMED}/{module}/version/{effective_time}"


def info(module: str, effective_time: str) -> CodeSystemInfo:
    field = "http://snomed.info/field/Concept."
    definitions = (
        PropertyDefinition(
            "inactive", "boolean", "http://hl7.org/fhir/concept-properties#inactive"
        ),
        PropertyDefinition("moduleId", "code", f"{field}moduleId"),
        PropertyDefinition("effectiveTime", "string", f"{field}effectiveTime"),
        PropertyDefinition("sufficientlyDefined", "boolean", f"{field}definitionStatusId"),
    )
    edition = EDITIONS.get(module, f"edition {module}")
    return CodeSystemInfo(
        url=SNOMED,
        version=version_uri(module, effective_time),
        name="SNOMEDCT",
        title=f"SNOMED CT {edition}",
        case_sensitive=False,
        properties=definitions,
        publisher="SNOMED International",
        copyright="This material includes SNOMED Clinical Terms (SNOMED CT) which is used by "
        "permission of SNOMED International. All rights reserved.",
        source="snomed",
        extra=(("edition", module), ("effectiveTime", effective_time)),
    )
