"""Index rows of whole resources: https://hl7.org/fhir/R4/search.html.

Every SearchParameter of the type is indexed, Resource-level ones included
(https://hl7.org/fhir/R4/search.html#all); composites (https://hl7.org/fhir/R4/search.html#composite)
pair component values within one focus element; ``near``
(https://hl7.org/fhir/R4/location.html#positional) indexes Location.position.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.search import (
    CompositeValue,
    DateValue,
    Indexer,
    IndexRow,
    NearValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
)
from healthbridge.fhir.search.dates import date_values

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@pytest.fixture(scope="module")
def indexer(definitions: Definitions) -> Indexer:
    return Indexer(definitions)


def rows(indexer: Indexer, resource: dict[str, object], param: str) -> list[object]:
    return [row.value for row in indexer.index_rows(resource) if row.param == param]


BLOOD_PRESSURE = {
    "resourceType": "Observation",
    "id": "bp",
    "meta": {
        "lastUpdated": "2020-01-01T10:00:00Z",
        "tag": [{"system": "urn:tags", "code": "t1"}],
        "profile": ["http://hl7.org/fhir/StructureDefinition/bp"],
    },
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2020-01-01",
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 107, "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": Decimal("60.0"), "system": UCUM, "code": "mm[Hg]"},
        },
    ],
}


def test_resource_level_parameters(indexer: Indexer) -> None:
    assert rows(indexer, BLOOD_PRESSURE, "_id") == [TokenValue(None, "bp")]
    assert rows(indexer, BLOOD_PRESSURE, "_tag") == [TokenValue("urn:tags", "t1")]
    assert rows(indexer, BLOOD_PRESSURE, "_lastUpdated") == date_values("2020-01-01T10:00:00Z")
    assert [v.uri for v in rows(indexer, BLOOD_PRESSURE, "_profile")] == [  # type: ignore[attr-defined]
        "http://hl7.org/fhir/StructureDefinition/bp"
    ]


def test_row_kinds_and_simple_values(indexer: Indexer) -> None:
    all_rows = indexer.index_rows(BLOOD_PRESSURE)
    assert IndexRow("status", "token", TokenValue(None, "final")) in all_rows
    assert IndexRow("code", "token", TokenValue(LOINC, "85354-9")) in all_rows
    patient = ReferenceValue(target_type="Patient", target_id="p1")
    assert IndexRow("patient", "reference", patient) in all_rows
    assert IndexRow("subject", "reference", patient) in all_rows
    assert rows(indexer, BLOOD_PRESSURE, "date") == date_values("2020-01-01")
    assert isinstance(rows(indexer, BLOOD_PRESSURE, "date")[0], DateValue)


def test_composite_pairs_values_within_each_component(indexer: Indexer) -> None:
    composites = rows(indexer, BLOOD_PRESSURE, "component-code-value-quantity")
    assert composites == [
        CompositeValue(
            (
                TokenValue(LOINC, "8480-6"),
                QuantityValue(
                    Decimal(107), Decimal("106.5"), Decimal("107.5"), UCUM, "mm[Hg]", None
                ),
            )
        ),
        CompositeValue(
            (
                TokenValue(LOINC, "8462-4"),
                QuantityValue(
                    Decimal("60.0"), Decimal("59.95"), Decimal("60.05"), UCUM, "mm[Hg]", None
                ),
            )
        ),
    ]
    # the Observation itself has no value[x]: no code-value-quantity pairs
    assert rows(indexer, BLOOD_PRESSURE, "code-value-quantity") == []


def test_patient_strings_tokens_and_deceased(indexer: Indexer) -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Zoë", "given": ["Ann"]}],
        "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "a@b"}],
        "deceasedBoolean": True,
    }
    assert rows(indexer, patient, "family") == [StringValue("zoe", "Zoë")]
    assert rows(indexer, patient, "phone") == [TokenValue(None, "555")]
    assert rows(indexer, patient, "email") == [TokenValue(None, "a@b")]
    assert rows(indexer, patient, "deceased") == [TokenValue(None, "true")]


def test_location_near(indexer: Indexer) -> None:
    location = {
        "resourceType": "Location",
        "position": {"latitude": Decimal("42.25"), "longitude": Decimal("-83.69")},
    }
    assert rows(indexer, location, "near") == [NearValue(Decimal("42.25"), Decimal("-83.69"))]


def test_unknown_types_and_parameters_without_expression(indexer: Indexer) -> None:
    assert indexer.index_rows({"resourceType": "NotAType"}) == []
    codes = {p.code for p in indexer.parameters("Patient")}
    assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} <= codes
    assert not {"_text", "_content", "_query", "_filter"} & codes
    assert indexer.parameters("Patient") is indexer.parameters("Patient"), "compiled once"


def test_lazy_rows_agree_with_the_whole_extraction(indexer: Indexer) -> None:
    """Subscription and scope filters read a few parameters through LazyRows: each must give
    exactly what the full extraction gives that parameter, none or some."""
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Zoë", "given": ["Ann"]}],
        "generalPractitioner": [{"reference": "Practitioner/dr1"}],
    }
    for resource in (BLOOD_PRESSURE, patient, {"resourceType": "NotAType"}):
        lazy = indexer.lazy_rows(resource)
        codes = {p.code for p in indexer.parameters(str(resource["resourceType"]))}
        for code in sorted(codes | {"no-such-parameter"}):
            assert lazy.get(code, []) == rows(indexer, resource, code), code
    assert indexer.lazy_rows(patient).get("general-practitioner", []) == [
        ReferenceValue("Practitioner", "dr1")
    ]
