"""Concepts of a code system as plain frozen records: https://hl7.org/fhir/R4/codesystem.html.

One shape for every source of codes: CodeSystem resources (R4 core, installed packages, operator
uploads) and the large terminologies loaded from their release files (LOINC, SNOMED CT, RxNorm,
ICD-10-CM, CVX). The terminology operations (https://hl7.org/fhir/R4/terminology-service.html)
and the release-file loaders both speak in these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

PropertyType = Literal["code", "Coding", "string", "integer", "boolean", "dateTime", "decimal"]
PropertyValue = str | int | bool | Decimal | tuple[str, str]
"""A property value; ``Coding`` values are ``(system, code)`` pairs, ``code`` values strings."""


@dataclass(frozen=True, slots=True)
class Designation:
    """``CodeSystem.concept.designation``: another name for the concept."""

    value: str
    language: str | None = None
    use: tuple[str, str] | None = None  # (system, code), e.g. SNOMED 900000000000013009 synonym


@dataclass(frozen=True, slots=True)
class ConceptProperty:
    """``CodeSystem.concept.property``: ``code`` names a ``CodeSystem.property`` definition."""

    code: str
    value: PropertyValue


@dataclass(frozen=True, slots=True)
class Concept:
    """One concept. ``parents`` are the codes it is-a (SNOMED ``116680003`` relationships,
    nesting or ``parent`` properties in a CodeSystem resource); ``inactive`` concepts still
    answer ``$lookup`` and ``$validate-code`` (with a warning) but are left out of expansions
    unless ``activeOnly=false``."""

    code: str
    display: str | None = None
    definition: str | None = None
    designations: tuple[Designation, ...] = ()
    properties: tuple[ConceptProperty, ...] = ()
    parents: tuple[str, ...] = ()
    inactive: bool = False


@dataclass(frozen=True, slots=True)
class PropertyDefinition:
    """``CodeSystem.property``: a property the concepts of a system may carry."""

    code: str
    type: PropertyType
    uri: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class CodeSystemInfo:
    """What a code system is, without its concepts (``CodeSystem`` minus ``concept``)."""

    url: str
    version: str | None = None
    name: str | None = None
    title: str | None = None
    status: str = "active"
    content: str = "complete"  # CodeSystem.content: complete | fragment | example | not-present
    case_sensitive: bool = True
    hierarchy_meaning: str | None = "is-a"
    properties: tuple[PropertyDefinition, ...] = ()
    count: int | None = None
    publisher: str | None = None
    copyright: str | None = None
    source: str = "resource"
    """Where the concepts come from: ``resource`` (a CodeSystem resource), ``core`` (shipped
    with the server) or the release format they were loaded from (``loinc``, ``snomed``,
    ``rxnorm``, ``icd10cm``, ``cvx``)."""
    extra: tuple[tuple[str, str], ...] = field(default=())
    """Free-form facts worth showing (``("edition", "900000000000207008")``)."""
