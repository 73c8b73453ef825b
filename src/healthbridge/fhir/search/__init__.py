"""FHIR search, the pure half: https://hl7.org/fhir/R4/search.html.

``Indexer(definitions).index_rows(resource)`` extracts the typed index values of every search
parameter of a resource (see :mod:`healthbridge.fhir.search.values` for their shapes).
"""

from __future__ import annotations

from healthbridge.fhir.search.fhirpath import Accessor, compile_expression
from healthbridge.fhir.search.index import CompiledParameter, Indexer, IndexRow
from healthbridge.fhir.search.values import (
    DATE_MAX,
    DATE_MIN,
    CompositeValue,
    DateValue,
    IndexValue,
    NearValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "Accessor",
    "CompiledParameter",
    "CompositeValue",
    "DateValue",
    "IndexRow",
    "IndexValue",
    "Indexer",
    "NearValue",
    "NumberValue",
    "QuantityValue",
    "ReferenceValue",
    "StringValue",
    "TokenValue",
    "UriValue",
    "compile_expression",
]
