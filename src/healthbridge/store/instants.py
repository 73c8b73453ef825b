"""Server timestamps for ``meta.lastUpdated``: https://hl7.org/fhir/R4/datatypes.html#instant.

Backends take the time from an injectable clock and keep microsecond precision in UTC. Stored
instants are integer microseconds since the Unix epoch, so that ``_since`` and ``_at`` comparisons
(https://hl7.org/fhir/R4/http.html#history) are exact and identical on every backend.
``last_updated`` is strictly increasing per resource: when the clock did not move (or went back),
the next version is stamped one microsecond after the previous one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from healthbridge.fhir.datetimes import EPOCH, from_micros, to_micros

__all__ = ["EPOCH", "Clock", "from_micros", "next_instant", "system_clock", "to_micros", "utc"]

Clock = Callable[[], datetime]
"""Returns the current time; timezone-aware (naive values are taken as UTC)."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive value is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def next_instant(clock: Clock, previous: datetime | None) -> datetime:
    """The clock's time, or one microsecond after ``previous`` if that is not later."""
    now = utc(clock())
    if previous is not None and now <= previous:
        return previous + timedelta(microseconds=1)
    return now
