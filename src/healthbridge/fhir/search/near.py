"""The ``near`` parameter of Location: https://hl7.org/fhir/R4/location.html#positional.

``near=[latitude]|[longitude]|[distance]|[units]`` finds locations whose ``position`` lies
within ``distance`` of the point. Units are UCUM length codes (``km`` when omitted, also ``m``,
``[mi_i]``...); without a distance :data:`DEFAULT_DISTANCE_KM` applies, as the spec leaves it to
the server. Distance is great-circle (haversine on a sphere of the Earth's mean radius); the
SQL backends compute the same formula, so every backend agrees.
"""

from __future__ import annotations

import math

from healthbridge.fhir.search.escaping import split_unescaped
from healthbridge.fhir.search.query import NearQuery
from healthbridge.fhir.ucum import conversion

EARTH_RADIUS_KM = 6371.0088
DEFAULT_DISTANCE_KM = 10.0
MAX_DISTANCE_KM = 20_100.0  # half the circumference: everything


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


def parse_near(raw: str) -> NearQuery:
    """A ``near`` value; ValueError when malformed."""
    parts = split_unescaped(raw, "|")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"{raw!r}: near takes latitude|longitude[|distance[|units]]")
    latitude, longitude = _number(parts[0], "latitude"), _number(parts[1], "longitude")
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise ValueError(f"{raw!r}: latitude must be within ±90 and longitude within ±180")
    distance = DEFAULT_DISTANCE_KM
    if len(parts) >= 3 and parts[2]:
        distance = _number(parts[2], "distance")
        units = parts[3] if len(parts) == 4 and parts[3] else "km"
        found = conversion(units)
        if found is None or found.canonical_code != "meter" or found.offset:
            raise ValueError(f"{units!r} is not a UCUM length unit (use km, m, [mi_i])")
        distance = found(distance) / 1000
    if distance < 0:
        raise ValueError(f"{raw!r}: the distance must not be negative")
    return NearQuery(latitude, longitude, min(distance, MAX_DISTANCE_KM))


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(query: NearQuery) -> tuple[float, float, float, float]:
    """(min lat, max lat, min lon, max lon) containing every point within the distance (for an
    index range scan before the exact test); longitudes unbounded near the poles."""
    dlat = math.degrees(query.distance_km / EARTH_RADIUS_KM)
    low, high = query.latitude - dlat, query.latitude + dlat
    if low <= -90 or high >= 90:
        return max(low, -90.0), min(high, 90.0), -180.0, 180.0
    dlon = math.degrees(
        query.distance_km / (EARTH_RADIUS_KM * math.cos(math.radians(max(abs(low), abs(high)))))
    )
    if dlon >= 180:
        return low, high, -180.0, 180.0
    return low, high, query.longitude - dlon, query.longitude + dlon
