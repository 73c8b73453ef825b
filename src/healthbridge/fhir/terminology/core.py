"""The R4 core code systems, value sets and concept maps shipped with the server.

https://hl7.org/fhir/R4/terminologies-systems.html and terminologies-valuesets.html: generated
by ``scripts/generate_definitions.py`` into ``definitions/data/terminology.json.gz`` (about
0.5 MB). Read lazily, on the first terminology operation that needs it, so server start-up
does not pay for it; each code system's :class:`ConceptIndex` is built on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from healthbridge.fhir.definitions.loader import read_data
from healthbridge.fhir.terminology.code_system import code_system_info, concepts
from healthbridge.fhir.terminology.concept_index import ConceptIndex
from healthbridge.fhir.terminology.concepts import CodeSystemInfo
from healthbridge.fhir.types import Resource

DATA_FILE = "terminology.json.gz"


@dataclass
class CoreTerminology:
    code_systems: dict[str, Resource]
    value_sets: dict[str, Resource]
    concept_maps: dict[str, Resource]
    _indexes: dict[str, tuple[CodeSystemInfo, ConceptIndex]] = field(default_factory=dict)

    def code_system(self, url: str) -> tuple[CodeSystemInfo, ConceptIndex] | None:
        """The info and concept index of a core code system (``url`` without version)."""
        found = self._indexes.get(url)
        if found is None:
            resource = self.code_systems.get(url)
            if resource is None:
                return None
            found = (code_system_info(resource, "core"), ConceptIndex(concepts(resource)))
            self._indexes[url] = found
        return found


def build_core(data: dict[str, list[Resource]]) -> CoreTerminology:
    def by_url(key: str) -> dict[str, Resource]:
        return {r["url"]: r for r in data.get(key, []) if isinstance(r.get("url"), str)}

    return CoreTerminology(by_url("codeSystems"), by_url("valueSets"), by_url("conceptMaps"))


@cache
def core_terminology() -> CoreTerminology:
    """The shipped content, read once per process on first use."""
    return build_core(read_data(DATA_FILE))
