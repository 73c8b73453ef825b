"""FHIR date/time parsing for parameters: https://hl7.org/fhir/R4/datatypes.html#dateTime.

A partial dateTime (``2020``, ``2020-03``, ``2020-03-04``) denotes a period; :func:`parse_period`
returns its inclusive start and exclusive end in UTC. Times without a timezone are taken as UTC
(the spec leaves the zone to the server when it is missing).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

_DATETIME = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d{1,9})?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def parse_period(value: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a FHIR date/dateTime/instant string, as UTC datetimes (from
    :func:`period_micros`, the one parser); ValueError when invalid."""
    start, end = period_micros(value)
    return from_micros(start), from_micros(end)


def parse_instant(value: str) -> datetime:
    """The start of the period a (possibly partial) dateTime denotes."""
    return parse_period(value)[0]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Exact integer microseconds since the Unix epoch (no float rounding); naive means UTC.

    The one conversion used for stored instants and for date search values, so that
    ``_lastUpdated`` and ``_since`` compare like with like.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


_EPOCH_DAY = date(1970, 1, 1).toordinal()
_SECOND = 1_000_000
_DAY = 86_400 * _SECOND


def _day(year: int, month: int, day: int) -> int:
    """Microseconds from the epoch to midnight UTC of that day (ValueError if no such day)."""
    return (date(year, month, day).toordinal() - _EPOCH_DAY) * _DAY


@lru_cache(maxsize=1 << 14)
def period_micros(value: str) -> tuple[int, int]:
    """:func:`parse_period` as exact microseconds since the epoch, ``[start, end)``, computed
    with integers (indexing parses every date of every resource; the same instants recur, so
    they are cached). ValueError when invalid."""
    match = _DATETIME.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a FHIR date or dateTime")
    y, m, d, hour, minute, sec, frac, tz = match.groups()
    year = int(y)
    if m is None:
        return _day(year, 1, 1), _day(year + 1, 1, 1)
    month = int(m)
    if d is None:
        following = (year + month // 12, month % 12 + 1)
        return _day(year, month, 1), _day(*following, 1)
    midnight = _day(year, month, int(d))
    if hour is None:
        return midnight, midnight + _DAY
    hours, minutes, seconds = int(hour), int(minute), int(sec or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"{value!r} is not a valid time of day")
    offset = 0
    if tz and tz != "Z":
        tz_hours, tz_minutes = int(tz[1:3]), int(tz[4:6])
        if tz_hours > 23 or tz_minutes > 59:
            raise ValueError(f"{value!r} has an invalid timezone")
        offset = (1 if tz[0] == "+" else -1) * (tz_hours * 3600 + tz_minutes * 60)
    micro = int((frac or ".0")[1:7].ljust(6, "0"))
    start = midnight + (hours * 3600 + minutes * 60 + seconds - offset) * _SECOND + micro
    if sec is None:
        return start, start + 60 * _SECOND
    if frac is None:
        return start, start + _SECOND
    return start, start + 1
