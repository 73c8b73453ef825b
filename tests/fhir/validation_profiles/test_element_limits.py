"""Element value limits and maximum value sets from profiles:
``minValue[x]`` / ``maxValue[x]`` / ``maxLength``
(https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.minValue_x_) and
the binding extension ``maxValueSet``
(https://hl7.org/fhir/R4/extension-elementdefinition-maxvalueset.html). Synthetic
differential-only profiles on the core types (completed by the snapshot generator), and the
``maxValueSet`` that IPS puts on ``Patient.language``. Read from ../shared/data."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import Issue
from healthbridge.fhir.validation.profiles import CodeCheck, ProfileValidator
from tests.fhir.validation_profiles.conftest import IPS, Packages, describe, errors

pytestmark = pytest.mark.shared_data

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
IPS_PATIENT = "http://hl7.org/fhir/uv/ips/StructureDefinition/Patient-uv-ips"
EXAMPLE = "http://example.org/fhir/StructureDefinition/"
UCUM = "http://unitsofmeasure.org"
MAX_VS = "http://hl7.org/fhir/StructureDefinition/elementdefinition-maxValueSet"
ALL_LANGUAGES = "http://hl7.org/fhir/ValueSet/all-languages"


def _profile(name: str, rtype: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": EXAMPLE + name,
        "name": name,
        "type": rtype,
        "kind": "resource",
        "derivation": "constraint",
        "baseDefinition": CORE_SD + rtype,
        "differential": {"element": [{"id": e["path"], **e} for e in elements]},
    }


def _kg(value: float | int, code: str = "kg", system: str = UCUM) -> dict[str, Any]:
    return {"value": value, "system": system, "code": code}


PROFILES = [
    _profile(
        "limited-patient",
        "Patient",
        [
            {"path": "Patient.birthDate", "minValueDate": "1900-01-01"},
            {"path": "Patient.multipleBirth[x]", "minValueInteger": 1, "maxValueInteger": 9},
            {"path": "Patient.name.text", "maxLength": 10},
            {"path": "Patient.gender.value", "maxLength": 4},
        ],
    ),
    _profile(
        "limited-observation",
        "Observation",
        [
            {
                "path": "Observation.value[x]",
                "minValueQuantity": _kg(1),
                "maxValueQuantity": _kg(300),
            },
            {"path": "Observation.issued", "maxValueInstant": "2030-01-01T00:00:00Z"},
        ],
    ),
    _profile(
        "limited-location",
        "Location",
        [{"path": "Location.position.latitude", "minValueDecimal": -90, "maxValueDecimal": 90.0}],
    ),
    _profile(
        "limited-role",
        "PractitionerRole",
        [
            {
                "path": "PractitionerRole.availableTime.availableStartTime",
                "minValueTime": "08:00:00",
            }
        ],
    ),
    _profile(
        "bounded-marital",
        "Patient",
        [
            {
                "path": "Patient.maritalStatus",
                "binding": {
                    "extension": [{"url": MAX_VS, "valueCanonical": "http://example.org/vs/max"}],
                    "strength": "extensible",
                    "valueSet": "http://hl7.org/fhir/ValueSet/marital-status",
                },
            }
        ],
    ),
]

V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


def _codes(packages: Packages) -> CodeCheck:
    """The packages' terminology, plus a small maximum value set and an all-languages answer
    (BCP-47 is a grammar, not a list: 'xx-!!' is not a language tag, 'en-US' is)."""

    def check(value_set: str, system: str | None, code: str) -> bool | None:
        if value_set == "http://example.org/vs/max":
            return (
                None if system is None else (system, code) in {(V3_MARITAL, "M"), (V3_MARITAL, "S")}
            )
        if value_set == ALL_LANGUAGES:
            return code != "xx-!!"
        return packages.terminology(value_set, system, code)

    return check


@pytest.fixture(scope="module")
def limited(definitions: Definitions, packages: Packages) -> ProfileValidator:
    extra = {p["url"]: p for p in PROFILES}

    def lookup(url: str) -> dict[str, Any] | None:
        return extra.get(url) or packages.structures.get(url)

    return ProfileValidator(definitions, lookup, _codes(packages))


def _found(issues: list[Issue]) -> list[tuple[str, str]]:
    return sorted((i.expression[0], i.diagnostics.split(" (profile")[0]) for i in errors(issues))


def test_dates_integers_and_lengths_within_limits_pass(limited: ProfileValidator) -> None:
    patient = {
        "resourceType": "Patient",
        "birthDate": "1900",  # the whole year: it cannot be told to be before 1900-01-01
        "multipleBirthInteger": 9,
        "name": [{"text": "Ann Smith"}],
        "gender": "male",
    }
    assert errors(limited.validate(patient, [EXAMPLE + "limited-patient"])) == []


def test_values_outside_limits_are_errors_at_their_location(limited: ProfileValidator) -> None:
    patient = {
        "resourceType": "Patient",
        "birthDate": "1899-12",
        "multipleBirthInteger": 10,
        "name": [{"text": "Ann"}, {"text": "Annabelle Smith"}],
        "gender": "female",
    }
    assert _found(limited.validate(patient, [EXAMPLE + "limited-patient"])) == [
        (
            "Patient.birthDate",
            "Patient.birthDate: the value 1899-12 is below the minValue 1900-01-01",
        ),
        (
            "Patient.gender",
            "Patient.gender.value: the value is 6 characters long, more than the maxLength 4",
        ),
        (
            "Patient.multipleBirth.ofType(integer)",
            "Patient.multipleBirth[x]: the value 10 is above the maxValue 9",
        ),
        (
            "Patient.name[1].text",
            "Patient.name.text: the value is 15 characters long, more than the maxLength 10",
        ),
    ]
    patient["multipleBirthInteger"] = 0
    found = _found(limited.validate(patient, [EXAMPLE + "limited-patient"]))
    assert (
        "Patient.multipleBirth.ofType(integer)",
        "Patient.multipleBirth[x]: the value 0 is below the minValue 1",
    ) in found


def _observation(**values: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "w"}, **values}


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (_kg(300), None),
        (_kg(250000, "g"), None),  # 250 kg in canonical units
        (_kg(400000, "g"), "is above the maxValue 300 kg"),
        (_kg(0.5), "is below the minValue 1 kg"),
        (_kg(999, "[lb_av]"), "is above the maxValue 300 kg"),  # 453 kg
        (_kg(5, "mmol/L"), None),  # not comparable with kg: not compared
        (_kg(999, "kg", "http://example.org/units"), None),  # not UCUM, other system
    ],
)
def test_quantities_compare_in_canonical_ucum_units(
    limited: ProfileValidator, quantity: dict[str, Any], expected: str | None
) -> None:
    issues = limited.validate(
        _observation(valueQuantity=quantity), [EXAMPLE + "limited-observation"]
    )
    found = _found(issues)
    if expected is None:
        assert found == [], describe(issues)
    else:
        assert [where for where, _ in found] == ["Observation.value.ofType(Quantity)"]
        assert expected in found[0][1]


def test_limits_of_another_kind_are_not_applied(limited: ProfileValidator) -> None:
    """maxValueQuantity says nothing about a valueString or a valueInteger."""
    url = EXAMPLE + "limited-observation"
    assert errors(limited.validate(_observation(valueString="999 kg"), [url])) == []
    assert errors(limited.validate(_observation(valueInteger=999), [url])) == []


def test_instant_decimal_and_time_limits(limited: ProfileValidator) -> None:
    late = _observation(issued="2031-05-01T10:00:00+02:00")
    assert _found(limited.validate(late, [EXAMPLE + "limited-observation"])) == [
        (
            "Observation.issued",
            "Observation.issued: the value 2031-05-01T10:00:00+02:00 is above the maxValue "
            "2030-01-01T00:00:00Z",
        )
    ]
    position: dict[str, Any] = {"longitude": 0, "latitude": 90.5}
    location = {"resourceType": "Location", "position": position}
    assert _found(limited.validate(location, [EXAMPLE + "limited-location"])) == [
        (
            "Location.position.latitude",
            "Location.position.latitude: the value 90.5 is above the maxValue 90.0",
        )
    ]
    position["latitude"] = -90
    assert errors(limited.validate(location, [EXAMPLE + "limited-location"])) == []
    role = {
        "resourceType": "PractitionerRole",
        "availableTime": [{"availableStartTime": "07:30:00"}],
    }
    assert _found(limited.validate(role, [EXAMPLE + "limited-role"])) == [
        (
            "PractitionerRole.availableTime[0].availableStartTime",
            "PractitionerRole.availableTime.availableStartTime: the value 07:30:00 is below the "
            "minValue 08:00:00",
        )
    ]


def _marital(code: str, system: str = V3_MARITAL) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "maritalStatus": {"coding": [{"system": system, "code": code}]},
    }


def test_max_value_set_bounds_an_extensible_binding(limited: ProfileValidator) -> None:
    url = EXAMPLE + "bounded-marital"
    assert errors(limited.validate(_marital("M"), [url])) == []
    # "D" (divorced) is in the extensible value set but not in the maximum one
    (issue,) = errors(limited.validate(_marital("D"), [url]))
    assert issue.expression == ("Patient.maritalStatus",)
    assert issue.code == "code-invalid"
    assert issue.diagnostics == (
        f"Patient.maritalStatus: coding '{V3_MARITAL}|D' is not in the maximum value set "
        "http://example.org/vs/max"
    )
    # a code from another system: the extensible binding warns, the maximum value set refuses
    issues = limited.validate(_marital("X", "http://example.org/cs"), [url])
    assert [i.severity for i in issues if i.expression == ("Patient.maritalStatus",)] == [
        "warning",
        "error",
    ]


def test_ips_language_max_value_set(
    limited: ProfileValidator, definitions: Definitions, packages: Packages
) -> None:
    """IPS binds Patient.language (preferred) with the maximum value set all-languages: a code
    that is not a language is an error despite the preferred strength; where membership cannot
    be decided (no terminology for BCP-47), the validator says so and passes the code."""
    patient = copy.deepcopy(packages.examples[IPS]["Patient-66033.json"])
    patient["language"] = "en-US"
    assert errors(limited.validate(patient, [IPS_PATIENT])) == []
    patient["language"] = "xx-!!"
    (issue,) = errors(limited.validate(patient, [IPS_PATIENT]))
    assert issue.expression == ("Patient.language",)
    assert f"is not in the maximum value set {ALL_LANGUAGES}" in issue.diagnostics
    undecided = ProfileValidator(definitions, packages.structures.get, packages.terminology)
    issues = undecided.validate(patient, [IPS_PATIENT])
    assert errors(issues) == []
    notes = [i.diagnostics for i in issues if i.expression == ("Patient.language",)]
    assert {i.severity for i in issues if i.expression == ("Patient.language",)} == {"information"}
    assert (
        f"Patient.language: cannot check 'xx-!!' against the maximum value set {ALL_LANGUAGES}"
        in notes
    )
