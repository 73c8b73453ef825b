"""The _filter parameter (https://hl7.org/fhir/R4/search_filter.html) parsed into clause trees."""

from __future__ import annotations

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import (
    Clause,
    DateQuery,
    FilterAnd,
    FilterExpr,
    FilterNot,
    FilterOr,
    MissingQuery,
    StringQuery,
    TokenQuery,
)


@pytest.fixture(scope="module")
def parser() -> SearchParser:
    return SearchParser(load_definitions())


def tree(parser: SearchParser, resource_type: str, text: str) -> FilterExpr:
    found = parser.parse(resource_type, [("_filter", text)]).filter
    assert found is not None
    return found


def test_spec_examples(parser: SearchParser) -> None:
    contains = tree(parser, "Patient", 'name co "pet"')
    assert isinstance(contains, Clause)
    assert (contains.param, contains.modifier) == ("name", "contains")
    assert contains.values == (StringQuery("pet", "pet"),)

    both = tree(parser, "Patient", 'given eq "peter" and birthdate ge 2014-10-10')
    assert isinstance(both, FilterAnd) and len(both.items) == 2
    given, born = both.items
    assert isinstance(given, Clause) and given.modifier == "equals"
    assert isinstance(born, Clause) and isinstance(born.values[0], DateQuery)
    assert born.values[0].prefix == "ge"

    code = tree(parser, "Observation", "code eq http://loinc.org|1234-5")
    assert isinstance(code, Clause) and code.values == (TokenQuery("http://loinc.org", "1234-5"),)

    chained = tree(parser, "Observation", 'subject:Patient.name co "pet"')
    assert isinstance(chained, Clause) and chained.chain[0].target_type == "Patient"


def test_precedence_not_and_or(parser: SearchParser) -> None:
    found = tree(parser, "Patient", "gender eq male or not (gender eq female) and active eq true")
    assert isinstance(found, FilterOr)
    left, right = found.items
    assert isinstance(left, Clause)
    assert isinstance(right, FilterAnd) and isinstance(right.items[0], FilterNot)


def test_present_string_ne_and_commas_in_values(parser: SearchParser) -> None:
    present = tree(parser, "Patient", "birthdate pr true")
    assert isinstance(present, Clause) and present.values == (MissingQuery(False),)
    ne = tree(parser, "Patient", 'family ne "smith"')
    assert isinstance(ne, FilterNot) and isinstance(ne.item, Clause)
    comma = tree(parser, "Patient", 'family eq "a,b"')
    assert isinstance(comma, Clause) and len(comma.values) == 1  # not split into two values


def test_several_filters_are_anded(parser: SearchParser) -> None:
    query = parser.parse("Patient", [("_filter", "gender eq male"), ("_filter", "active eq true")])
    assert isinstance(query.filter, FilterAnd) and len(query.filter.items) == 2


@pytest.mark.parametrize(
    "text",
    [
        "",
        "name co",
        'name co "pet" and',
        "(gender eq male",
        "gender eq male)",
        "colour eq red",
        "gender gt male",
        "birthdate co 2010",
        "code ss http://snomed.info/sct|1",
        "related[type eq has-component].target pr true",
        "birthdate pr maybe",
        "(" * 40 + "gender eq male" + ")" * 40,
        'name eq "unterminated',
    ],
)
def test_malformed_filters_are_400_naming_filter(parser: SearchParser, text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parser.parse("Patient", [("_filter", text)])
    assert info.value.issues[0].expression == ("_filter",)
