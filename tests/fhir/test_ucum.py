"""UCUM canonical units (https://ucum.org/ucum), as quantity search uses them
(https://hl7.org/fhir/R4/search.html#quantity)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from healthbridge.fhir.ucum import canonical, conversion


@pytest.mark.parametrize(
    ("value", "code", "other_value", "other_code"),
    [
        ("5.4", "mg", "0.0054", "g"),
        ("100", "mg/dL", "1", "g/L"),
        ("1", "mmol/L", "1000", "umol/L"),
        ("72", "[in_i]", "182.88", "cm"),
        ("150", "[lb_av]", "68.0388555", "kg"),
        ("37", "Cel", "98.6", "[degF]"),
        ("60", "/min", "1", "/s"),
        ("120", "mm[Hg]", "15.998686", "kPa"),
        ("4.5", "10*3/uL", "4.5", "10*9/L"),
    ],
)
def test_common_clinical_units_meet_in_base_units(
    value: str, code: str, other_value: str, other_code: str
) -> None:
    left, right = canonical(Decimal(value), code), canonical(Decimal(other_value), other_code)
    assert left is not None and right is not None
    assert left[1] == right[1]
    assert left[0] == pytest.approx(right[0], rel=1e-6)


def test_units_of_other_dimensions_do_not_meet() -> None:
    mass, length = canonical(1, "mg"), canonical(1, "mm")
    assert mass is not None and length is not None and mass[1] != length[1]


@pytest.mark.parametrize("code", ["", "blah", "mg/", "x" * 100, "{"])
def test_codes_that_are_not_ucum_have_no_canonical_form(code: str) -> None:
    assert canonical(1, code) is None
    assert conversion(code) is None
