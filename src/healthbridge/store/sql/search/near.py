"""``near`` in SQL: https://hl7.org/fhir/R4/location.html#positional.

A Location matches when its ``position`` lies within the distance of the point, by the same
great-circle (haversine) distance as :mod:`healthbridge.fhir.search.near`. The (pkey, latitude,
longitude) index narrows the rows to a bounding box first; the exact test avoids ``asin`` and
``sqrt`` (whose spelling differs between the databases) by comparing the haversine term with
``sin(d / 2R)²``, which is equivalent because both are increasing.
"""

from __future__ import annotations

import math

from sqlalchemy import ColumnElement, FromClause, and_, false, func, or_

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.near import EARTH_RADIUS_KM, bounding_box
from healthbridge.fhir.search.query import Clause, NearQuery
from healthbridge.store.sql.search.conditions import RANK_RANGE, Probe
from healthbridge.store.sql.search.scope import Bool, Scope, double
from healthbridge.store.sql.tables import search_near

_HALF_RADIANS = math.pi / 360  # degrees to radians, halved


def _sin2(angle: ColumnElement[float]) -> ColumnElement[float]:
    sine = func.sin(angle)
    return sine * sine


def within(lat: ColumnElement[float], lon: ColumnElement[float], query: NearQuery) -> Bool:
    """The point (``lat``, ``lon``) lies within the query's distance of its point."""
    reach = query.distance_km / (2 * EARTH_RADIUS_KM)
    if reach >= math.pi / 2:  # half the Earth's circumference or more: everywhere
        return lat.is_not(None)
    low_lat, high_lat, low_lon, high_lon = bounding_box(query)
    tests = [lat >= double(low_lat), lat <= double(high_lat)]
    if low_lon >= -180 and high_lon <= 180:  # a box across the antimeridian is not bounded
        tests += [lon >= double(low_lon), lon <= double(high_lon)]
    cos_query = math.cos(math.radians(query.latitude))
    haversine = _sin2((lat - double(query.latitude)) * double(_HALF_RADIANS)) + double(
        cos_query
    ) * func.cos(lat * double(2 * _HALF_RADIANS)) * _sin2(
        (lon - double(query.longitude)) * double(_HALF_RADIANS)
    )
    tests.append(haversine <= double(math.sin(reach) ** 2))
    return and_(*tests)


def near_condition(scope: Scope, clause: Clause) -> Probe:
    values = [v for v in clause.values if isinstance(v, NearQuery)]
    if len(values) != len(clause.values):
        raise InvalidRequest(f"{clause.name}: expected latitude|longitude", expression=clause.name)

    def test(t: FromClause) -> Bool:
        return or_(false(), *(within(t.c.latitude, t.c.longitude, q) for q in values))

    pkeys = scope.pkeys(clause.resource_type, clause.param)
    return Probe(scope, search_near, pkeys, test, RANK_RANGE)
