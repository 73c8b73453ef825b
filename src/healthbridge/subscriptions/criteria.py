"""The two criteria languages of subscriptions, compiled once and run on one resource version.

* Search criteria (https://hl7.org/fhir/R4/search.html): a topic's
  ``queryCriteria.previous``/``current``
  (https://hl7.org/fhir/R5/subscriptiontopic-definitions.html#SubscriptionTopic.resourceTrigger.queryCriteria),
  a Subscription's filters (backport ``backport-filter-criteria``) and classic R4 ``criteria``.
  They are parsed by the project's search parser and matched by the same in-memory matcher the
  memory repository uses (:func:`healthbridge.fhir.search.match.matches`), on index rows from the
  same :class:`~healthbridge.fhir.search.Indexer`; so a subscription agrees with search. Only
  what can be decided from the one resource is accepted: no chains, ``_has``, ``_filter``,
  ``_text``/``_content``, terminology modifiers (``:in``, ``:above`` ...) nor result parameters.
* FHIRPath criteria (https://hl7.org/fhir/R5/subscriptiontopic-definitions.html#SubscriptionTopic.resourceTrigger.fhirPathCriteria):
  parsed once by fhirpathpy, run with ``%previous`` and ``%current`` bound to the two versions
  (an absent version is the empty collection) and the focus being the current version (the
  previous one on delete). The trigger passes when the result is the single value ``true``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

import fhirpathpy
from fhirpathpy.models import models

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.patch.located import parse_path
from healthbridge.fhir.search.match import Rows, matches
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import Clause
from healthbridge.fhir.search.text import TEXT_PARAMS
from healthbridge.fhir.types import Resource

#: Search parameters that are not about the one resource (result parameters, _filter, _list...).
NOT_PER_RESOURCE: Final = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_type",
        "_format",
        "_pretty",
        "_cursor",
        "_filter",
        "_list",
        "_query",
        "_contained",
        "_containedType",
        *TEXT_PARAMS,
    }
)
TERMINOLOGY_MODIFIERS: Final = frozenset({"above", "below", "in", "not-in"})

_MODEL: Final = models["r4"]
# fhirpathpy is untyped: its entry points, typed once here.
_parse_fhirpath: Callable[[str], Any] = fhirpathpy.parse  # type: ignore[attr-defined]
_apply: Callable[..., Any] = fhirpathpy.apply_parsed_path


@dataclass(frozen=True, slots=True)
class SearchCriteria:
    """A compiled search over one resource type: its clauses are ANDed."""

    resource_type: str
    clauses: tuple[Clause, ...]
    text: str

    def matches(self, rows: Rows) -> bool:
        return matches(self.clauses, rows)


@dataclass(frozen=True, slots=True)
class FhirPathCriteria:
    expression: str
    tree: Any

    def passes(self, previous: Resource | None, current: Resource | None) -> bool:
        """True when the expression yields exactly ``true`` for this change."""
        focus = current if current is not None else previous
        env = {"previous": previous, "current": current}
        try:
            result = _apply(focus, self.tree, env, _MODEL, {})
        except Exception:
            return False  # a runtime error (e.g. a type mismatch) does not trigger
        return isinstance(result, list) and result == [True]


def compile_fhirpath(expression: str, path: str) -> FhirPathCriteria:
    """Parse a FHIRPath trigger once; InvalidRequest at ``path`` when it does not parse."""
    try:
        parse_path(expression)  # strict: fhirpathpy's own parse recovers from syntax errors
        tree = _parse_fhirpath(expression)
    except Exception:
        raise InvalidRequest(
            f"{path}: {expression!r} is not a valid FHIRPath expression", expression=path
        ) from None
    return FhirPathCriteria(expression, tree)


def split_query(text: str, resource_type: str | None) -> tuple[str | None, list[tuple[str, str]]]:
    """``Type?a=1&b=2`` or ``a=1&b=2`` as (the type if given, the name/value pairs)."""
    head, question, query = text.partition("?")
    if not question:
        return resource_type, parse_qsl(text, keep_blank_values=True)
    return head, parse_qsl(query, keep_blank_values=True)


def compile_search(
    definitions: Definitions, parser: SearchParser, resource_type: str, text: str, path: str
) -> SearchCriteria:
    """Compile ``text`` (``status=finished`` or ``Encounter?status=finished``) for
    ``resource_type``; InvalidRequest at ``path`` for what a per-resource match cannot do."""
    named, pairs = split_query(text, resource_type)
    if named != resource_type:
        raise InvalidRequest(
            f"{path}: {text!r} searches {named}, but the criteria are about {resource_type}",
            expression=path,
        )
    return compile_pairs(definitions, parser, resource_type, pairs, text, path)


def compile_pairs(
    definitions: Definitions,
    parser: SearchParser,
    resource_type: str,
    pairs: list[tuple[str, str]],
    text: str,
    path: str,
) -> SearchCriteria:
    """Compile search parameters given as (name, value) pairs (``text`` is for messages)."""
    if not pairs:
        raise InvalidRequest(f"{path}: {text!r} has no search parameter", expression=path)
    for name, _ in pairs:
        base = name.partition(":")[0].partition(".")[0]
        if base in NOT_PER_RESOURCE or base.startswith("_has"):
            raise _unsupported(path, f"{name} cannot be decided on one resource")
    try:
        query = parser.parse(resource_type, pairs, strict=True)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{path}: {exc}", code=exc.issues[0].code, expression=path) from None
    for clause in query.clauses:
        _check_clause(definitions, clause, path)
    return SearchCriteria(resource_type, query.clauses, text)


def _check_clause(definitions: Definitions, clause: Clause, path: str) -> None:
    if clause.chain or clause.has:
        raise _unsupported(
            path, f"{clause.name}: chained searches cannot be decided on one resource"
        )
    if clause.param_type == "token" and clause.modifier in TERMINOLOGY_MODIFIERS:
        raise _unsupported(path, f"{clause.name}: :{clause.modifier} needs a terminology service")
    definition = definitions.search_parameters(clause.resource_type).get(clause.param)
    special = definition is not None and definition.type == "special" and clause.param != "near"
    if definition is None or not definition.expression or special:
        raise _unsupported(path, f"{clause.name} is not supported by this server")


def _unsupported(path: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {text}", code="not-supported", expression=path)
