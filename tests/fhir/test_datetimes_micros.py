"""``period_micros`` (the integer form indexing uses) agrees with ``parse_period`` for every
FHIR date, dateTime and instant (https://hl7.org/fhir/R4/datatypes.html#dateTime)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthbridge.fhir.datetimes import parse_period, period_micros, to_micros


def _text(draw: st.DrawFn) -> str:
    year = draw(st.integers(1, 9998))
    parts = [f"{year:04d}"]
    depth = draw(st.integers(0, 5))
    if depth >= 1:
        parts.append(f"-{draw(st.integers(0, 13)):02d}")
    if depth >= 2:
        parts.append(f"-{draw(st.integers(0, 32)):02d}")
    if depth >= 3:
        parts.append(f"T{draw(st.integers(0, 24)):02d}:{draw(st.integers(0, 60)):02d}")
        if depth >= 4:
            parts.append(f":{draw(st.integers(0, 60)):02d}")
            if depth >= 5:
                parts.append(
                    "."
                    + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=1, max_size=9)))
                )
        zone = draw(st.sampled_from(["", "Z", "+05:30", "-04:00", "+14:00", "-12:45", "+24:00"]))
        parts.append(zone)
    return "".join(parts)


@given(st.composite(_text)())
def test_agrees_with_parse_period(text: str) -> None:
    try:
        start, end = parse_period(text)
    except (ValueError, OverflowError):
        with pytest.raises(ValueError):
            period_micros(text)
        return
    assert period_micros(text) == (to_micros(start), to_micros(end))


@pytest.mark.parametrize(
    "text", ["2020-02-30", "2020-13", "2020-01-01T24:00", "x", "2020-01-01T10:61:00Z"]
)
def test_invalid_values_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        period_micros(text)
