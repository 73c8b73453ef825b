"""Small valid R4 resources for tests (each call returns a fresh copy to mutate).

Shapes follow https://hl7.org/fhir/R4/patient.html and https://hl7.org/fhir/R4/observation.html.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

XHTML_DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter James <b>Chalmers</b></p></div>'


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "example",
        "meta": {"versionId": "1", "lastUpdated": "2023-01-01T10:00:00.000Z"},
        "text": {"status": "generated", "div": XHTML_DIV},
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "Boston", "country": "US"},
            }
        ],
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
        "active": True,
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1974-12-25T14:35:45-05:00",
                }
            ]
        },
        "deceasedBoolean": False,
        "address": [{"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
        "contact": [{"relationship": [{"coding": [{"code": "N"}]}], "gender": "female"}],
        "managingOrganization": {"reference": "Organization/1"},
    }


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "f001",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Weight"},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2013-04-02T09:30:10+01:00",
        "issued": "2013-04-03T15:30:10.000+01:00",
        "valueQuantity": {
            "value": Decimal("72.50"),
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
        "referenceRange": [{"low": {"value": 60, "unit": "kg"}, "text": "normal"}],
    }
