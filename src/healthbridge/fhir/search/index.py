"""Index extraction: https://hl7.org/fhir/R4/search.html.

``Indexer.index_rows(resource)`` is the pure function behind the search index tables: for every
SearchParameter of the resource's type (https://hl7.org/fhir/R4/searchparameter-registry.html,
the Resource-level ``_id``, ``_lastUpdated``, ``_tag``, ``_profile``, ``_security`` and
``_source`` included) it selects the elements with the compiled expression and turns them into
typed values. Parameters without an expression (``_text``, ``_content``, ``_query``,
``_filter``) and special parameters other than ``near`` are not indexed. Composites
(https://hl7.org/fhir/R4/search.html#composite) yield one tuple per combination of component
values within each focus element.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from healthbridge.fhir.definitions import Definitions, SearchParameter
from healthbridge.fhir.search.dates import date_values
from healthbridge.fhir.search.fhirpath import Accessor, compile_expression
from healthbridge.fhir.search.quantities import number_values, quantity_values
from healthbridge.fhir.search.references import reference_values
from healthbridge.fhir.search.strings import string_values
from healthbridge.fhir.search.tokens import token_values
from healthbridge.fhir.search.values import CompositeValue, IndexValue, NearValue, UriValue
from healthbridge.fhir.types import Resource

Extractor = Callable[[Any, str | None], Sequence[IndexValue]]


def uri_values(node: Any, hint: str | None = None) -> list[UriValue]:
    """https://hl7.org/fhir/R4/search.html#uri: the string as stored."""
    return [UriValue(node)] if isinstance(node, str) else []


def near_values(node: Any, hint: str | None = None) -> list[NearValue]:
    """https://hl7.org/fhir/R4/location.html#positional: Location.position latitude/longitude."""
    if not isinstance(node, dict):
        return []
    latitude, longitude = node.get("latitude"), node.get("longitude")
    numbers = (Decimal, int, float)
    if not all(isinstance(v, numbers) and not isinstance(v, bool) for v in (latitude, longitude)):
        return []
    return [NearValue(Decimal(str(latitude)), Decimal(str(longitude)))]


def _references(node: Any, hint: str | None = None) -> Sequence[IndexValue]:
    return reference_values(node)


EXTRACTORS: dict[str, Extractor] = {
    "token": token_values,
    "string": string_values,
    "date": date_values,
    "number": number_values,
    "quantity": quantity_values,
    "reference": _references,
    "uri": uri_values,
    "special": near_values,
}


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One index entry: the parameter code, its type (``token``, ``composite``...) and value."""

    param: str
    kind: str
    value: IndexValue


@dataclass(frozen=True, slots=True)
class CompiledParameter:
    """A search parameter compiled for one resource type."""

    code: str
    kind: str
    accessor: Accessor
    components: tuple[tuple[str, Accessor], ...] = ()

    def select(self, resource: Resource, memo: Memo | None) -> list[IndexValue]:
        """The index values of this parameter in ``resource`` (the caller has checked that the
        resource has the properties it reads: ``accessor.root_keys``). ``memo`` shares the
        selections of identical expressions between the parameters of one resource (``code``
        and ``combo-code``); it is keyed by focus identity, so it is not shared with
        fhirpathpy-selected foci, which may be copies. None when no other parameter selects
        the same."""
        memo = memo if self.accessor.compiled else None
        if not self.components:
            return _extract(self.kind, self.accessor, resource, resource, memo)
        memo = {} if memo is None else memo
        return [
            CompositeValue(combination)
            for focus in self.accessor.fn(resource, resource)
            for combination in itertools.product(
                *(_extract(kind, part, focus, resource, memo) for kind, part in self.components)
            )
        ]


Memo = dict[tuple[str, str, int], list[IndexValue]]


def _extract(
    kind: str, accessor: Accessor, focus: Any, resource: Resource, memo: Memo | None
) -> list[IndexValue]:
    if memo is None:
        extract, hint = EXTRACTORS[kind], accessor.type_hint
        return [v for node in accessor.fn(focus, resource) for v in extract(node, hint)]
    key = (kind, accessor.expression, id(focus))
    found = memo.get(key)
    if found is None:
        extract, hint = EXTRACTORS[kind], accessor.type_hint
        found = [v for node in accessor.fn(focus, resource) for v in extract(node, hint)]
        memo[key] = found
    return found


def _indexable(param: SearchParameter) -> bool:
    if not param.expression:
        return False
    return param.type != "special" or param.code == "near"


class Indexer:
    """Extracts index rows; each resource type's parameters are compiled once, on first use."""

    def __init__(self, definitions: Definitions) -> None:
        self._definitions = definitions
        self._compiled: dict[str, tuple[CompiledParameter, ...]] = {}
        self._plans: dict[str, _TypePlan] = {}
        self._by_code: dict[str, dict[str, CompiledParameter]] = {}

    @property
    def definitions(self) -> Definitions:
        return self._definitions

    def parameters(self, resource_type: str) -> tuple[CompiledParameter, ...]:
        """The compiled indexable parameters of ``resource_type`` (empty for unknown types)."""
        compiled = self._compiled.get(resource_type)
        if compiled is None:
            params = self._definitions.search_parameters(resource_type).values()
            candidates = (self._compile(resource_type, p) for p in params if _indexable(p))
            compiled = tuple(c for c in candidates if c is not None)
            self._compiled[resource_type] = compiled
        return compiled

    def _compile(self, resource_type: str, param: SearchParameter) -> CompiledParameter | None:
        accessor = compile_expression(self._definitions, str(param.expression), resource_type)
        if param.type != "composite":
            return CompiledParameter(param.code, param.type, accessor)
        components: list[tuple[str, Accessor]] = []
        for component in param.component:
            definition = self._definitions.search_parameter(component.definition)
            if definition is None or definition.type not in EXTRACTORS:
                return None
            focus = accessor.type_hint or resource_type
            part = compile_expression(
                self._definitions, component.expression, resource_type, relative_to=focus
            )
            components.append((definition.type, part))
        return CompiledParameter(param.code, param.type, accessor, tuple(components))

    def index_rows(self, resource: Resource) -> list[IndexRow]:
        """Every index row of ``resource`` (a decoded FHIR JSON dict)."""
        plan = self._plan(str(resource.get("resourceType", "")))
        chosen = set(plan.always)
        for key in resource:
            positions = plan.by_key.get(key)
            if positions is not None:
                chosen.update(positions)
        rows: list[IndexRow] = []
        memo: Memo = {}
        for position in sorted(chosen):
            param = plan.params[position]
            shared = memo if position in plan.shared else None
            rows.extend(IndexRow(param.code, param.kind, v) for v in param.select(resource, shared))
        return rows

    def values_of(self, resource: Resource, code: str) -> list[IndexValue]:
        """The index values of the one parameter ``code`` of ``resource`` (none when its type
        has no such indexable parameter): compartment membership and subscription filters
        read two or three of an Observation's 44."""
        resource_type = str(resource.get("resourceType", ""))
        by_code = self._by_code.get(resource_type)
        if by_code is None:
            by_code = {param.code: param for param in self.parameters(resource_type)}
            self._by_code[resource_type] = by_code
        param = by_code.get(code)
        return [] if param is None else param.select(resource, None)

    def lazy_rows(self, resource: Resource) -> LazyRows:
        """``resource``'s index values by parameter code, each parameter extracted when first
        asked for."""
        return LazyRows(self, resource)

    def _plan(self, resource_type: str) -> _TypePlan:
        """Which parameters read which top-level properties, so that a resource only runs the
        parameters whose properties it has (an Observation has 44 parameters and about ten
        properties)."""
        plan = self._plans.get(resource_type)
        if plan is None:
            plan = _TypePlan.of(self.parameters(resource_type))
            self._plans[resource_type] = plan
        return plan


class LazyRows:
    """One resource's index values by parameter code, as ``dict(rows_by_param(index_rows()))``
    would give them, but each parameter extracted on first use: a subscription's filters or a
    scope's filters read two or three of an Observation's 44 parameters."""

    __slots__ = ("_found", "_indexer", "_resource")

    def __init__(self, indexer: Indexer, resource: Resource) -> None:
        self._indexer = indexer
        self._resource = resource
        self._found: dict[str, list[IndexValue]] = {}

    def get(self, code: str, default: list[IndexValue], /) -> list[IndexValue]:
        found = self._found.get(code)
        if found is None:
            found = self._found[code] = self._indexer.values_of(self._resource, code)
        return found or default


@dataclass(frozen=True, slots=True)
class _TypePlan:
    params: tuple[CompiledParameter, ...]
    by_key: dict[str, tuple[int, ...]]
    always: tuple[int, ...]  # parameters that read the resource as a whole
    shared: frozenset[int]  # parameters whose selection another one repeats (memoised)

    @classmethod
    def of(cls, params: tuple[CompiledParameter, ...]) -> _TypePlan:
        by_key: dict[str, list[int]] = {}
        always: list[int] = []
        uses: dict[tuple[str, str], int] = {}
        for position, param in enumerate(params):
            keys = param.accessor.root_keys
            if keys is None:
                always.append(position)
            for key in keys or ():
                by_key.setdefault(key, []).append(position)
            uses[(param.kind, param.accessor.expression)] = (
                uses.get((param.kind, param.accessor.expression), 0) + 1
            )
        shared = frozenset(
            position
            for position, param in enumerate(params)
            if param.components or uses[(param.kind, param.accessor.expression)] > 1
        )
        return cls(
            params,
            {key: tuple(found) for key, found in by_key.items()},
            tuple(always),
            shared,
        )
