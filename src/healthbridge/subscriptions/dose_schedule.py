"""When the doses of a MedicationRequest are due: its ``dosageInstruction.timing`` expanded.

R4 Timing: https://hl7.org/fhir/R4/datatypes.html#Timing; MedicationRequest:
https://hl7.org/fhir/R4/medicationrequest.html. Pure functions over dicts, used by the missed-dose
scheduler (:mod:`.missed_doses`). What makes a dose:

* ``timing.event``: each dateTime with a time of day is a due instant (date-only events have no
  due time and are left out);
* ``timing.repeat`` with ``frequency`` (default 1) per ``period`` ``periodUnit`` (``min``,
  ``h``, ``d``, ``wk``): doses evenly spaced from the schedule's start (whole-day steps keep the
  local time of day across daylight-saving changes); with ``timeOfDay``, those local times on
  every ``period``-th day (``d``) or week (``wk``) from the start's day; ``dayOfWeek`` keeps the
  days it names; ``count`` ends the schedule after that many doses;
* the start is ``repeat.boundsPeriod.start``, else the request's ``authoredOn``: a repeat
  schedule without either has no doses; ``boundsPeriod.end`` and ``boundsDuration`` end it;
* no dose is due before ``authoredOn`` (the order did not exist) nor outside
  ``dispenseRequest.validityPeriod``;
* left out: ``asNeeded`` dosages (PRN: nothing is scheduled), ``doNotPerform`` requests, a
  ``repeat`` with ``when`` but no ``timeOfDay`` (meal-relative times are not clock times),
  ``periodUnit`` ``s``, ``mo`` and ``a``, doses less than a minute apart (a continuous
  administration), ``frequencyMax``/``periodMax`` (the lower values are used) and
  ``timing.code`` alone (BID, TID ...: no clock times).

Dates without a time of day and ``timeOfDay`` are local times in the server's zone
(``missed_dose_timezone``); instants are returned in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from healthbridge.fhir.datetimes import parse_period
from healthbridge.fhir.types import Resource

UNITS: Final = {"min": 60, "h": 3600, "d": 86400, "wk": 7 * 86400}
"""Seconds per supported ``periodUnit`` (http://hl7.org/fhir/ValueSet/units-of-time)."""
DURATION_UNITS: Final = {**UNITS, "s": 1}
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DOSES: Final = 10_000
"""Most doses one dosage yields for one range (a guard against absurd frequencies)."""
MIN_STEP_S: Final = 60
"""Doses closer together than this are a continuous administration (an infusion), not doses."""
MAX_WINDOW: Final = timedelta(hours=12)
"""Farthest an administration may be from its dose's due time and still record it."""
_DAY = timedelta(days=1)


def due_times(
    request: Resource, start: datetime, end: datetime, zone: tzinfo = UTC
) -> list[datetime]:
    """The due instants of ``request``'s doses in ``[start, end]``, sorted, in UTC."""
    if request.get("doNotPerform") is True:
        return []
    authored = _start(request.get("authoredOn"), zone)
    low, high = start.astimezone(UTC), end.astimezone(UTC)
    validity = (request.get("dispenseRequest") or {}).get("validityPeriod") or {}
    low = max([low, *(t for t in (authored, _start(validity.get("start"), zone)) if t)])
    until = _end(validity.get("end"), zone)
    found: set[datetime] = set()
    for dosage in request.get("dosageInstruction") or ():
        if not isinstance(dosage, dict) or _as_needed(dosage):
            continue
        timing = dosage.get("timing")
        if isinstance(timing, dict):
            found.update(_timing(timing, authored, low, high, zone))
    return sorted(t for t in found if low <= t <= high and (until is None or t < until))


def recording_windows(
    times: Sequence[datetime], widest: timedelta = MAX_WINDOW
) -> list[tuple[datetime, datetime]]:
    """For each of the sorted due ``times``, the instants ``[from, to]`` in which an
    administration records that dose: half-way to the neighbouring doses, at most ``widest``
    either side."""
    windows = []
    for i, due in enumerate(times):
        before = min(widest, (due - times[i - 1]) / 2) if i else widest
        after = min(widest, (times[i + 1] - due) / 2) if i + 1 < len(times) else widest
        windows.append((due - before, due + after))
    return windows


def _as_needed(dosage: dict[str, Any]) -> bool:
    return dosage.get("asNeededBoolean") is True or "asNeededCodeableConcept" in dosage


def _timing(
    timing: dict[str, Any], authored: datetime | None, low: datetime, high: datetime, zone: tzinfo
) -> Iterator[datetime]:
    for event in timing.get("event") or ():
        if isinstance(event, str) and "T" in event and (at := _start(event, zone)) is not None:
            yield at
    repeat = timing.get("repeat")
    if isinstance(repeat, dict):
        yield from _repeat(repeat, authored, low, high, zone)


def _repeat(
    repeat: dict[str, Any], authored: datetime | None, low: datetime, high: datetime, zone: tzinfo
) -> Iterator[datetime]:
    bounds = repeat.get("boundsPeriod") or {}
    first = _start(bounds.get("start"), zone) or authored
    step = _seconds(repeat.get("period"), repeat.get("periodUnit"), UNITS)
    frequency = repeat.get("frequency", 1)
    if first is None or not isinstance(frequency, int) or frequency < 1:
        return
    last = _end(bounds.get("end"), zone)
    duration = repeat.get("boundsDuration") or {}
    length = _seconds(duration.get("value"), duration.get("code"), DURATION_UNITS)
    if length is not None:
        last = min(last or datetime.max.replace(tzinfo=UTC), first + timedelta(seconds=length))
    count = repeat.get("count") if isinstance(repeat.get("count"), int) else None
    days = frozenset(WEEKDAYS.index(d) for d in repeat.get("dayOfWeek") or () if d in WEEKDAYS)
    if last is not None:
        high = min(high, last - timedelta(microseconds=1))
    if repeat.get("timeOfDay"):
        times = sorted(t for t in map(_time, repeat["timeOfDay"]) if t is not None)
        every = step if step is not None else UNITS["d"]
        if every % UNITS["d"] == 0:
            yield from _daily(first, times, every // UNITS["d"], days, count, low, high, zone)
    elif step is not None and step / frequency >= MIN_STEP_S and not repeat.get("when"):
        yield from _spaced(first, step / frequency, days, count, low, high, zone)


def _spaced(
    first: datetime,
    step_s: float,
    days: frozenset[int],
    count: int | None,
    low: datetime,
    high: datetime,
    zone: tzinfo,
) -> Iterator[datetime]:
    """Every ``step_s`` seconds (whole seconds) from ``first``; whole days on the wall clock."""
    step = timedelta(seconds=int(step_s))
    whole_days = step % _DAY == timedelta(0)
    local = first.astimezone(zone).replace(tzinfo=None)
    k = max(0, (low - first) // step - 1)  # one early: wall-clock steps may be an hour off
    for _ in range(MAX_DOSES):
        if count is not None and k >= count:
            return
        due = (local + k * step).replace(tzinfo=zone) if whole_days else first + k * step
        due = due.astimezone(UTC)
        if due > high:
            return
        if due >= low and (not days or due.astimezone(zone).weekday() in days):
            yield due
        k += 1


def _daily(
    first: datetime,
    times: list[time],
    every_days: int,
    days: frozenset[int],
    count: int | None,
    low: datetime,
    high: datetime,
    zone: tzinfo,
) -> Iterator[datetime]:
    """``times`` (local) on every ``every_days``-th day from ``first``'s day (weeks: the days of
    ``days`` in every ``every_days / 7``-th week)."""
    first_day = first.astimezone(zone).date()
    counting = count is not None
    day = first_day if counting else max(first_day, low.astimezone(zone).date() - _DAY)
    seen = 0
    while day <= high.astimezone(zone).date() + _DAY and seen < MAX_DOSES:
        if _scheduled(day, first_day, every_days, days):
            for at in times:
                due = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
                if due < first:
                    continue
                seen += 1
                if count is not None and seen > count:
                    return
                if low <= due <= high:
                    yield due
        day += _DAY


def _scheduled(day: date, first_day: date, every_days: int, days: frozenset[int]) -> bool:
    offset = (day - first_day).days
    if not days:
        return offset % every_days == 0
    if day.weekday() not in days:
        return False
    weeks = every_days // 7
    return (offset // 7) % weeks == 0 if weeks and every_days % 7 == 0 else offset % every_days == 0


def _seconds(value: Any, unit: Any, units: dict[str, int]) -> int | None:
    """``value`` ``unit`` in whole seconds; None when absent, not positive or in another unit."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if unit not in units or amount <= 0:
        return None
    return int(amount * units[unit])


def _time(value: Any) -> time | None:
    try:
        return time.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _start(value: Any, zone: tzinfo) -> datetime | None:
    """The first instant of a FHIR date or dateTime (dates: local midnight); None if absent or
    invalid."""
    period = _period(value, zone)
    return period[0] if period else None


def _end(value: Any, zone: tzinfo) -> datetime | None:
    """The instant after a FHIR date or dateTime (a date ends at the next local midnight)."""
    period = _period(value, zone)
    return period[1] if period else None


def _period(value: Any, zone: tzinfo) -> tuple[datetime, datetime] | None:
    if not isinstance(value, str):
        return None
    try:
        start, end = parse_period(value)
    except ValueError:
        return None
    if "T" in value:
        return start, end
    # a date: parse_period reads it as UTC days; the same wall-clock days in the local zone
    return _local(start, zone), _local(end, zone)


def _local(utc_wall: datetime, zone: tzinfo) -> datetime:
    """The instant the wall-clock time of ``utc_wall`` has in ``zone``."""
    return utc_wall.replace(tzinfo=zone).astimezone(UTC)
