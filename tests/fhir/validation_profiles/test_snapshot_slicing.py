"""Snapshot generation from a differential (https://hl7.org/fhir/R4/profiling.html#snapshot),
slicing rules closed / ordered with a ``resolve()`` discriminator
(https://hl7.org/fhir/R4/profiling.html#discriminator) and invariants the FHIRPath engine cannot
evaluate (reported, never fatal). Read from ../shared/data."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.validation.profiles import ProfileValidator
from tests.fhir.validation_profiles.conftest import IPS, Packages, describe, errors

pytestmark = pytest.mark.shared_data

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
IPS_SD = "http://hl7.org/fhir/uv/ips/StructureDefinition/"
STRICT = "http://example.org/fhir/StructureDefinition/strict-patient"


def _validator(
    definitions: Definitions, packages: Packages, extra: dict[str, Any]
) -> ProfileValidator:
    def lookup(url: str) -> dict[str, Any] | None:
        return extra.get(url) or packages.structures.get(url)

    return ProfileValidator(definitions, lookup, packages.terminology)


def _without_snapshot(packages: Packages, url: str) -> dict[str, Any]:
    definition = copy.deepcopy(packages.structures[url])
    del definition["snapshot"]
    return definition


def test_differential_only_profile_validates_like_its_snapshot(
    definitions: Definitions, packages: Packages
) -> None:
    url = IPS_SD + "Composition-uv-ips"
    validator = _validator(definitions, packages, {url: _without_snapshot(packages, url)})
    composition = copy.deepcopy(packages.examples[IPS]["Composition-composition-minimal.json"])
    assert errors(validator.validate(composition, [url])) == []
    composition["section"] = composition["section"][1:]  # drop the problems section
    composition["type"]["coding"][0]["code"] = "11111-1"
    found = describe(errors(validator.validate(composition, [url])))
    assert "slice 'sectionProblems' of Composition.section requires at least 1" in found
    assert "does not match the pattern" in found


def _strict_patient(expression: str) -> dict[str, Any]:
    constraint = {
        "key": "strict-1",
        "severity": "error",
        "human": "strict",
        "expression": expression,
    }
    return {
        "resourceType": "StructureDefinition",
        "url": STRICT,
        "name": "StrictPatient",
        "type": "Patient",
        "kind": "resource",
        "derivation": "constraint",
        "baseDefinition": IPS_SD + "Patient-uv-ips",
        "differential": {
            "element": [
                {"id": "Patient", "path": "Patient", "constraint": [constraint]},
                {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
                {"id": "Patient.name.family", "path": "Patient.name.family", "min": 1},
            ]
        },
    }


def test_generated_snapshot_inherits_and_adds(definitions: Definitions, packages: Packages) -> None:
    """A profile on a profile: the IPS rules stay, the differential's are added, including an
    element inside a datatype the base snapshot does not expand (HumanName.family)."""
    validator = _validator(definitions, packages, {STRICT: _strict_patient("gender.exists()")})
    patient = copy.deepcopy(packages.examples[IPS]["Patient-66033.json"])
    assert errors(validator.validate(patient, [STRICT])) == []
    del patient["birthDate"]
    del patient["gender"]
    patient["name"][0].pop("family")
    found = errors(validator.validate(patient, [STRICT]))
    assert sorted((i.expression[0], i.diagnostics.split(" (")[0]) for i in found) == [
        ("Patient", "strict-1: strict"),
        ("Patient.birthDate", "Patient.birthDate requires at least 1, found 0"),
        ("Patient.name[0].family", "Patient.name.family requires at least 1, found 0"),
    ]


def test_invariant_the_engine_cannot_evaluate_is_a_warning(
    definitions: Definitions, packages: Packages
) -> None:
    strict = _strict_patient("name.noSuchFunction()")
    validator = _validator(definitions, packages, {STRICT: strict})
    patient = copy.deepcopy(packages.examples[IPS]["Patient-66033.json"])
    issues = validator.validate(patient, [STRICT])
    assert errors(issues) == []
    warned = [i for i in issues if "strict-1 could not be evaluated" in i.diagnostics]
    assert [i.severity for i in warned] == ["warning"]


def test_profile_whose_base_is_unknown_cannot_be_validated(
    definitions: Definitions, packages: Packages
) -> None:
    strict = _strict_patient("true") | {"baseDefinition": "http://example.org/unknown"}
    validator = _validator(definitions, packages, {STRICT: strict})
    patient = copy.deepcopy(packages.examples[IPS]["Patient-66033.json"])
    (issue,) = validator.validate(patient, [STRICT])
    assert issue.severity == "error"
    assert "no usable snapshot" in issue.diagnostics
    assert "http://example.org/unknown is unknown" in issue.diagnostics


def _fixed_code(packages: Packages, name: str) -> dict[str, Any]:
    for element in packages.structures[CORE_SD + name]["snapshot"]["element"]:
        if element["id"] == "Observation.code":
            return dict(element.get("fixedCodeableConcept") or element["patternCodeableConcept"])
    raise AssertionError(name)


def _lipid_panel(packages: Packages, codes: list[dict[str, Any]]) -> dict[str, Any]:
    contained = [
        {"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": code}
        for i, code in enumerate(codes)
    ]
    return {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "lipids"},
        "contained": contained,
        "result": [{"reference": f"#o{i}"} for i in range(len(codes))],
    }


def _slicing_errors(validator: ProfileValidator, report: dict[str, Any]) -> list[tuple[str, str]]:
    issues = errors(validator.validate(report, [CORE_SD + "lipidprofile"]))
    return [
        (i.expression[0], i.diagnostics.split(":")[0]) for i in issues if "slic" in i.diagnostics
    ]


def test_ordered_closed_slicing_through_resolve(
    profile_validator: ProfileValidator, packages: Packages
) -> None:
    """lipidprofile slices DiagnosticReport.result by ``resolve().code``, ordered and closed."""
    codes = [_fixed_code(packages, n) for n in ("cholesterol", "triglyceride", "hdlcholesterol")]
    assert _slicing_errors(profile_validator, _lipid_panel(packages, codes)) == []
    swapped = _lipid_panel(packages, [codes[1], codes[0], codes[2]])
    assert _slicing_errors(profile_validator, swapped) == [
        ("DiagnosticReport.result[1]", "slice Cholesterol is out of order")
    ]
    glucose = {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}
    extra = _lipid_panel(packages, [*codes, glucose])
    assert _slicing_errors(profile_validator, extra) == [
        (
            "DiagnosticReport.result[3]",
            "matches none of the slices of DiagnosticReport.result, and the slicing is closed "
            "(profile http",
        )
    ]


def test_closed_type_slicing(packages: Packages, profile_validator: ProfileValidator) -> None:
    """bodyweight allows only valueQuantity (value[x] sliced by type, closed)."""
    weight = {
        "resourceType": "Observation",
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
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/1"},
        "effectiveDateTime": "2020-01-01",
        "valueQuantity": {
            "value": 70,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
    assert errors(profile_validator.validate(weight, [CORE_SD + "bodyweight"])) == []
    del weight["valueQuantity"]
    weight["valueString"] = "seventy"
    found = errors(profile_validator.validate(weight, [CORE_SD + "bodyweight"]))
    where = {i.expression[0] for i in found}
    assert where == {"Observation.value.ofType(string)"}, describe(found)
    assert any("slicing is closed" in i.diagnostics for i in found)
