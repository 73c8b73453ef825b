"""FHIR date, dateTime and instant values as exact ``[start, end)`` microsecond ranges
(https://hl7.org/fhir/R4/datatypes.html#dateTime): ``period_micros``, the one parser behind
indexing, search values and ``parse_period``, checked against the standard library's ISO 8601
parser and against hand-written values."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthbridge.fhir.datetimes import parse_period, period_micros, to_micros

UNIT = {5: timedelta(minutes=1), 8: timedelta(seconds=1)}  # HH:MM, HH:MM:SS


def _oracle(text: str) -> tuple[int, int]:
    """The same range from ``datetime.fromisoformat`` (full dateTimes only)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    clock = re.split(r"[Z+-]", text.split("T", 1)[1], maxsplit=1)[0]  # HH:MM[:SS[.fff]]
    unit = timedelta(microseconds=1) if "." in clock else UNIT[len(clock)]
    return to_micros(moment), to_micros(moment + unit)


@st.composite
def date_times(draw: st.DrawFn) -> str:
    day = draw(st.dates(min_value=datetime(2, 1, 1).date(), max_value=datetime(9998, 1, 1).date()))
    text = f"{day.isoformat()}T{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"
    if draw(st.booleans()):
        text += f":{draw(st.integers(0, 59)):02d}"
        if draw(st.booleans()):
            text += "." + "".join(
                draw(st.lists(st.sampled_from("0123456789"), min_size=1, max_size=6))
            )
    return text + draw(st.sampled_from(["", "Z", "+05:30", "-04:00", "+14:00", "-12:45"]))


@given(date_times())
def test_date_times_agree_with_the_standard_library(text: str) -> None:
    assert period_micros(text) == _oracle(text)
    start, end = parse_period(text)
    assert (to_micros(start), to_micros(end)) == period_micros(text)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2020", datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)),
        ("2020-12", datetime(2020, 12, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)),
        ("2020-02-29", datetime(2020, 2, 29, tzinfo=UTC), datetime(2020, 3, 1, tzinfo=UTC)),
        (
            "2020-03-04T10:20:30.123456789-05:00",
            datetime(2020, 3, 4, 15, 20, 30, 123456, tzinfo=UTC),
            datetime(2020, 3, 4, 15, 20, 30, 123457, tzinfo=UTC),
        ),
    ],
)
def test_partial_dates_and_long_fractions(text: str, start: datetime, end: datetime) -> None:
    assert period_micros(text) == (to_micros(start), to_micros(end))
    assert parse_period(text) == (start, end)


@pytest.mark.parametrize(
    "text",
    [
        "2020-02-30",
        "2020-13",
        "2020-01-01T24:00",
        "x",
        "2020-01-01T10:61:00Z",
        "2020-01-01T10:00+24:00",
    ],
)
def test_invalid_values_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        period_micros(text)
