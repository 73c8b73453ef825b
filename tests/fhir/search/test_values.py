"""Index values per search-parameter type: https://hl7.org/fhir/R4/search.html#ptypes.

Dates (https://hl7.org/fhir/R4/search.html#date) are ``[start, end)`` UTC microsecond ranges;
numbers and quantities (https://hl7.org/fhir/R4/search.html#number) carry the implicit precision
range; strings (https://hl7.org/fhir/R4/search.html#string) are stored case- and accent-folded;
tokens (https://hl7.org/fhir/R4/search.html#token) as system|code with the ``:text`` text;
references (https://hl7.org/fhir/R4/search.html#reference) by type/id, URL or identifier.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from healthbridge.fhir.datetimes import to_micros
from healthbridge.fhir.search.dates import date_values
from healthbridge.fhir.search.quantities import number_values, quantity_values
from healthbridge.fhir.search.references import reference_values
from healthbridge.fhir.search.strings import normalize, string_values
from healthbridge.fhir.search.tokens import token_values
from healthbridge.fhir.search.values import (
    DATE_MAX,
    DATE_MIN,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
)


def at(*parts: int) -> int:
    return to_micros(datetime(*parts, tzinfo=UTC))  # type: ignore[misc]


# -- date ------------------------------------------------------------------------------------


def test_a_year_is_the_whole_year() -> None:
    assert date_values("2020") == [DateValue(at(2020, 1, 1), at(2021, 1, 1))]


def test_a_month_and_a_day_are_their_periods() -> None:
    assert date_values("2020-02") == [DateValue(at(2020, 2, 1), at(2020, 3, 1))]
    assert date_values("2020-12") == [DateValue(at(2020, 12, 1), at(2021, 1, 1))]
    assert date_values("2020-02-29") == [DateValue(at(2020, 2, 29), at(2020, 3, 1))]


def test_a_datetime_to_the_second_with_an_offset_is_that_second_in_utc() -> None:
    start = at(2020, 1, 1, 20, 30, 5)
    assert date_values("2020-01-02T01:30:05+05:00") == [DateValue(start, start + 1_000_000)]


def test_an_instant_with_milliseconds_is_one_microsecond_wide() -> None:
    start = at(2020, 1, 1, 0, 0, 0) + 123_000
    assert date_values("2020-01-01T00:00:00.123Z") == [DateValue(start, start + 1)]


def test_a_period_spans_start_to_the_end_of_its_end() -> None:
    period = {"start": "2020-01-01", "end": "2020-01-31"}
    assert date_values(period) == [DateValue(at(2020, 1, 1), at(2020, 2, 1))]


def test_an_open_period_is_unbounded() -> None:
    assert date_values({"start": "2020"}) == [DateValue(at(2020, 1, 1), DATE_MAX)]
    assert date_values({"end": "2020"}) == [DateValue(DATE_MIN, at(2021, 1, 1))]


def test_timing_events_and_invalid_dates() -> None:
    timing = {"event": ["2020-01-01", "2021"], "repeat": {"frequency": 1}}
    assert date_values(timing) == [
        DateValue(at(2020, 1, 1), at(2020, 1, 2)),
        DateValue(at(2021, 1, 1), at(2022, 1, 1)),
    ]
    assert date_values("not a date") == []
    assert date_values({}) == []


# -- number and quantity ---------------------------------------------------------------------


def test_number_precision_100_vs_100_00() -> None:
    assert number_values(Decimal("100")) == [
        NumberValue(Decimal("100"), Decimal("99.5"), Decimal("100.5"))
    ]
    assert number_values(Decimal("100.00")) == [
        NumberValue(Decimal("100.00"), Decimal("99.995"), Decimal("100.005"))
    ]
    assert number_values(100) == number_values(Decimal(100))
    assert number_values(Decimal("1e2"))[0].low == Decimal("50")
    assert number_values(True) == []


def test_quantity_keeps_system_code_unit_and_precision() -> None:
    node = {"value": Decimal("72.50"), "unit": "kg", "system": "http://unitsofmeasure.org"}
    assert quantity_values({**node, "code": "kg"}) == [
        QuantityValue(
            Decimal("72.50"),
            Decimal("72.495"),
            Decimal("72.505"),
            "http://unitsofmeasure.org",
            "kg",
            "kg",
        )
    ]


def test_money_range_and_sampled_data() -> None:
    money = quantity_values({"value": 10, "currency": "EUR"})[0]
    assert (money.system, money.code) == ("urn:iso:std:iso:4217", "EUR")
    ranged = quantity_values({"low": {"value": 1, "unit": "a"}, "high": {"value": 5}})
    assert ranged == [QuantityValue(None, Decimal(1), Decimal(5), None, None, "a")]
    assert quantity_values({"origin": {"value": 1}, "period": 1, "dimensions": 1}) == []


# -- string ----------------------------------------------------------------------------------


def test_accents_and_case_are_folded() -> None:
    assert normalize("Zoë") == "zoe"
    assert normalize("ÅNGSTRÖM") == "angstrom"
    assert normalize("Straße") == "strasse"
    assert string_values("Zoë") == [StringValue("zoe", "Zoë")]


def test_human_name_and_address_parts() -> None:
    name = {"family": "Chalmers", "given": ["Peter", "James"], "prefix": ["Mr"], "use": "x"}
    assert [v.exact for v in string_values(name)] == ["Chalmers", "Peter", "James", "Mr"]
    address = {"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}
    assert [v.normalized for v in string_values(address)] == [
        "534 erewhon st",
        "pleasantville",
        "3999",
    ]


# -- token -----------------------------------------------------------------------------------


def test_codeable_concept_codings_and_text() -> None:
    concept = {
        "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}],
        "text": "weight",
    }
    assert token_values(concept) == [
        TokenValue("http://loinc.org", "29463-7", "Body Weight"),
        TokenValue(None, None, "weight"),
    ]


def test_identifier_system_value_text_and_of_type() -> None:
    identifier = {
        "system": "urn:oid:1.2.36.146.595.217.0.1",
        "value": "12345",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
            "text": "MRN",
        },
    }
    assert token_values(identifier, "Identifier") == [
        TokenValue(
            "urn:oid:1.2.36.146.595.217.0.1",
            "12345",
            "MRN",
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            "MR",
        )
    ]
    assert token_values({"value": "7"}) == [TokenValue(None, "7")]


def test_contact_point_boolean_code_and_coding() -> None:
    assert token_values({"system": "phone", "value": "555-1234"}) == [TokenValue(None, "555-1234")]
    assert token_values(True) == [TokenValue(None, "true")]
    assert token_values("final") == [TokenValue(None, "final")]
    assert token_values({"system": "s", "code": "c"}, "Coding") == [TokenValue("s", "c")]


# -- reference -------------------------------------------------------------------------------


def test_relative_and_versioned_references() -> None:
    assert reference_values({"reference": "Patient/123"}) == [
        ReferenceValue(target_type="Patient", target_id="123")
    ]
    assert reference_values({"reference": "Patient/123/_history/2"}) == [
        ReferenceValue(target_type="Patient", target_id="123", version="2")
    ]


def test_absolute_urn_contained_and_canonical_references() -> None:
    url = "http://example.org/fhir/Patient/9"
    assert reference_values({"reference": url}) == [
        ReferenceValue(target_type="Patient", target_id="9", url=url)
    ]
    assert reference_values({"reference": "http://example.org/doc.pdf"}) == [
        ReferenceValue(url="http://example.org/doc.pdf")
    ]
    urn = "urn:uuid:5f2b8f5c-1d2e-4b1a-9c1a-2b3c4d5e6f70"
    assert reference_values({"reference": urn}) == [ReferenceValue(url=urn)]
    assert reference_values({"reference": "#contained"}) == []
    assert reference_values("http://hl7.org/fhir/ValueSet/x|4.0.1") == [
        ReferenceValue(url="http://hl7.org/fhir/ValueSet/x", version="4.0.1")
    ]


def test_reference_identifier_is_indexed_for_the_identifier_modifier() -> None:
    node = {"type": "Patient", "identifier": {"system": "urn:ssn", "value": "444"}}
    assert reference_values(node) == [
        ReferenceValue(target_type="Patient", identifier_system="urn:ssn", identifier_value="444")
    ]
