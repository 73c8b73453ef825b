"""The R4 definitions as one frozen lookup object.

Structure: https://hl7.org/fhir/R4/structuredefinition.html; summary elements for
``_summary``: https://hl7.org/fhir/R4/search.html#summary; compartments:
https://hl7.org/fhir/R4/compartmentdefinition.html.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from healthbridge.fhir.definitions.model import (
    ElementDef,
    SearchParameter,
    TypeDef,
    ValueSetCodes,
)

_EMPTY: Mapping[str, ElementDef] = MappingProxyType({})


@dataclass(frozen=True)
class Definitions:
    """Everything the pure FHIR layer knows about R4 4.0.1 (built by ``load_definitions``).

    ``types`` holds every primitive type, complex datatype and resource (abstract ones
    included); ``resource_types`` only the concrete resources a client may send.
    ``compartments`` maps a compartment type (``Patient``, ``Encounter``, ``RelatedPerson``,
    ``Practitioner``, ``Device``) to resource type to the search parameter codes that link a
    resource into the compartment; ``{def}`` stands for the compartment resource itself
    (``Encounter`` in the Encounter compartment).
    """

    fhir_version: str
    types: Mapping[str, TypeDef] = field(repr=False)
    value_sets: Mapping[str, ValueSetCodes] = field(repr=False)
    unexpanded_value_sets: Mapping[str, str] = field(repr=False)
    compartments: Mapping[str, Mapping[str, tuple[str, ...]]] = field(repr=False)
    resource_types: frozenset[str] = field(repr=False)
    _elements: Mapping[str, ElementDef] = field(repr=False)
    _children: Mapping[str, Mapping[str, ElementDef]] = field(repr=False)
    _search: Mapping[str, Mapping[str, SearchParameter]] = field(repr=False)
    _search_by_url: Mapping[str, SearchParameter] = field(repr=False)
    _top_level_memo: dict[tuple[str, str], frozenset[str]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def is_resource_type(self, name: str) -> bool:
        """True for a concrete R4 resource type (``Patient``; not ``DomainResource``)."""
        return name in self.resource_types

    def type_def(self, name: str) -> TypeDef | None:
        return self.types.get(name)

    def element(self, path: str) -> ElementDef | None:
        """The element at ``path``, e.g. ``Patient.contact.name`` or ``Observation.value[x]``."""
        return self._elements.get(path)

    def children(self, path: str) -> Mapping[str, ElementDef]:
        """The direct child elements of a type or element path, keyed by element name."""
        return self._children.get(path, _EMPTY)

    def summary_elements(self, resource_type: str) -> frozenset[str]:
        """JSON property names of the top-level elements flagged isSummary (``_summary=true``);
        choice elements are expanded (``valueQuantity``, ``valueString``, ...)."""
        return self._top_level("summary", resource_type, lambda e: e.is_summary)

    def mandatory_elements(self, resource_type: str) -> frozenset[str]:
        """JSON property names of the top-level elements with min >= 1 (kept by
        ``_summary=text``, together with ``id``, ``meta`` and ``text``)."""
        return self._top_level("mandatory", resource_type, lambda e: e.min >= 1)

    def modifier_elements(self, resource_type: str) -> frozenset[str]:
        """JSON property names of the top-level elements flagged isModifier."""
        return self._top_level("modifier", resource_type, lambda e: e.is_modifier)

    def _top_level(
        self, flag: str, resource_type: str, keep: Callable[[ElementDef], bool]
    ) -> frozenset[str]:
        """Memoised per (flag, type): the REST layer asks on every ``_summary`` read."""
        found = self._top_level_memo.get((flag, resource_type))
        if found is None:
            found = frozenset(
                name
                for element in self.children(resource_type).values()
                if keep(element)
                for name, _ in element.json_names
            )
            self._top_level_memo[(flag, resource_type)] = found
        return found

    def search_parameters(self, resource_type: str) -> Mapping[str, SearchParameter]:
        """Search parameters by code for ``resource_type``, including those defined on
        Resource and DomainResource (``_id``, ``_lastUpdated``, ``_tag``, ``_text``...)."""
        return self._search.get(resource_type, MappingProxyType({}))

    def with_search_parameters(self, extra: Iterable[SearchParameter]) -> Definitions:
        """These definitions plus ``extra`` (custom SearchParameters, already checked by
        :func:`healthbridge.fhir.search.custom.custom_parameter`); a base ``Resource`` or
        ``DomainResource`` applies to every resource type."""
        extra = list(extra)
        if not extra:
            return self
        search = {name: dict(params) for name, params in self._search.items()}
        for param in extra:
            for base in param.base:
                types = self.resource_types if base in ("Resource", "DomainResource") else {base}
                for name in types:
                    search.setdefault(name, {})[param.code] = param
        by_url = dict(self._search_by_url) | {p.url: p for p in extra}
        return replace(
            self,
            _search=MappingProxyType({k: MappingProxyType(v) for k, v in search.items()}),
            _search_by_url=MappingProxyType(by_url),
            _top_level_memo={},
        )

    def search_parameter(self, url: str) -> SearchParameter | None:
        """A search parameter by canonical URL (composite components refer to these)."""
        return self._search_by_url.get(url)

    def compartment_params(self, compartment: str, resource_type: str) -> tuple[str, ...]:
        """Parameter codes linking ``resource_type`` into ``compartment`` (empty: not in it)."""
        return self.compartments.get(compartment, {}).get(resource_type, ())

    def value_set(self, url: str) -> ValueSetCodes | None:
        """The codes of a value set bound *required* somewhere in R4 (None when unknown or
        listed in ``unexpanded_value_sets``). ``url`` may carry a ``|version`` suffix."""
        return self.value_sets.get(url.split("|", 1)[0])
