"""Parsing a FHIR search request into a :class:`~healthbridge.fhir.search.query.SearchQuery`.

Spec: https://hl7.org/fhir/R4/search.html: parameter names with modifiers (#modifiers), chains
(#chaining) and reverse chains (#has), comma-separated OR values with ``\\`` escapes (#escaping),
prefixes (#prefix), the value syntax of each parameter type (#ptypes) and the result parameters
(#return). Anything malformed raises InvalidRequest naming the parameter; unknown parameters are
collected in ``SearchQuery.unknown`` (or rejected when ``strict``, i.e.
``Prefer: handling=strict``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from healthbridge.fhir.definitions import Definitions, SearchParameter
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search import values_parse
from healthbridge.fhir.search.escaping import split_unescaped
from healthbridge.fhir.search.filter import NAME as FILTER
from healthbridge.fhir.search.filter import clauses_of, parse_filter
from healthbridge.fhir.search.query import (
    ChainStep,
    Clause,
    FilterAnd,
    FilterExpr,
    HasStep,
    QueryValue,
    SearchQuery,
    TokenQuery,
)
from healthbridge.fhir.search.results import ResultParams, parse_result_param

MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"text", "not", "above", "below", "in", "not-in", "of-type", "missing"}),
    "reference": frozenset({"missing", "identifier", "above", "below"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"above", "below", "missing"}),
    "composite": frozenset({"missing"}),
    "special": frozenset({"missing"}),
}
UNSUPPORTED = frozenset({"_query", "_contained", "_containedType"})


_LIST_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True, slots=True)
class SearchLimits:
    default_count: int = 50
    max_count: int = 1000
    max_values: int = 1000  # OR values over the whole query
    max_chain_depth: int = 3
    max_includes: int = 10


def split_values(raw: str) -> list[str]:
    """The OR values of a parameter: split on unescaped commas (search.html#escaping). Other
    escapes (``\\|``, ``\\$``, ``\\\\``) stay for the type's own splitting."""
    return split_unescaped(raw, ",")


class SearchParser:
    def __init__(self, definitions: Definitions, limits: SearchLimits | None = None) -> None:
        self.definitions = definitions
        self.limits = limits or SearchLimits()

    def parse(
        self,
        resource_type: str | None,
        params: Sequence[tuple[str, str]],
        *,
        strict: bool = False,
    ) -> SearchQuery:
        """``params`` as (name, value) pairs in request order; repeats are ANDed."""
        result = ResultParams(count=self.limits.default_count)
        clauses: list[Clause] = []
        filters: list[FilterExpr] = []
        unknown: list[str] = []
        budget = self.limits.max_values
        for name, raw in params:
            if parse_result_param(self, resource_type, name, raw, result):
                continue
            if name == FILTER:
                filters.append(parse_filter(self, resource_type, raw))
                budget -= len(clauses_of(filters[-1]))
                continue
            clause = self._clause(resource_type, name, raw, strict)
            if clause is None:
                unknown.append(name)
                continue
            budget -= len(clause.values)
            if budget < 0:
                raise InvalidRequest(
                    f"Too many search values (more than {self.limits.max_values}); "
                    "split the search",
                    code="too-costly",
                    expression=name,
                )
            clauses.append(clause)
        if budget < 0:
            raise InvalidRequest(
                f"Too many search values (more than {self.limits.max_values}); split the search",
                code="too-costly",
                expression=FILTER,
            )
        query = result.query(resource_type, tuple(clauses), tuple(unknown))
        if filters:
            tree = filters[0] if len(filters) == 1 else FilterAnd(tuple(filters))
            query = replace(query, filter=tree)
        return query

    def clause(self, resource_type: str, name: str, raw: str) -> Clause | None:
        """One parameter as a clause (None when ``name`` is not a parameter of the type)."""
        return self._clause(resource_type, name, raw, strict=False)

    # -- one parameter --------------------------------------------------------------------
    def _clause(
        self, resource_type: str | None, name: str, raw: str, strict: bool
    ) -> Clause | None:
        if name in UNSUPPORTED or (resource_type is None and not name.startswith("_")):
            return self._unknown(name, strict, "is not supported")
        if name.startswith("_has:"):
            return self._has_clause(resource_type, name, raw, strict)
        if name == "_list" and resource_type is not None:
            return self._list_clause(resource_type, raw)
        links = name.split(".")
        if len(links) - 1 > self.limits.max_chain_depth:
            raise InvalidRequest(
                f"Chain {name!r} is deeper than {self.limits.max_chain_depth} links",
                code="too-costly",
                expression=name,
            )
        current = resource_type or "Resource"
        chain: list[ChainStep] = []
        for link in links[:-1]:
            step = self._chain_step(current, link, name, strict)
            if step is None:
                return None
            chain.append(step)
            current = step.target_type
        return self._final(current, links[-1], name, raw, tuple(chain), (), strict)

    def _has_clause(
        self, resource_type: str | None, name: str, raw: str, strict: bool
    ) -> Clause | None:
        parts = name.split(":")
        steps: list[HasStep] = []
        while len(parts) >= 4 and parts[0] == "_has":
            has_type, param = parts[1], parts[2]
            if not self.definitions.is_resource_type(has_type):
                raise InvalidRequest(f"{name}: unknown resource type {has_type!r}", expression=name)
            definition = self.definitions.search_parameters(has_type).get(param)
            if definition is None or definition.type != "reference":
                raise InvalidRequest(
                    f"{name}: {has_type} has no reference parameter {param!r}", expression=name
                )
            steps.append(HasStep(has_type, param))
            parts = parts[3:]
        if not steps or not parts or parts[0] == "_has" or not resource_type:
            raise InvalidRequest(
                f"{name!r} is not a valid _has parameter; use _has:Type:reference:param=value",
                expression=name,
            )
        if len(steps) > self.limits.max_chain_depth:
            raise InvalidRequest(
                f"{name!r} nests _has too deeply", code="too-costly", expression=name
            )
        return self._final(
            steps[-1].resource_type, ":".join(parts), name, raw, (), tuple(steps), strict
        )

    def _list_clause(self, resource_type: str, raw: str) -> Clause:
        """``_list=42`` (search.html#list): the resources List/42 names in ``entry.item``, i.e.
        ``_has:List:item:_id=42``. Functional lists (``$current-allergies``) are not kept."""
        ids = split_values(raw)
        if not raw or any(not _LIST_ID.fullmatch(i) for i in ids):
            raise InvalidRequest(
                f"_list={raw!r}: give the id of a List (functional lists such as "
                "$current-allergies are not supported)",
                code="not-supported" if raw.startswith("$") else "value",
                expression="_list",
            )
        values = tuple(TokenQuery(None, i) for i in ids)
        return Clause("_list", "_id", "token", "List", None, values, (), (HasStep("List", "item"),))

    def _chain_step(self, current: str, link: str, name: str, strict: bool) -> ChainStep | None:
        code, _, type_name = link.partition(":")
        definition = self._definition(current, code)
        if definition is None:
            return self._unknown(name, strict, f"has an unknown parameter {code!r} for {current}")
        if definition.type != "reference":
            raise InvalidRequest(
                f"{name}: {current}.{code} is not a reference, so it cannot be chained",
                expression=name,
            )
        targets = definition.target
        if type_name:
            if targets and type_name not in targets:
                raise InvalidRequest(f"{name}: {code} cannot refer to {type_name}", expression=name)
            return ChainStep(code, type_name)
        if len(targets) != 1:
            raise InvalidRequest(
                f"{name}: {code} can refer to several types; name one, e.g. {code}:{targets[0]}"
                if targets
                else f"{name}: {code} has no known target type to chain into",
                expression=name,
            )
        return ChainStep(code, targets[0])

    def _final(
        self,
        resource_type: str,
        link: str,
        name: str,
        raw: str,
        chain: tuple[ChainStep, ...],
        has: tuple[HasStep, ...],
        strict: bool,
    ) -> Clause | None:
        code, _, modifier = link.partition(":")
        definition = self._definition(resource_type, code)
        if definition is None:
            return self._unknown(name, strict, f"is not a search parameter of {resource_type}")
        values = self._values(definition, modifier or None, raw, name)
        return Clause(
            name, code, definition.type, resource_type, modifier or None, values, chain, has
        )

    def _values(
        self, definition: SearchParameter, modifier: str | None, raw: str, name: str
    ) -> tuple[QueryValue, ...]:
        if modifier is not None:
            allowed = MODIFIERS.get(definition.type, frozenset())
            is_type = definition.type == "reference" and self.definitions.is_resource_type(modifier)
            if modifier not in allowed and not is_type:
                raise InvalidRequest(
                    f"{name}: modifier :{modifier} is not supported for {definition.type} "
                    f"parameters (supported: {', '.join(sorted(allowed)) or 'none'})",
                    code="not-supported",
                    expression=name,
                )
        if raw == "":
            raise InvalidRequest(f"{name} has no value", code="value", expression=name)
        parse = values_parse.parser_for(self.definitions, definition, modifier)
        try:
            return tuple(parse(value) for value in split_values(raw))
        except ValueError as exc:
            raise InvalidRequest(f"{name}: {exc}", code="value", expression=name) from None

    def _definition(self, resource_type: str, code: str) -> SearchParameter | None:
        return self.definitions.search_parameters(resource_type).get(code)

    @staticmethod
    def _unknown(name: str, strict: bool, why: str) -> None:
        if strict:
            raise InvalidRequest(
                f"Search parameter {name!r} {why} (Prefer: handling=strict)",
                code="not-supported",
                expression=name,
            )
