"""Which of a package's resources to install: https://hl7.org/fhir/packages.html.

* Conformance resources are always installed: every resource in ``package/`` whose type is a
  canonical resource of R4 (it has a ``url`` and a ``version``: StructureDefinition profiles and
  extensions, ValueSet, CodeSystem, ConceptMap, SearchParameter, OperationDefinition,
  CapabilityStatement, ImplementationGuide, Questionnaire, StructureMap, Library...), and
  NamingSystem (https://hl7.org/fhir/R4/conformance-module.html).
* Examples only when asked (``--examples``): everything in ``package/example/``, and any other
  resource of ``package/`` (IPS, for one, ships its actor definitions as ``Basic`` resources
  there; older packages put examples beside their profiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.types import Resource
from healthbridge.packages.archive import ROOT, PackageFile

Kind = Literal["conformance", "example"]
NOT_CANONICAL = frozenset({"NamingSystem"})
"""Conformance resources without a canonical url in R4."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One resource the package offers, with the file it came from."""

    file: str
    kind: Kind
    resource: Resource

    @property
    def type(self) -> str:
        return str(self.resource["resourceType"])


def is_canonical(definitions: Definitions, resource_type: str) -> bool:
    """Whether R4 identifies resources of this type by ``url`` and ``version``."""
    parameters = definitions.search_parameters(resource_type)
    return "url" in parameters and "version" in parameters


def kind_of(definitions: Definitions, file: PackageFile) -> Kind:
    resource_type = str(file.resource["resourceType"])
    if file.folder == ROOT and (
        resource_type in NOT_CANONICAL
        or (
            definitions.is_resource_type(resource_type) and is_canonical(definitions, resource_type)
        )
    ):
        return "conformance"
    return "example"


def select(
    definitions: Definitions, files: Sequence[PackageFile], *, examples: bool
) -> list[Candidate]:
    """The resources to install, conformance resources first, each group in file order."""
    chosen = [Candidate(f.name, kind_of(definitions, f), f.resource) for f in files]
    conformance = [c for c in chosen if c.kind == "conformance"]
    others = [c for c in chosen if c.kind == "example"] if examples else []
    return sorted(conformance, key=lambda c: c.file) + sorted(others, key=lambda c: c.file)
