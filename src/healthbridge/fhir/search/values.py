"""The index values of each search-parameter type: https://hl7.org/fhir/R4/search.html#ptypes.

Each value is a small frozen dataclass that maps one-to-one onto a row of the index table of its
type. Ranges are half-open ``[low, high)``: dates in integer microseconds since the Unix epoch
(UTC), numbers and quantities as the implicit precision range of the stored decimal
(https://hl7.org/fhir/R4/search.html#number).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TypeAlias

DATE_MIN = -(2**63)
"""Sentinel for an unbounded start (an open Period start)."""
DATE_MAX = 2**63 - 1
"""Sentinel for an unbounded end (an open or ongoing Period)."""


@dataclass(frozen=True, slots=True)
class TokenValue:
    """https://hl7.org/fhir/R4/search.html#token: ``system|code`` plus the ``:text`` text.

    For an Identifier, ``type_system``/``type_code`` carry one ``Identifier.type`` coding for
    ``:of-type`` (one row per type coding).
    """

    system: str | None
    code: str | None
    text: str | None = None
    type_system: str | None = None
    type_code: str | None = None


@dataclass(frozen=True, slots=True)
class StringValue:
    """https://hl7.org/fhir/R4/search.html#string: ``normalized`` is case-folded with accents
    removed (for the default starts-with and ``:contains``), ``exact`` as stored (``:exact``)."""

    normalized: str
    exact: str


@dataclass(frozen=True, slots=True)
class DateValue:
    """https://hl7.org/fhir/R4/search.html#date: ``[start, end)`` in UTC microseconds."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class NumberValue:
    """https://hl7.org/fhir/R4/search.html#number: the value and its precision range
    ``[low, high)`` (``100`` gives [99.5, 100.5))."""

    value: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """https://hl7.org/fhir/R4/search.html#quantity. For a Range element ``value`` is None and
    ``[low, high]`` are its bounds (None when open)."""

    value: Decimal | None
    low: Decimal | None
    high: Decimal | None
    system: str | None
    code: str | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """https://hl7.org/fhir/R4/search.html#reference: a local ``Type/id`` (``target_type``,
    ``target_id``, ``version``), an absolute or ``urn:`` ``url``, a canonical ``url|version``,
    or only ``identifier_system``/``identifier_value`` (for ``:identifier``)."""

    target_type: str | None = None
    target_id: str | None = None
    url: str | None = None
    version: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    """https://hl7.org/fhir/R4/search.html#uri."""

    uri: str


@dataclass(frozen=True, slots=True)
class NearValue:
    """https://hl7.org/fhir/R4/location.html#positional: Location.position for ``near``."""

    latitude: Decimal
    longitude: Decimal


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """https://hl7.org/fhir/R4/search.html#composite: one value per component, in order."""

    components: tuple[IndexValue, ...]


IndexValue: TypeAlias = (
    TokenValue
    | StringValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | NearValue
    | CompositeValue
)
