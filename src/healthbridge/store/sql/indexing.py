"""Index rows of one resource, laid out for the search index tables (:mod:`.tables`).

https://hl7.org/fhir/R4/search.html: :class:`~healthbridge.fhir.search.Indexer` extracts the
typed values of every search parameter; this module turns them into table rows keyed by
``pkey``/``rkey`` (:mod:`.keys`). Derived rows sit beside a parameter under a facet of its key:

* a token's display text (``Coding.display``, ``CodeableConcept.text``, ``Identifier.type.text``)
  is a ``search_string`` row under facet ``text``, so ``:text`` is a string search;
* an Identifier with a type is also a ``search_token`` row under facet ``of-type`` with
  ``system`` = the type's system and ``code`` = ``"{type code}|{identifier value}"``;
* a ``Reference.identifier`` is a ``search_token`` row under facet ``identifier``.

``_id`` and ``_lastUpdated`` are not stored here: they are columns of ``resource``.
Numbers and quantities are stored as double precision on both databases so that comparisons
behave the same on each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from healthbridge.fhir.search import (
    CompositeValue,
    DateValue,
    Indexer,
    IndexRow,
    IndexValue,
    NearValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from healthbridge.fhir.search.strings import normalize
from healthbridge.fhir.search.text import texts
from healthbridge.fhir.types import Resource
from healthbridge.fhir.ucum import UCUM, canonical
from healthbridge.store.keys import param_key, resource_key
from healthbridge.store.sql.tables import SEARCH_TABLES

Row = tuple[Any, ...]
TableRows = dict[str, list[Row]]
"""Rows per index table name, each in the table's column order (pkey, rkey, values...)."""

UNINDEXED = frozenset({"_id", "_lastUpdated"})
"""Parameters answered from the ``resource`` table's own columns."""
TABLE_NAMES = tuple(table.name for table in SEARCH_TABLES)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def reference_text(value: ReferenceValue) -> str | None:
    """A reference as one string (a composite's first component): ``Type/id`` or the URL."""
    if value.target_type is not None and value.target_id is not None:
        return f"{value.target_type}/{value.target_id}"
    return value.url


class _Rows:
    """Collects the rows of one resource, without duplicates."""

    def __init__(self, resource_type: str, rkey: int) -> None:
        self.resource_type = resource_type
        self.rkey = rkey
        self.tables: dict[str, dict[Row, None]] = {}

    def add(self, table: str, code: str, values: Row, facet: str = "") -> None:
        pkey = param_key(self.resource_type, code, facet)
        self.tables.setdefault(table, {})[(pkey, self.rkey, *values)] = None

    def result(self) -> TableRows:
        return {table: list(rows) for table, rows in self.tables.items()}


def _token(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, TokenValue)
    rows.add("search_token", code, (value.code, value.system))
    if value.text:
        rows.add("search_string", code, (normalize(value.text), value.text), "text")
    if value.type_system is not None or value.type_code is not None:
        typed = f"{value.type_code or ''}|{value.code or ''}"
        rows.add("search_token", code, (typed, value.type_system), "of-type")


def _string(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, StringValue)
    rows.add("search_string", code, (value.normalized, value.exact))


def _date(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, DateValue)
    rows.add("search_date", code, (value.start, value.end))


def _number(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, NumberValue)
    rows.add("search_number", code, (float(value.value),))


def _quantity(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, QuantityValue)
    numbers = (_float(value.value), _float(value.low), _float(value.high))
    base = None
    if value.system == UCUM and value.value is not None:
        base = canonical(value.value, value.code)
    in_base = (None, None) if base is None else (base[1], base[0])
    rows.add("search_quantity", code, (*numbers, value.system, value.code, value.unit, *in_base))


def _reference(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, ReferenceValue)
    if value.identifier_value is not None:
        identifier = (value.identifier_value, value.identifier_system)
        rows.add("search_token", code, identifier, "identifier")
        return
    target = None
    if value.target_type is not None and value.target_id is not None:
        target = resource_key(value.target_type, value.target_id)
    if target is not None or value.url is not None:
        rows.add("search_reference", code, (target, value.url, value.version))


def _uri(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, UriValue)
    rows.add("search_uri", code, (value.uri,))


def _near(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, NearValue)
    rows.add("search_near", code, (float(value.latitude), float(value.longitude)))


def composite_columns(value: CompositeValue) -> Row | None:
    """The ``search_composite`` value columns of one combination (None: not storable)."""
    first, second, *rest = (*value.components, None)[:3]
    if isinstance(first, TokenValue):
        a: Row = (first.system, first.code)
    elif isinstance(first, ReferenceValue):
        a = (None, reference_text(first))
    else:
        return None
    b: list[Any] = [None] * 9  # b_system b_code b_unit b_value b_lo b_hi b_start b_end b_string
    if isinstance(second, TokenValue):
        b[0:2] = [second.system, second.code]
    elif isinstance(second, QuantityValue):
        b[0:3] = [second.system, second.code, second.unit]
        b[3:6] = [_float(second.value), _float(second.low), _float(second.high)]
    elif isinstance(second, NumberValue):
        b[3] = float(second.value)
    elif isinstance(second, DateValue):
        b[6:8] = [second.start, second.end]
    elif isinstance(second, StringValue):
        b[8] = second.normalized
    else:
        return None
    third = rest[0] if rest else None
    c = float(third.value) if isinstance(third, NumberValue) else None
    return (*a, *b, c)


def _composite(rows: _Rows, code: str, value: IndexValue) -> None:
    assert isinstance(value, CompositeValue)
    columns = composite_columns(value)
    if columns is not None:
        rows.add("search_composite", code, columns)


_WRITERS: dict[type, Callable[[_Rows, str, IndexValue], None]] = {
    TokenValue: _token,
    StringValue: _string,
    DateValue: _date,
    NumberValue: _number,
    QuantityValue: _quantity,
    ReferenceValue: _reference,
    UriValue: _uri,
    NearValue: _near,
    CompositeValue: _composite,
}


def table_rows(resource_type: str, id: str, index_rows: list[IndexRow]) -> TableRows:
    """The index table rows of resource ``resource_type/id`` from its extracted values."""
    rows = _Rows(resource_type, resource_key(resource_type, id))
    for row in index_rows:
        if row.param not in UNINDEXED:
            _WRITERS[type(row.value)](rows, row.param, row.value)
    return rows.result()


@dataclass(frozen=True, slots=True)
class VersionIndex:
    """Everything indexed about one version: rows per index table, and the words of its
    narrative and content for the full-text index (None for a delete)."""

    tables: TableRows = field(default_factory=dict)
    text: tuple[str, str] | None = None


class IndexRows:
    """``rows(type, id, resource)``: the index of one resource version."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer

    def rows(self, resource_type: str, id: str, resource: Resource | None) -> VersionIndex:
        if resource is None:  # a delete has no index rows
            return VersionIndex()
        if resource.get("resourceType") != resource_type:
            resource = {**resource, "resourceType": resource_type}
        tables = table_rows(resource_type, id, self.indexer.index_rows(resource))
        words = texts(resource)
        return VersionIndex(tables, (words["narrative"], words["content"]))
