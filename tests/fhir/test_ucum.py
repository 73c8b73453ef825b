"""UCUM canonical units (https://ucum.org/ucum), as quantity search uses them
(https://hl7.org/fhir/R4/search.html#quantity)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from healthbridge.fhir.ucum import canonical, conversion, is_valid_unit, unit_problem


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


VALID_CLINICAL_UNITS = [
    "mg", "mg/dL", "mmol/L", "mm[Hg]", "/min", "kg/m2", "%", "Cel", "[degF]", "10*3/uL",
    "[iU]/L", "meq/L", "g/dL", "fL", "pg", "umol/L", "mL/min/{1.73_m2}", "{cells}/uL",
    "{beats}/min", "{score}", "1", "[in_i]", "[lb_av]", "cm[H2O]", "U/L", "ng/mL", "[pH]",
]  # fmt: skip


@pytest.mark.parametrize("code", VALID_CLINICAL_UNITS)
def test_common_clinical_units_are_valid_ucum(code: str) -> None:
    """https://ucum.org/ucum: the case-sensitive codes, with {annotations} and [special] atoms."""
    assert is_valid_unit(code)
    assert unit_problem(code) is None


@pytest.mark.parametrize(
    ("code", "hint"),
    [("mgdl", "mg/dL"), ("mg/ dL", None), ("kgs", "kg"), ("mEq/L", "meq/L"), ("", None)],
)
def test_invalid_units_are_rejected_with_advice(code: str, hint: str | None) -> None:
    assert not is_valid_unit(code)
    problem = unit_problem(code)
    assert problem is not None
    assert "not a valid UCUM unit" in problem and "https://ucum.org/ucum" in problem
    if hint:
        assert f"did you mean {hint}?" in problem


def test_an_overlong_code_is_refused_without_parsing() -> None:
    problem = unit_problem("m" * 1000)
    assert problem is not None and "longer than" in problem and len(problem) < 300


@pytest.mark.parametrize(
    ("value", "code", "expected", "canonical_code"),
    [
        ("100", "mg/dL", "1", "kilogram / meter ** 3"),  # 100 mg/dL glucose = 1 g/L = 1 kg/m3
        ("37", "Cel", "310.15", "kelvin"),
        ("98.6", "[degF]", "310.15", "kelvin"),
        ("1", "[in_i]", "0.0254", "meter"),
        ("1", "[lb_av]", "0.45359237", "kilogram"),
    ],
)
def test_conversions_to_base_units(
    value: str, code: str, expected: str, canonical_code: str
) -> None:
    found = canonical(Decimal(value), code)
    assert found is not None
    assert found[1] == canonical_code
    assert found[0] == pytest.approx(float(expected), rel=1e-9)


def test_valid_units_without_a_linear_conversion_are_still_valid() -> None:
    assert is_valid_unit("[pH]") and conversion("[pH]") is None
