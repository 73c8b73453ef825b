"""Parsing search requests: https://hl7.org/fhir/R4/search.html (#prefix, #escaping, #ptypes,
#modifiers, #chaining, #has, #return); malformed input is a 400 naming the parameter."""

from __future__ import annotations

from decimal import Decimal

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.parse import SearchLimits, SearchParser, split_values
from healthbridge.fhir.search.query import (
    ChainStep,
    CompositeQuery,
    DateQuery,
    HasStep,
    Include,
    MissingQuery,
    QuantityQuery,
    ReferenceQuery,
    SortKey,
    StringQuery,
    TokenQuery,
)

YEAR_2020 = 1577836800000000
FEB_2020 = 1580515200000000


@pytest.fixture(scope="module")
def parser() -> SearchParser:
    return SearchParser(load_definitions(), SearchLimits(max_values=20))


def one(parser: SearchParser, type_: str, name: str, value: str):  # type: ignore[no-untyped-def]
    query = parser.parse(type_, [(name, value)])
    assert len(query.clauses) == 1
    return query.clauses[0]


def test_token_forms(parser: SearchParser) -> None:
    clause = one(parser, "Observation", "code", "http://loinc.org|1234-5,|x,http://s|,plain")
    assert clause.values == (
        TokenQuery("http://loinc.org", "1234-5"),
        TokenQuery("", "x"),
        TokenQuery("http://s", None),
        TokenQuery(None, "plain"),
    )


def test_escapes(parser: SearchParser) -> None:
    assert split_values(r"a\,b,c") == [r"a\,b", "c"]
    clause = one(parser, "Observation", "code", r"sys\|tem|co\,de\\")
    assert clause.values == (TokenQuery("sys|tem", "co,de\\"),)


def test_date_prefixes_and_partial_dates(parser: SearchParser) -> None:
    clause = one(parser, "Observation", "date", "ge2020-01,2020")
    assert clause.values[0] == DateQuery("ge", YEAR_2020, FEB_2020)
    assert clause.values[1].prefix == "eq"
    assert clause.values[1].start == YEAR_2020
    for bad in ["yesterday", "2020-13", "gt", "2020-02-30"]:
        with pytest.raises(InvalidRequest) as info:
            parser.parse("Observation", [("date", bad)])
        assert info.value.issues[0].expression == ("date",)


def test_number_and_quantity_precision(parser: SearchParser) -> None:
    clause = one(parser, "Observation", "value-quantity", "lt5.4|http://unitsofmeasure.org|mg")
    assert clause.values == (
        QuantityQuery(
            "lt",
            Decimal("5.4"),
            Decimal("5.35"),
            Decimal("5.45"),
            "http://unitsofmeasure.org",
            "mg",
        ),
    )
    bare = one(parser, "Observation", "value-quantity", "100||kg").values[0]
    assert (bare.low, bare.high, bare.system, bare.code) == (
        Decimal("99.5"),
        Decimal("100.5"),
        None,
        "kg",
    )
    for bad in ["abc", "1e400", "NaN", "5|x"]:
        with pytest.raises(InvalidRequest):
            parser.parse("Observation", [("value-quantity", bad)])


def test_string_is_normalized(parser: SearchParser) -> None:
    clause = one(parser, "Patient", "name", "Zoë")
    assert clause.values == (StringQuery("Zoë", "zoe"),)
    assert one(parser, "Patient", "name:exact", "Zoë").modifier == "exact"


def test_reference_forms(parser: SearchParser) -> None:
    clause = one(parser, "Observation", "subject", "Patient/123,http://x.org/fhir/Patient/9,abc")
    assert clause.values == (
        ReferenceQuery("Patient", "123"),
        ReferenceQuery("Patient", "9", "http://x.org/fhir/Patient/9"),
        ReferenceQuery(None, "abc"),
    )
    typed = one(parser, "Observation", "subject:Patient", "abc")
    assert typed.values == (ReferenceQuery("Patient", "abc"),)
    assert one(parser, "Observation", "subject:identifier", "urn:mrn|12").values == (
        TokenQuery("urn:mrn", "12"),
    )
    with pytest.raises(InvalidRequest):
        parser.parse("Observation", [("subject", "Nonsense/1")])


def test_missing_and_bad_modifiers(parser: SearchParser) -> None:
    assert one(parser, "Patient", "birthdate:missing", "true").values == (MissingQuery(True),)
    with pytest.raises(InvalidRequest):
        parser.parse("Patient", [("birthdate:missing", "maybe")])
    with pytest.raises(InvalidRequest) as info:
        parser.parse("Patient", [("birthdate:exact", "2020")])
    assert info.value.issues[0].code == "not-supported"


def test_composite(parser: SearchParser) -> None:
    clause = one(parser, "Observation", "code-value-quantity", "http://loinc.org|8480-6$gt140")
    (value,) = clause.values
    assert isinstance(value, CompositeQuery)
    assert value.parts[0] == TokenQuery("http://loinc.org", "8480-6")
    assert value.parts[1].prefix == "gt"
    with pytest.raises(InvalidRequest):
        parser.parse("Observation", [("code-value-quantity", "onlyone")])


def test_chains_and_has(parser: SearchParser) -> None:
    chained = one(parser, "Observation", "subject:Patient.name", "smith")
    assert chained.chain == (ChainStep("subject", "Patient"),)
    assert (chained.resource_type, chained.param) == ("Patient", "name")
    with pytest.raises(InvalidRequest):  # subject has several target types
        parser.parse("Observation", [("subject.name", "smith")])
    has = one(parser, "Patient", "_has:Observation:patient:code", "1234-5")
    assert has.has == (HasStep("Observation", "patient"),)
    assert has.resource_type == "Observation"
    with pytest.raises(InvalidRequest):
        parser.parse("Patient", [("_has:Observation:code", "x")])
    deep = ".".join(["general-practitioner:Practitioner"] * 5) + ".name"
    with pytest.raises(InvalidRequest) as info:
        parser.parse("Patient", [(deep, "x")])
    assert info.value.issues[0].code == "too-costly"


def test_result_parameters(parser: SearchParser) -> None:
    query = parser.parse(
        "Observation",
        [
            ("_count", "5000"),
            ("_sort", "-date,code"),
            ("_include", "Observation:subject"),
            ("_revinclude:iterate", "Provenance:target"),
            ("_summary", "count"),
            ("_total", "accurate"),
            ("_elements", "code,value"),
        ],
    )
    assert query.count == 1000  # capped
    assert query.sort == (SortKey("date", "date", True), SortKey("code", "token", False))
    assert query.includes == (
        Include("Observation", "subject", None, False, False),
        Include("Provenance", "target", None, True, True),
    )
    assert (query.summary, query.total, query.elements) == ("count", "accurate", ("code", "value"))
    for name, value in [
        ("_count", "-1"),
        ("_count", "abc"),
        ("_sort", "nonsense"),
        ("_include", "Observation"),
        ("_summary", "maybe"),
        ("_total", "all"),
    ]:
        with pytest.raises(InvalidRequest) as info:
            parser.parse("Observation", [(name, value)])
        assert info.value.issues[0].expression == (name,)


def test_unknown_parameters_ignored_or_strict(parser: SearchParser) -> None:
    query = parser.parse("Patient", [("colour", "red"), ("name", "x")])
    assert query.unknown == ("colour",)
    assert len(query.clauses) == 1
    with pytest.raises(InvalidRequest) as info:
        parser.parse("Patient", [("colour", "red")], strict=True)
    assert info.value.issues[0].expression == ("colour",)


def test_too_many_values_is_refused(parser: SearchParser) -> None:
    with pytest.raises(InvalidRequest) as info:
        parser.parse("Patient", [("name", ",".join(["a"] * 10_000))])
    assert info.value.issues[0].code == "too-costly"


def test_system_level_type_parameter(parser: SearchParser) -> None:
    query = parser.parse(None, [("_type", "Patient,Observation"), ("_id", "a")])
    assert query.types == ("Patient", "Observation")
    assert query.clauses[0].param == "_id"
    with pytest.raises(InvalidRequest):
        parser.parse(None, [("_type", "Nope")])
