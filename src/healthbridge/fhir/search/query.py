"""The search query model (intermediate representation): https://hl7.org/fhir/R4/search.html.

A parsed search is a :class:`SearchQuery`: clauses that are ANDed, each holding values that are
ORed (search.html#combining), plus the result parameters (search.html#return). Everything is
frozen so that a query can be cached, compared and logged. Values are already typed: dates are
``[start, end)`` microsecond ranges, numbers carry their implicit precision range, tokens their
system and code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeAlias

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True, slots=True)
class TokenQuery:
    """``[system]|[code]``: ``system`` None = any system; ``""`` = no system; ``code`` None =
    any code in the system (search.html#token)."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class StringQuery:
    value: str  # as given (for :exact)
    normalized: str  # case-folded, accents removed (default and :contains)


@dataclass(frozen=True, slots=True)
class DateQuery:
    prefix: str
    start: int  # inclusive, microseconds UTC
    end: int  # exclusive


@dataclass(frozen=True, slots=True)
class NumberQuery:
    prefix: str
    value: Decimal
    low: Decimal  # implicit precision range [low, high) (search.html#number)
    high: Decimal


@dataclass(frozen=True, slots=True)
class QuantityQuery:
    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class ReferenceQuery:
    """``Type/id``, a bare ``id`` (type from the modifier or the parameter's only target), or an
    absolute/canonical ``url`` (search.html#reference)."""

    resource_type: str | None
    id: str | None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class UriQuery:
    value: str


@dataclass(frozen=True, slots=True)
class NearQuery:
    """``near=lat|lon|distance|units`` (https://hl7.org/fhir/R4/location.html#positional):
    within ``distance_km`` of the point, by great-circle (haversine) distance."""

    latitude: float
    longitude: float
    distance_km: float


@dataclass(frozen=True, slots=True)
class MissingQuery:
    missing: bool


@dataclass(frozen=True, slots=True)
class CompositeQuery:
    parts: tuple[QueryValue, ...]


QueryValue: TypeAlias = (
    TokenQuery
    | StringQuery
    | DateQuery
    | NumberQuery
    | QuantityQuery
    | ReferenceQuery
    | UriQuery
    | NearQuery
    | MissingQuery
    | CompositeQuery
)


@dataclass(frozen=True, slots=True)
class ChainStep:
    """One link of a chain ``subject:Patient.name``: follow ``param`` to ``target_type``."""

    param: str
    target_type: str


@dataclass(frozen=True, slots=True)
class HasStep:
    """One ``_has:Observation:patient`` link: resources of ``resource_type`` whose ``param``
    refers back to the resource searched (search.html#has)."""

    resource_type: str
    param: str


@dataclass(frozen=True, slots=True)
class Clause:
    """One parameter occurrence: values ORed; ``chain``/``has`` lead to the resource that
    ``param`` (of ``param_type``) is finally evaluated on (``resource_type``)."""

    name: str  # the parameter as written, for errors and the self link
    param: str
    param_type: str
    resource_type: str
    modifier: str | None
    values: tuple[QueryValue, ...]
    chain: tuple[ChainStep, ...] = ()
    has: tuple[HasStep, ...] = ()


@dataclass(frozen=True, slots=True)
class FilterAnd:
    """``_filter`` (https://hl7.org/fhir/R4/search_filter.html): all of ``items``."""

    items: tuple[FilterExpr, ...]


@dataclass(frozen=True, slots=True)
class FilterOr:
    items: tuple[FilterExpr, ...]


@dataclass(frozen=True, slots=True)
class FilterNot:
    item: FilterExpr


FilterExpr: TypeAlias = FilterAnd | FilterOr | FilterNot | Clause
"""A ``_filter`` tree; leaves are ordinary clauses (string clauses may carry the internal
modifiers ``equals`` and ``ends-with``)."""


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str
    param_type: str
    descending: bool


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Type:param[:target]`` / ``_revinclude`` (search.html#include); ``param`` None
    means ``*``."""

    source_type: str
    param: str | None
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass(frozen=True, slots=True)
class SearchQuery:
    resource_type: str | None  # None: system-level search
    clauses: tuple[Clause, ...]
    count: int
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    types: tuple[str, ...] = ()  # _type, for system-level search
    compartment: tuple[str, str] | None = None  # (compartment type, id): Patient/123/Observation
    filter: FilterExpr | None = None  # _filter, ANDed with the clauses
    within: tuple[str, frozenset[str]] | None = None
    """(compartment type, ids): only resources in the compartment of at least one of the ids,
    ANDed with everything else (``compartment`` included); no ids, no results. Set by access
    control (a clinician's patients), never parsed from a URL. It narrows the result set
    without changing its order, so paging cursors do not depend on it."""
    unknown: tuple[str, ...] = field(default=())  # ignored parameter names (not in self link)
