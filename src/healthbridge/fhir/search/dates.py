"""Date index values: https://hl7.org/fhir/R4/search.html#date.

Every date is a range ``[start, end)`` in integer microseconds UTC: a partial date covers its
whole period (``2020`` is the year 2020), a dateTime to the second covers that second; a Period
covers start to end with an open end unbounded (https://hl7.org/fhir/R4/datatypes.html#Period);
a Timing each of its ``event`` dateTimes.
"""

from __future__ import annotations

from typing import Any

from healthbridge.fhir.datetimes import period_micros
from healthbridge.fhir.search.values import DATE_MAX, DATE_MIN, DateValue


def _bounds(text: Any) -> tuple[int, int] | None:
    if not isinstance(text, str):
        return None
    try:
        return period_micros(text)
    except ValueError:
        return None


def period_value(period: dict[str, Any]) -> DateValue | None:
    start, end = _bounds(period.get("start")), _bounds(period.get("end"))
    if start is None and end is None:
        return None
    return DateValue(start[0] if start else DATE_MIN, end[1] if end else DATE_MAX)


def date_values(node: Any, hint: str | None = None) -> list[DateValue]:
    """Date rows of one selected element: date/dateTime/instant, Period or Timing."""
    if isinstance(node, str):
        bounds = _bounds(node)
        return [DateValue(*bounds)] if bounds else []
    if not isinstance(node, dict):
        return []
    if "start" in node or "end" in node:
        value = period_value(node)
        return [value] if value else []
    out: list[DateValue] = []
    for event in node.get("event", ()):
        bounds = _bounds(event)
        if bounds:
            out.append(DateValue(*bounds))
    return out
