"""What a search statement is built against: https://hl7.org/fhir/R4/search.html.

A :class:`Scope` carries the definitions, the dialect and the resource types of one search, and
turns parameter codes into the 64-bit keys of the index tables (:mod:`healthbridge.store.keys`).
Values are always bound (:func:`bound`), never written into the SQL text. Key lists of any
length are one parameter (:func:`~healthbridge.store.sql.dialects.among_keys`) once they are
longer than a few, so that statement shapes stay few and compiled text can be reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Double, Text, false, literal
from sqlalchemy.types import TypeEngine

from healthbridge.fhir.definitions import Definitions, SearchParameter
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.store.keys import param_key, resource_key
from healthbridge.store.sql.dialects import Dialect, among_keys

Bool = ColumnElement[bool]
SHORT_LIST = 8
"""Up to this many keys are an ``IN (...)`` list of parameters; more are one array parameter."""
_TEXT = Text()
_BIGINT = BigInteger()
_DOUBLE: Double[float] = Double()


def bound(value: Any, kind: TypeEngine[Any]) -> ColumnElement[Any]:
    """``value`` as a bind parameter of SQL type ``kind``."""
    return literal(value, kind)


def text(value: str) -> ColumnElement[str]:
    return bound(value, _TEXT)


def bigint(value: int) -> ColumnElement[int]:
    return bound(value, _BIGINT)


def double(value: float | Decimal) -> ColumnElement[float]:
    return bound(float(value), _DOUBLE)


@dataclass(frozen=True)
class Scope:
    """One search: ``resource_type`` is the type searched (``Resource`` at system level) and
    ``types`` the resource types it covers; a clause on ``Resource`` applies to each of them."""

    definitions: Definitions
    dialect: Dialect
    resource_type: str
    types: tuple[str, ...]

    def types_of(self, resource_type: str) -> tuple[str, ...]:
        return self.types if resource_type == "Resource" else (resource_type,)

    def pkeys(self, resource_type: str, code: str, facet: str = "") -> tuple[int, ...]:
        return tuple(param_key(t, code, facet) for t in self.types_of(resource_type))

    def parameter(self, resource_type: str, code: str, name: str) -> SearchParameter:
        types = self.types_of(resource_type)
        definition = self.definitions.search_parameters(types[0] if types else "Resource").get(code)
        if definition is None:
            raise InvalidRequest(f"{name}: unknown search parameter {code!r}", expression=name)
        return definition

    def reference_targets(self, definition: SearchParameter) -> tuple[str, ...]:
        """The types a reference parameter may point at (every type when it does not say)."""
        return definition.target or tuple(sorted(self.definitions.resource_types))

    def among(self, column: ColumnElement[int], keys: Sequence[int]) -> Bool:
        """``column`` is one of ``keys``."""
        unique = tuple(dict.fromkeys(keys))
        if not unique:
            return false()
        if len(unique) == 1:
            return column == bigint(unique[0])
        if len(unique) <= SHORT_LIST:
            return column.in_([bigint(k) for k in unique])
        return among_keys(self.dialect, column, unique)

    def resource_keys(self, types: Sequence[str], id: str) -> tuple[int, ...]:
        return tuple(resource_key(t, id) for t in types)
