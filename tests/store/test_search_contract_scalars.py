"""Contract: number, date and quantity search on every backend.

Spec: https://hl7.org/fhir/R4/search.html#number, #date, #quantity and #prefix (eq ne gt lt ge le
sa eb ap). A search value stands for the range its precision implies (``100`` is [99.5, 100.5),
``2020`` the whole year); ``ap`` is within 10 % for numbers and quantities and "overlaps" for
dates (the agreed reading of "approximately"). Expected ids are written out by hand.
"""

from __future__ import annotations

from decimal import Decimal

from healthbridge.store.repository import Repository
from tests.store.search_fixtures import expect_matches, resource, store

UCUM = "http://unitsofmeasure.org"


def risk(id: str, *probabilities: str) -> dict[str, object]:
    predictions = [{"probabilityDecimal": Decimal(p)} for p in probabilities]
    return resource(
        "RiskAssessment",
        id,
        status="final",
        subject={"reference": "Patient/p"},
        **({"prediction": predictions} if predictions else {}),
    )


async def _numbers(repo: Repository) -> None:
    await store(
        repo,
        risk("n99.4", "99.4"),
        risk("n99.5", "99.5"),
        risk("n100", "100"),
        risk("n100.004", "100.004"),
        risk("n100.4", "100.4"),
        risk("n100.5", "100.5"),
        risk("n120", "120"),
        risk("n80", "80"),
        risk("none"),
    )


async def test_number_eq_searches_the_implicit_precision_range(repo: Repository) -> None:
    """search.html#number: ``100`` means [99.5, 100.5); ``100.00`` means [99.995, 100.005)."""
    await _numbers(repo)
    await expect_matches(
        repo,
        "RiskAssessment",
        [
            ("probability=100", {"n99.5", "n100", "n100.004", "n100.4"}),
            ("probability=eq100", {"n99.5", "n100", "n100.004", "n100.4"}),
            ("probability=100.00", {"n100", "n100.004"}),
            ("probability=80", {"n80"}),
            ("probability=81", set()),
        ],
    )


async def test_number_comparators_use_the_exact_value(repo: Repository) -> None:
    """search.html#number: ``lt100``/``gt100``... compare with exactly 100; ``ne100`` excludes
    [99.5, 100.5); ``sa``/``eb`` start after/end before; resources without a value never match."""
    await _numbers(repo)
    await expect_matches(
        repo,
        "RiskAssessment",
        [
            ("probability=lt100", {"n99.4", "n99.5", "n80"}),
            ("probability=le100", {"n99.4", "n99.5", "n100", "n80"}),
            ("probability=gt100", {"n100.004", "n100.4", "n100.5", "n120"}),
            ("probability=ge100", {"n100", "n100.004", "n100.4", "n100.5", "n120"}),
            ("probability=ne100", {"n99.4", "n100.5", "n120", "n80"}),
            ("probability=sa100", {"n100.004", "n100.4", "n100.5", "n120"}),
            ("probability=eb100", {"n99.4", "n99.5", "n80"}),
            (
                "probability=gt-5",
                {"n99.4", "n99.5", "n100", "n100.004", "n100.4", "n100.5", "n120", "n80"},
            ),
        ],
    )


async def test_number_ap_is_within_ten_percent(repo: Repository) -> None:
    """search.html#prefix: ``ap100`` matches values within 10 % of 100, i.e. [90, 110]."""
    await _numbers(repo)
    await expect_matches(
        repo,
        "RiskAssessment",
        [
            ("probability=ap100", {"n99.4", "n99.5", "n100", "n100.004", "n100.4", "n100.5"}),
            (
                "probability=ap110",
                {"n99.4", "n99.5", "n100", "n100.004", "n100.4", "n100.5", "n120"},
            ),
            ("probability=ap85", {"n80"}),
        ],
    )


async def test_number_or_values_repeats_and_missing(repo: Repository) -> None:
    """search.html#combining: commas OR values; a repeated parameter ANDs, each repeat free to
    match a different value of a repeating element; ``:missing`` (search.html#modifiers)."""
    await _numbers(repo)
    await store(repo, risk("multi", "10", "200"))
    await expect_matches(
        repo,
        "RiskAssessment",
        [
            ("probability=lt90,gt110", {"n120", "n80", "multi"}),
            ("probability=lt20&probability=gt150", {"multi"}),
            (
                "probability=gt99&probability=lt100.1",
                {"n99.4", "n99.5", "n100", "n100.004", "multi"},
            ),
            ("probability=10,200&probability=10", {"multi"}),
            ("probability:missing=true", {"none"}),
            (
                "probability:missing=false",
                {"n99.4", "n99.5", "n100", "n100.004", "n100.4", "n100.5", "n120", "n80", "multi"},
            ),
        ],
    )


async def test_numbers_compare_to_fifteen_significant_digits(repo: Repository) -> None:
    """search.html#number with https://hl7.org/fhir/R4/datatypes.html#decimal: values compare
    as IEEE doubles on every backend (the SQL index stores double precision; match.py rounds the
    same way), so decimals that differ within 15 significant digits are told apart and the
    query's precision range still applies; digits beyond that are not significant."""
    await store(
        repo,
        risk("tenth", "0.1"),
        risk("tenth-and-a-bit", "0.100000000000001"),
        risk("big", "123456789012345"),
        risk("big-plus-one", "123456789012346"),
    )
    await expect_matches(
        repo,
        "RiskAssessment",
        [
            ("probability=gt0.1", {"tenth-and-a-bit", "big", "big-plus-one"}),
            ("probability=le0.1", {"tenth"}),
            ("probability=0.100000000000001", {"tenth-and-a-bit"}),
            ("probability=gt123456789012345", {"big-plus-one"}),
            ("probability=123456789012346", {"big-plus-one"}),
            ("probability=0.10", {"tenth", "tenth-and-a-bit"}),  # [0.095, 0.105)
        ],
    )


# -- dates ---------------------------------------------------------------------------------


async def _birthdates(repo: Repository) -> None:
    def patient(id: str, birth: str | None) -> dict[str, object]:
        return resource("Patient", id, **({"birthDate": birth} if birth else {}))

    await store(
        repo,
        patient("d2019-12-31", "2019-12-31"),
        patient("d2020-01-01", "2020-01-01"),
        patient("d2020-06-15", "2020-06-15"),
        patient("d2020-12-31", "2020-12-31"),
        patient("d2021-01-01", "2021-01-01"),
        patient("d2020", "2020"),
        patient("d2020-06", "2020-06"),
        patient("none", None),
    )


IN_2020 = {"d2020-01-01", "d2020-06-15", "d2020-12-31", "d2020", "d2020-06"}


async def test_date_eq_means_the_stored_range_is_inside_the_query_range(
    repo: Repository,
) -> None:
    """search.html#date: ``2020`` is the whole year; a partial stored date is its own range, so
    ``2020`` matches ``2020-06`` but ``2020-06`` does not match ``2020``."""
    await _birthdates(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("birthdate=2020", IN_2020),
            ("birthdate=eq2020", IN_2020),
            ("birthdate=2020-06", {"d2020-06-15", "d2020-06"}),
            ("birthdate=2020-06-15", {"d2020-06-15"}),
            ("birthdate=2020-06-15T00:00:00Z", set()),
            ("birthdate=1999", set()),
        ],
    )


async def test_date_comparators_on_partial_dates(repo: Repository) -> None:
    """search.html#prefix: gt/lt/ge/le/sa/eb compare the ranges: ``lt2020`` is a value that
    starts before 2020; ``sa2020`` starts after 2020 ends; ``ne2020`` is not inside 2020; ``ap``
    (approximately) is agreed as "the ranges overlap"."""
    await _birthdates(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("birthdate=ne2020", {"d2019-12-31", "d2021-01-01"}),
            ("birthdate=lt2020", {"d2019-12-31"}),
            ("birthdate=le2020", {"d2019-12-31"} | IN_2020),
            ("birthdate=gt2020", {"d2021-01-01"}),
            ("birthdate=ge2020", {"d2021-01-01"} | IN_2020),
            ("birthdate=sa2020", {"d2021-01-01"}),
            ("birthdate=eb2020", {"d2019-12-31"}),
            (
                "birthdate=ge2020-06-15",
                {"d2020-06-15", "d2020-12-31", "d2021-01-01", "d2020", "d2020-06"},
            ),
            ("birthdate=lt2020-06-15", {"d2019-12-31", "d2020-01-01", "d2020", "d2020-06"}),
            ("birthdate=gt2020-06-15", {"d2020-12-31", "d2021-01-01", "d2020", "d2020-06"}),
            (
                "birthdate=le2020-06-15",
                {"d2019-12-31", "d2020-01-01", "d2020-06-15", "d2020", "d2020-06"},
            ),
            ("birthdate=sa2020-06", {"d2020-12-31", "d2021-01-01"}),
            ("birthdate=eb2020-06", {"d2019-12-31", "d2020-01-01"}),
            ("birthdate=ap2020-06", {"d2020-06-15", "d2020", "d2020-06"}),
            ("birthdate=ap2019-12-31", {"d2019-12-31"}),
        ],
    )


async def test_date_missing_and_or(repo: Repository) -> None:
    """search.html#modifiers (:missing) and #combining (OR values)."""
    await _birthdates(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("birthdate:missing=true", {"none"}),
            ("birthdate=2019,2021", {"d2019-12-31", "d2021-01-01"}),
            ("birthdate=ge2020&birthdate=lt2020-06-15", {"d2020-01-01", "d2020", "d2020-06"}),
        ],
    )


async def _effective(repo: Repository) -> None:
    def obs(id: str, **effective: object) -> dict[str, object]:
        return resource("Observation", id, status="final", code={"text": "x"}, **effective)

    await store(
        repo,
        obs("utc", effectiveDateTime="2020-03-04T10:00:00Z"),
        obs("plus2", effectiveDateTime="2020-03-04T10:00:00+02:00"),
        obs("minus5", effectiveDateTime="2020-03-04T23:30:00-05:00"),
        obs("instant", effectiveInstant="2020-03-04T10:00:00.123Z"),
        obs("period", effectivePeriod={"start": "2020-03-01", "end": "2020-03-10"}),
        obs("open", effectivePeriod={"start": "2020-03-01"}),
        obs("open-start", effectivePeriod={"end": "2020-03-02"}),
        obs("none"),
    )


async def test_date_time_zones_and_instants(repo: Repository) -> None:
    """search.html#date: times with offsets are compared as instants (``10:00+02:00`` is
    ``08:00Z``); a value to the second is that second; a date without a zone is taken as UTC
    (the server's choice, fhir/datetimes.py)."""
    await _effective(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            ("date=2020-03-04T10:00:00Z", {"utc", "instant"}),
            ("date=2020-03-04T08:00:00Z", {"plus2"}),
            ("date=2020-03-04T10:00:00+02:00", {"plus2"}),
            ("date=2020-03-05T04:30:00Z", {"minus5"}),
            ("date=2020-03-04T10:00:00.123Z", {"instant"}),
            ("date=2020-03-04T10:00Z", {"utc", "instant"}),
            ("date=2020-03-04", {"utc", "plus2", "instant"}),
            ("date=2020-03-05", {"minus5"}),
        ],
    )


async def test_date_periods_and_open_ends(repo: Repository) -> None:
    """search.html#date with https://hl7.org/fhir/R4/datatypes.html#Period: a Period is the
    range start..end; a missing end is ongoing (unbounded), so it is never inside a finite query
    range but is after any date (and a missing start before any date)."""
    await _effective(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            ("date=2020-03", {"utc", "plus2", "minus5", "instant", "period"}),
            ("date=ge2020-03-09", {"period", "open"}),
            ("date=gt2030", {"open"}),
            ("date=lt2020-03-02", {"period", "open", "open-start"}),
            ("date=le2020-03-02", {"period", "open", "open-start"}),
            ("date=sa2020-03-04", {"minus5"}),
            ("date=eb2020-03-05", {"utc", "plus2", "instant", "open-start"}),
            ("date=ap2020-03-09", {"period", "open"}),
            ("date=ne2020-03", {"open", "open-start"}),
            ("date=lt1900", {"open-start"}),
            ("date=eb1900", set()),
            ("date=sa2100", set()),
            ("date:missing=true", {"none"}),
        ],
    )


# -- quantities ------------------------------------------------------------------------------


async def _quantities(repo: Repository) -> None:
    def obs(id: str, **value: object) -> dict[str, object]:
        return resource("Observation", id, status="final", code={"text": "x"}, **value)

    def qty(value: str, **unit: str) -> dict[str, object]:
        return {"valueQuantity": {"value": Decimal(value), **unit}}

    await store(
        repo,
        obs("mg", **qty("5.4", system=UCUM, code="mg", unit="mg")),
        obs("g", **qty("5.4", system=UCUM, code="g", unit="g")),
        obs("unit-only", **qty("5.4", unit="mg")),
        obs("six", **qty("6", system=UCUM, code="mg", unit="mg")),
        obs("other-system", **qty("5.4", system="http://example.org/units", code="mg")),
        obs("string", valueString="5.4 mg"),
    )


async def test_quantity_number_system_and_code(repo: Repository) -> None:
    """search.html#quantity: ``5.4|http://unitsofmeasure.org|mg`` needs value, system and
    code; ``5.4||mg`` matches the code or the human unit in any system; ``5.4`` any unit.
    UCUM quantities also compare across units (5.4 g is more than 5.4 mg)."""
    await _quantities(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            ("value-quantity=5.4", {"mg", "g", "unit-only", "other-system"}),
            (f"value-quantity=5.4|{UCUM}|mg", {"mg"}),
            ("value-quantity=5.4||mg", {"mg", "unit-only", "other-system"}),
            (f"value-quantity=5.4|{UCUM}|", {"mg", "g"}),
            ("value-quantity=5.40", {"mg", "g", "unit-only", "other-system"}),
            ("value-quantity=5.5", set()),
            (f"value-quantity=gt5.4|{UCUM}|mg", {"six", "g"}),
        ],
    )


async def test_quantity_prefixes(repo: Repository) -> None:
    """search.html#quantity with #prefix: comparators work as for numbers; ``ap`` is 10 %."""
    await _quantities(repo)
    everything = {"mg", "g", "unit-only", "six", "other-system"}
    await expect_matches(
        repo,
        "Observation",
        [
            ("value-quantity=lt6", everything - {"six"}),
            ("value-quantity=le6", everything),
            ("value-quantity=ne5.4", {"six"}),
            ("value-quantity=ap5.5||mg", {"mg", "unit-only", "six", "other-system"}),
            ("value-quantity=ap5", {"mg", "g", "unit-only", "other-system"}),
            ("value-quantity:missing=true", {"string"}),
            ("value-quantity=6,5.4||g", {"six", "g"}),
        ],
    )


async def test_quantity_ucum_units_compare_canonically(repo: Repository) -> None:
    """search.html#quantity: with the UCUM system a server may compare quantities in canonical
    units; HealthBridge does (match.py ``_canonically``): ``5.4|http://unitsofmeasure.org|mg``
    finds 5400 ug and 0.0054 g, and a quantity without a system is compared only by its code."""

    def obs(id: str, value: str, code: str, system: str | None = UCUM) -> dict[str, object]:
        quantity: dict[str, object] = {"value": Decimal(value), "code": code, "unit": code}
        if system:
            quantity["system"] = system
        return resource(
            "Observation", id, status="final", code={"text": "x"}, valueQuantity=quantity
        )

    await store(
        repo,
        obs("mg", "5.4", "mg"),
        obs("ug", "5400", "ug"),
        obs("g-small", "0.0054", "g"),
        obs("g", "5.4", "g"),
        obs("no-system-ug", "5400", "ug", None),
    )
    await expect_matches(
        repo,
        "Observation",
        [
            (f"value-quantity=5.4|{UCUM}|mg", {"mg", "ug", "g-small"}),
            (f"value-quantity=5400|{UCUM}|ug", {"mg", "ug", "g-small"}),
            (f"value-quantity=gt5.4|{UCUM}|mg", {"g"}),
            (f"value-quantity=lt1|{UCUM}|g", {"mg", "ug", "g-small"}),
            (f"value-quantity=5.4|{UCUM}|g", {"g"}),
            ("value-quantity=5400||ug", {"ug", "no-system-ug"}),
        ],
    )
