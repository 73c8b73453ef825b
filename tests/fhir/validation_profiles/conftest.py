"""Implementation-guide packages for profile validation tests (https://hl7.org/fhir/packages.html).

The R4 core, IPS 2.0.0 and Genomics Reporting 3.0.0 packages are read from ../shared/data (tests
skip when it is missing) into a dict-based StructureLookup, and their ValueSets and CodeSystems
into a small CodeCheck: enumerated concepts and whole code systems held in the packages are
expanded; anything needing a terminology server (filters, external systems) answers None.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from healthbridge.fhir import ucum
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import Issue
from healthbridge.fhir.validation.profiles import ProfileValidator
from healthbridge.packages.archive import EXAMPLE, ROOT, read_archive
from tests.fhir.conftest import shared_file

CORE = "fhir-r4/hl7.fhir.r4.core-4.0.1.tgz"
IPS = "fhir-igs/hl7.fhir.uv.ips-2.0.0.tgz"
GENOMICS = "fhir-igs/hl7.fhir.uv.genomics-reporting-3.0.0.tgz"

Pairs = frozenset[tuple[str, str]]


def read_package(path: Path, folder: str = "package/") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file name, resource)`` for the resources directly in ``folder`` of a package, as the
    package installer reads them (:func:`healthbridge.packages.archive.read_archive`)."""
    kind = EXAMPLE if folder.rstrip("/").endswith(EXAMPLE) else ROOT
    for file in read_archive(path).files:
        if file.folder == kind and not file.name.rsplit("/", 1)[-1].startswith("."):
            yield file.name.rsplit("/", 1)[-1], file.resource


def _concepts(raw: object) -> Iterator[str]:
    for concept in raw if isinstance(raw, list) else ():
        yield concept["code"]
        yield from _concepts(concept.get("concept"))


@dataclass
class Terminology:
    """Value set membership from package content only (a test stand-in for a terminology
    server: it answers None whenever it would have to guess)."""

    value_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    code_systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    _expanded: dict[str, Pairs | None] = field(default_factory=dict)

    def add(self, resource: dict[str, Any]) -> None:
        url = resource.get("url")
        if resource["resourceType"] == "ValueSet" and isinstance(url, str):
            self.value_sets[url] = resource
        elif resource["resourceType"] == "CodeSystem" and isinstance(url, str):
            self.code_systems[url] = resource

    def _include(self, include: dict[str, Any]) -> Pairs | None:
        if "filter" in include:
            return None
        found: set[tuple[str, str]] = set()
        for nested in include.get("valueSet", ()):
            expanded = self.expand(nested)
            if expanded is None:
                return None
            found |= expanded
        system = include.get("system")
        if "concept" in include:
            found |= {(system, c["code"]) for c in include["concept"]}
        elif system is not None:
            code_system = self.code_systems.get(system)
            if code_system is None or code_system.get("content") != "complete":
                return None
            found |= {(system, code) for code in _concepts(code_system.get("concept"))}
        return frozenset(found)

    def expand(self, url: str) -> Pairs | None:
        url = url.split("|", maxsplit=1)[0]
        if url not in self._expanded:
            self._expanded[url] = None  # cycles cannot be expanded
            self._expanded[url] = self._compute(url)
        return self._expanded[url]

    def _compute(self, url: str) -> Pairs | None:
        value_set = self.value_sets.get(url)
        compose = value_set.get("compose") if value_set else None
        if compose is None:
            return None
        found: set[tuple[str, str]] = set()
        for include in compose.get("include", ()):
            part = self._include(include)
            if part is None:
                return None
            found |= part
        for exclude in compose.get("exclude", ()):
            part = self._include(exclude)
            if part is None:
                return None
            found -= part
        return frozenset(found)

    def __call__(self, value_set: str, system: str | None, code: str) -> bool | None:
        expanded = self.expand(value_set)
        if expanded is None:
            return None
        if system is None:
            return any(c == code for _, c in expanded)
        return (system, code) in expanded


@dataclass
class Packages:
    structures: dict[str, dict[str, Any]] = field(default_factory=dict)
    terminology: Terminology = field(default_factory=Terminology)
    examples: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def load(self, relative: str, with_examples: bool) -> None:
        path = shared_file(relative)
        for _, resource in read_package(path):
            if resource["resourceType"] == "StructureDefinition":
                self.structures[resource["url"]] = resource
                self.structures[f"{resource['url']}|{resource.get('version')}"] = resource
            else:
                self.terminology.add(resource)
        if with_examples:
            self.examples[relative] = dict(read_package(path, "package/example/"))


@pytest.fixture(scope="session")
def packages() -> Packages:
    loaded = Packages()
    loaded.load(CORE, with_examples=False)
    loaded.load(IPS, with_examples=True)
    loaded.load(GENOMICS, with_examples=True)
    return loaded


def valid_ucum(code: str) -> bool:
    """UCUM validity through the server's own UCUM parser; annotations (``{score}``, ``mg{Hb}``)
    carry no meaning in UCUM (https://ucum.org/ucum#para-6) and are removed first."""
    plain = re.sub(r"\{[^{}]*\}", "", code)
    return ucum.conversion(plain or "1") is not None


@pytest.fixture(scope="session")
def profile_validator(definitions: Definitions, packages: Packages) -> ProfileValidator:
    return ProfileValidator(
        definitions, packages.structures.get, packages.terminology, units=valid_ucum
    )


def errors(issues: list[Issue]) -> list[Issue]:
    return [issue for issue in issues if issue.severity in ("error", "fatal")]


def describe(issues: list[Issue]) -> str:
    return "\n".join(f"{i.severity} {i.expression} {i.diagnostics}" for i in issues)
