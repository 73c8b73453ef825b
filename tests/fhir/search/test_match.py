"""In-memory search matching: https://hl7.org/fhir/R4/search.html (#token, #string, #date,
#number, #quantity, #reference, #composite, #prefix, #modifiers), on resources indexed by the
real Indexer and queries parsed by the real parser."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.match import matches, rows_by_param
from healthbridge.fhir.search.parse import SearchParser

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "obs1",
    "meta": {"versionId": "1", "lastUpdated": "2021-05-06T07:08:09.123456Z"},
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2020-03-04T10:00:00Z",
    "valueQuantity": {
        "value": 72.5,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    },
}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"family": "Müller", "given": ["Zoë"]}],
    "birthDate": "1980-02-29",
    "identifier": [{"system": "urn:mrn", "value": "12"}],
}


@pytest.fixture(scope="module")
def tools() -> tuple[Indexer, SearchParser]:
    definitions = load_definitions()
    return Indexer(definitions), SearchParser(definitions)


def hit(
    tools: tuple[Indexer, SearchParser], resource: dict[str, Any], name: str, value: str
) -> bool:
    indexer, parser = tools
    query = parser.parse(resource["resourceType"], [(name, value)], strict=True)
    return matches(query.clauses, rows_by_param(indexer.index_rows(resource)))


CASES = [
    ("code", "http://loinc.org|8867-4", True),
    ("code", "8867-4", True),
    ("code", "|8867-4", False),
    ("code", "http://loinc.org|", True),
    ("code", "http://snomed.info/sct|8867-4", False),
    ("code", "1234-5,8867-4", True),
    ("code:not", "8867-4", False),
    ("code:not", "1234-5", True),
    ("code:text", "heart", True),
    ("date", "2020-03-04", True),
    ("date", "2020", True),
    ("date", "eq2020-03-04T10:00:00Z", True),
    ("date", "gt2020-03-03", True),
    ("date", "lt2020-03-04", False),
    ("date", "le2020-03-04", True),
    ("date", "sa2020-03-03", True),
    ("date", "eb2020-03-05", True),
    ("date", "ne2020", False),
    ("value-quantity", "72.5", True),
    ("value-quantity", "72", False),
    ("value-quantity", "gt70", True),
    ("value-quantity", "lt70", False),
    ("value-quantity", "ap70", True),
    ("value-quantity", "72.5|http://unitsofmeasure.org|/min", True),
    ("value-quantity", "72.5||kg", False),
    ("subject", "Patient/p1", True),
    ("subject", "p1", True),
    ("subject", "Patient/p2", False),
    ("subject:Patient", "p1", True),
    ("patient", "p1", True),
    ("code-value-quantity", "http://loinc.org|8867-4$gt70", True),
    ("code-value-quantity", "http://loinc.org|8867-4$lt70", False),
    ("value-string:missing", "true", True),
    ("value-quantity:missing", "true", False),
    ("_id", "obs1", True),
    ("_id", "obs2", False),
    ("_lastUpdated", "ge2021-05-06", True),
    ("_lastUpdated", "lt2021", False),
]


@pytest.mark.parametrize(
    ("name", "value", "expected"), CASES, ids=[f"{n}={v}" for n, v, _ in CASES]
)
def test_observation(
    tools: tuple[Indexer, SearchParser], name: str, value: str, expected: bool
) -> None:
    assert hit(tools, OBSERVATION, name, value) is expected


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("name", "zoe", True),
        ("name", "MÜL", True),
        ("name", "mul", True),
        ("name", "ller", False),
        ("name:contains", "ller", True),
        ("name:exact", "Zoë", True),
        ("name:exact", "zoe", False),
        ("birthdate", "1980-02-29", True),
        ("birthdate", "1980-03", False),
        ("identifier", "urn:mrn|12", True),
        ("identifier", "urn:other|12", False),
    ],
)
def test_patient(
    tools: tuple[Indexer, SearchParser], name: str, value: str, expected: bool
) -> None:
    assert hit(tools, PATIENT, name, value) is expected


def test_clauses_are_anded(tools: tuple[Indexer, SearchParser]) -> None:
    indexer, parser = tools
    rows = rows_by_param(indexer.index_rows(OBSERVATION))
    both = parser.parse("Observation", [("code", "8867-4"), ("date", "2020")])
    assert matches(both.clauses, rows)
    one_fails = parser.parse("Observation", [("code", "8867-4"), ("date", "2019")])
    assert not matches(one_fails.clauses, rows)


def test_chains_are_left_to_the_caller(tools: tuple[Indexer, SearchParser]) -> None:
    indexer, parser = tools
    query = parser.parse("Observation", [("subject:Patient.name", "zoe")])
    with pytest.raises(NotImplementedError):
        matches(query.clauses, rows_by_param(indexer.index_rows(OBSERVATION)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2|http://unitsofmeasure.org|/s", True),  # 72.5/min = 1.208/s: within 1.15-1.25
        ("72.5|http://unitsofmeasure.org|/min", True),
        ("gt1|http://unitsofmeasure.org|/s", True),
        ("lt1|http://unitsofmeasure.org|/s", False),
        ("1.2|http://unitsofmeasure.org|/h", False),  # 1.2/h is far slower
        ("1.2|http://unitsofmeasure.org|mg", False),  # another dimension
        ("1.2||/s", False),  # no UCUM system: compared by code only
    ],
)
def test_ucum_quantities_compare_in_canonical_units(
    tools: tuple[Indexer, SearchParser], value: str, expected: bool
) -> None:
    """search.html#quantity: with the UCUM system, values compare in canonical units."""
    assert hit(tools, OBSERVATION, "value-quantity", value) is expected


LOCATION: dict[str, Any] = {
    "resourceType": "Location",
    "id": "l1",
    "position": {"latitude": 42.256500, "longitude": -83.694710},
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42.2808|-83.7430|10|km", True),  # about 4.9 km away
        ("42.2808|-83.7430|4|km", False),
        ("42.2808|-83.7430|5000|m", True),
        ("42.2808|-83.7430|3.5|[mi_i]", True),  # 5.6 km
        ("42.2808|-83.7430", True),  # the server's default distance (10 km)
        ("-42.2808|-83.7430|100|km", False),  # the other hemisphere
    ],
)
def test_near_finds_positions_within_the_distance(
    tools: tuple[Indexer, SearchParser], value: str, expected: bool
) -> None:
    """location.html#positional: near=latitude|longitude|distance|units."""
    assert hit(tools, LOCATION, "near", value) is expected


@pytest.mark.parametrize(
    "value", ["42.2|", "abc|1", "91|0", "0|181", "1|2|3|kg", "1|2|-5|km", "1|2|3|km|x", "nan|1"]
)
def test_malformed_near_values_are_refused(tools: tuple[Indexer, SearchParser], value: str) -> None:
    _, parser = tools
    with pytest.raises(InvalidRequest) as info:
        parser.parse("Location", [("near", value)])
    assert info.value.issues[0].expression == ("near",)
