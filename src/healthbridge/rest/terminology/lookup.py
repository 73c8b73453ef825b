"""CodeSystem $lookup and $subsumes:
https://hl7.org/fhir/R4/codesystem-operation-lookup.html and
https://hl7.org/fhir/R4/codesystem-operation-subsumes.html.

``$lookup`` answers name, version, display, designations and properties (all of them, plus
``parent``, ``child`` and ``inactive``, unless ``property`` names which); ``$subsumes`` answers
``equivalent``, ``subsumes``, ``subsumed-by`` or ``not-subsumed`` from the code system's is-a
hierarchy.
"""

from __future__ import annotations

from typing import Any

from healthbridge.fhir.errors import InvalidRequest, NotFound
from healthbridge.fhir.terminology.concepts import Concept, Designation, PropertyValue
from healthbridge.fhir.terminology.parameters import parameter, parameters, typed_value
from healthbridge.fhir.types import Resource
from healthbridge.rest.terminology.sources import Source

HIERARCHY = ("parent", "child")


def _designation(designation: Designation) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if designation.language:
        parts.append(parameter("language", valueCode=designation.language))
    if designation.use:
        system, code = designation.use
        parts.append(parameter("use", valueCoding={"system": system, "code": code}))
    parts.append(parameter("value", valueString=designation.value))
    return parameter("designation", part=parts)


def _property(code: str, value: PropertyValue) -> dict[str, Any]:
    return parameter(
        "property",
        part=[parameter("code", valueCode=code), parameter("value", **typed_value(value))],
    )


async def lookup(
    source: Source,
    concept: Concept,
    wanted: list[str],
    language: str | None = None,
) -> Resource:
    """The $lookup answer for ``concept``; ``wanted`` the requested property codes (empty:
    every one)."""
    info = source.info
    out = [parameter("name", valueString=info.name or info.title or info.url)]
    if info.version:
        out.append(parameter("version", valueString=info.version))
    display = concept.display
    if language:
        display = next((d.value for d in concept.designations if d.language == language), display)
    if display:
        out.append(parameter("display", valueString=display))
    if concept.definition and (not wanted or "definition" in wanted):
        out.append(_property("definition", concept.definition))  # R4: no output of its own
    if not wanted or "designation" in wanted:
        out.extend(_designation(d) for d in concept.designations)
    for prop in concept.properties:
        if not wanted or prop.code in wanted:
            out.append(_property(prop.code, prop.value))
    if not wanted or "inactive" in wanted:
        out.append(_property("inactive", concept.inactive))
    if not wanted or "parent" in wanted:
        out.extend(_property("parent", code) for code in concept.parents)
    if not wanted or "child" in wanted:
        out.extend(_property("child", code) for code in await source.children(concept.code))
    return parameters(out)


async def concept_of(source: Source, code: str, name: str = "code") -> Concept:
    found = (await source.concepts([code])).get(code)
    if found is None:
        raise NotFound(
            f"The code {code!r} is not in {source.info.url}"
            + (f" version {source.info.version}" if source.info.version else ""),
            code="not-found",
            expression=name,
        )
    return found


async def subsumes(source: Source, code_a: str, code_b: str) -> Resource:
    await concept_of(source, code_a, "codeA")
    await concept_of(source, code_b, "codeB")
    if source.info.hierarchy_meaning not in (None, "is-a"):
        raise InvalidRequest(
            f"{source.info.url} has no is-a hierarchy (hierarchyMeaning "
            f"{source.info.hierarchy_meaning})",
            code="not-supported",
        )
    if code_a == code_b:
        outcome = "equivalent"
    elif await source.subsumes(code_a, code_b):
        outcome = "subsumes"
    elif await source.subsumes(code_b, code_a):
        outcome = "subsumed-by"
    else:
        outcome = "not-subsumed"
    return parameters([parameter("outcome", valueCode=outcome)])
