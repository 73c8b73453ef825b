"""Dose times of a MedicationRequest from its R4 Timing
(https://hl7.org/fhir/R4/datatypes.html#Timing): events, frequency per period, timeOfDay,
dayOfWeek, count, bounds, validity period, PRN and doNotPerform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from healthbridge.subscriptions.dose_schedule import due_times, recording_windows


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def request(*timings: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "dosageInstruction": [{"timing": t} for t in timings],
        **more,
    }


def iso(times: list[datetime]) -> list[str]:
    return [t.strftime("%Y-%m-%dT%H:%M") for t in times]


DAY_START, DAY_END = at("2024-03-01T00:00:00Z"), at("2024-03-01T23:59:59Z")


def test_events_with_a_time_are_doses_date_only_ones_are_not() -> None:
    timing = {"event": ["2024-03-01T08:00:00Z", "2024-03-01T20:00:00+01:00", "2024-03-01"]}
    assert iso(due_times(request(timing), DAY_START, DAY_END)) == [
        "2024-03-01T08:00",
        "2024-03-01T19:00",
    ]


def test_twice_a_day_from_the_bounds_start() -> None:
    """frequency 2 per 1 d: every 12 hours from boundsPeriod.start."""
    repeat = {
        "boundsPeriod": {"start": "2024-02-20T09:00:00Z"},
        "frequency": 2,
        "period": 1,
        "periodUnit": "d",
    }
    assert iso(due_times(request({"repeat": repeat}), DAY_START, DAY_END)) == [
        "2024-03-01T09:00",
        "2024-03-01T21:00",
    ]


def test_every_six_hours_and_authored_on_as_the_start() -> None:
    repeat = {"frequency": 1, "period": 6, "periodUnit": "h"}
    got = due_times(
        request({"repeat": repeat}, authoredOn="2024-03-01T05:30:00Z"), DAY_START, DAY_END
    )
    assert iso(got) == [
        "2024-03-01T05:30",
        "2024-03-01T11:30",
        "2024-03-01T17:30",
        "2024-03-01T23:30",
    ]


def test_minutes_and_decimal_periods() -> None:
    repeat = {
        "boundsPeriod": {"start": "2024-03-01T10:00:00Z", "end": "2024-03-01T11:00:00Z"},
        "period": 0.25,
        "periodUnit": "h",
    }
    assert iso(due_times(request({"repeat": repeat}), DAY_START, DAY_END)) == [
        "2024-03-01T10:00",
        "2024-03-01T10:15",
        "2024-03-01T10:30",
        "2024-03-01T10:45",
        "2024-03-01T11:00",
    ]  # Period.end includes the times matching it (datatypes.html#Period)
    every_20_min = {**repeat, "period": 20, "periodUnit": "min"}
    assert len(due_times(request({"repeat": every_20_min}), DAY_START, DAY_END)) == 4


def test_time_of_day_in_the_configured_zone() -> None:
    oslo = ZoneInfo("Europe/Oslo")  # UTC+1 in March (before the change to summer time)
    repeat = {
        "boundsPeriod": {"start": "2024-02-28"},
        "frequency": 2,
        "period": 1,
        "periodUnit": "d",
        "timeOfDay": ["08:00:00", "20:00:00"],
    }
    assert iso(due_times(request({"repeat": repeat}), DAY_START, DAY_END, oslo)) == [
        "2024-03-01T07:00",
        "2024-03-01T19:00",
    ]
    assert iso(due_times(request({"repeat": repeat}), DAY_START, DAY_END)) == [
        "2024-03-01T08:00",
        "2024-03-01T20:00",
    ]


def test_daily_doses_keep_the_local_time_across_daylight_saving() -> None:
    oslo = ZoneInfo("Europe/Oslo")  # summer time from 2024-03-31
    repeat = {
        "boundsPeriod": {"start": "2024-03-29T08:00:00+01:00"},
        "period": 1,
        "periodUnit": "d",
    }
    got = due_times(
        request({"repeat": repeat}), at("2024-03-30T00:00:00Z"), at("2024-04-01T23:00:00Z"), oslo
    )
    assert [t.astimezone(oslo).strftime("%d %H:%M") for t in got] == [
        "30 08:00",
        "31 08:00",
        "01 08:00",
    ]


def test_every_other_day_and_weekdays() -> None:
    every_other = {
        "boundsPeriod": {"start": "2024-03-01"},
        "period": 2,
        "periodUnit": "d",
        "timeOfDay": ["09:00:00"],
    }
    week = (at("2024-03-01T00:00:00Z"), at("2024-03-07T23:59:00Z"))
    assert iso(due_times(request({"repeat": every_other}), *week)) == [
        "2024-03-01T09:00",
        "2024-03-03T09:00",
        "2024-03-05T09:00",
        "2024-03-07T09:00",
    ]
    mon_thu = {**every_other, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon", "thu"]}
    assert iso(due_times(request({"repeat": mon_thu}), *week)) == [
        "2024-03-04T09:00",
        "2024-03-07T09:00",
    ]


def test_bounds_count_validity_and_authored_on_end_the_schedule() -> None:
    repeat: dict[str, Any] = {
        "boundsPeriod": {"start": "2024-03-01T02:00:00Z"},
        "period": 4,
        "periodUnit": "h",
    }
    all_day = iso(due_times(request({"repeat": repeat}), DAY_START, DAY_END))
    assert all_day == [f"2024-03-01T{h:02d}:00" for h in (2, 6, 10, 14, 18, 22)]
    counted = {**repeat, "count": 3}
    assert len(due_times(request({"repeat": counted}), DAY_START, DAY_END)) == 3
    lasting = {**repeat, "boundsDuration": {"value": 8, "unit": "hours", "code": "h"}}
    assert iso(due_times(request({"repeat": lasting}), DAY_START, DAY_END)) == all_day[:2]
    ended = {**repeat, "boundsPeriod": {**repeat["boundsPeriod"], "end": "2024-03-01T12:00:00Z"}}
    assert iso(due_times(request({"repeat": ended}), DAY_START, DAY_END)) == all_day[:3]
    valid = {"validityPeriod": {"start": "2024-03-01T09:00:00Z", "end": "2024-03-01T19:00:00Z"}}
    assert (
        iso(due_times(request({"repeat": repeat}, dispenseRequest=valid), DAY_START, DAY_END))
        == all_day[2:5]
    )
    late = request({"repeat": repeat}, authoredOn="2024-03-01T15:00:00Z")
    assert iso(due_times(late, DAY_START, DAY_END)) == all_day[4:]


def test_a_long_running_schedule_is_cheap_to_expand() -> None:
    repeat = {"boundsPeriod": {"start": "1977-10-18T23:11:46Z"}, "period": 1, "periodUnit": "d"}
    assert iso(due_times(request({"repeat": repeat}), DAY_START, DAY_END)) == ["2024-03-01T23:11"]


def test_what_has_no_scheduled_doses() -> None:
    daily = {"boundsPeriod": {"start": "2024-02-01T08:00:00Z"}, "period": 1, "periodUnit": "d"}
    assert due_times(request({"repeat": daily}), DAY_START, DAY_END)
    no_start = {"period": 1, "periodUnit": "d"}
    meals = {**daily, "when": ["ACM"]}
    monthly = {**daily, "periodUnit": "mo"}
    continuous = {**daily, "frequency": 2000}  # under a minute apart: an infusion
    for timing in (
        {"repeat": no_start},
        {"repeat": meals},
        {"repeat": monthly},
        {"repeat": continuous},
        {"code": {"text": "BID"}},
    ):
        assert due_times(request(timing), DAY_START, DAY_END) == [], timing
    prn = request({"repeat": daily})
    prn["dosageInstruction"][0]["asNeededBoolean"] = True
    assert due_times(prn, DAY_START, DAY_END) == []
    assert due_times(request({"repeat": daily}, doNotPerform=True), DAY_START, DAY_END) == []


def test_several_dosages_are_merged() -> None:
    got = due_times(
        request(
            {"event": ["2024-03-01T08:00:00Z"]},
            {"event": ["2024-03-01T08:00:00Z", "2024-03-01T12:00:00Z"]},
        ),
        DAY_START,
        DAY_END,
    )
    assert iso(got) == ["2024-03-01T08:00", "2024-03-01T12:00"]


def test_recording_windows_reach_half_way_to_the_neighbours() -> None:
    times = [at("2024-03-01T08:00:00Z"), at("2024-03-01T12:00:00Z"), at("2024-03-02T12:00:00Z")]
    windows = recording_windows(times)
    h = timedelta(hours=1)
    assert windows[0] == (times[0] - 12 * h, times[0] + 2 * h)
    assert windows[1] == (times[1] - 2 * h, times[1] + 12 * h)
    assert windows[2] == (times[2] - 12 * h, times[2] + 12 * h)
