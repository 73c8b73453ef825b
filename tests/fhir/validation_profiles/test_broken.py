"""Deliberately broken copies of conforming examples fail with precise issues
(https://hl7.org/fhir/R4/profiling.html, https://hl7.org/fhir/R4/validation.html#profile).
Each test starts from an example that passes, changes one thing, and checks the severity, the
FHIRPath location and the message of what is reported. Read from ../shared/data."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from healthbridge.fhir.errors import Issue
from healthbridge.fhir.validation.profiles import ProfileValidator, claimed_profiles
from tests.fhir.validation_profiles.conftest import IPS, Packages, describe, errors

pytestmark = pytest.mark.shared_data

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


@pytest.fixture
def example(packages: Packages) -> Any:
    def get(name: str) -> dict[str, Any]:
        return copy.deepcopy(packages.examples[IPS][name])

    return get


def check(validator: ProfileValidator, resource: dict[str, Any], *profiles: str) -> list[Issue]:
    return validator.validate(resource, list(profiles) or claimed_profiles(resource))


def only_error(issues: list[Issue]) -> Issue:
    found = errors(issues)
    assert len(found) == 1, describe(found)
    return found[0]


def test_missing_required_slice(example: Any, profile_validator: ProfileValidator) -> None:
    """IPS Composition requires the problems section (slice sectionProblems, min 1)."""
    composition = example("Composition-composition-minimal.json")
    problems = "11450-4"
    composition["section"] = [
        s for s in composition["section"] if s["code"]["coding"][0]["code"] != problems
    ]
    found = errors(check(profile_validator, composition))
    slice_error = [i for i in found if "sectionProblems" in i.diagnostics]
    assert len(slice_error) == 1, describe(found)
    assert slice_error[0].expression == ("Composition.section",)
    assert slice_error[0].code == "required"
    assert "requires at least 1, found 0" in slice_error[0].diagnostics


def test_wrong_fixed_value(example: Any, profile_validator: ProfileValidator) -> None:
    bundle = example("Bundle-bundle-minimal.json")
    bundle["type"] = "collection"
    issue = only_error(check(profile_validator, bundle))
    assert issue.expression == ("Bundle.type",)
    assert 'value "collection" does not equal the fixed value "document"' in issue.diagnostics


def test_wrong_pattern_code(example: Any, profile_validator: ProfileValidator) -> None:
    composition = example("Composition-composition-minimal.json")
    composition["type"]["coding"][0]["code"] = "11111-1"
    issue = only_error(check(profile_validator, composition))
    assert issue.expression == ("Composition.type",)
    assert "does not match the pattern" in issue.diagnostics
    assert '"code":"60591-5"' in issue.diagnostics


def test_pattern_allows_extra_content(example: Any, profile_validator: ProfileValidator) -> None:
    """A pattern is a partial match: more codings and text are fine (pattern_x_)."""
    composition = example("Composition-composition-minimal.json")
    composition["type"]["coding"].append({"system": "http://example.org", "code": "x"})
    composition["type"]["text"] = "Patient summary"
    assert errors(check(profile_validator, composition)) == []


def test_cardinality_violation(example: Any, profile_validator: ProfileValidator) -> None:
    """IPS Patient.name is 1..* where R4 says 0..*."""
    patient = example("Patient-66033.json")
    del patient["name"]
    issue = only_error(check(profile_validator, patient))
    assert issue.expression == ("Patient.name",)
    assert "Patient.name requires at least 1, found 0" in issue.diagnostics


def test_failed_invariant(example: Any, profile_validator: ProfileValidator) -> None:
    patient = example("Patient-66033.json")
    patient["name"] = [{"use": "official"}]
    issue = only_error(check(profile_validator, patient))
    assert issue.code == "invariant"
    assert issue.expression == ("Patient.name[0]",)
    assert issue.diagnostics.startswith("ips-pat-1: ")


def test_wrong_extension_value_type(example: Any, profile_validator: ProfileValidator) -> None:
    procedure = example("Procedure-procedure-missing-performed.json")
    procedure["_performedDateTime"]["extension"][0] = {"url": DATA_ABSENT, "valueString": "?"}
    issue = only_error(check(profile_validator, procedure))
    where = "Procedure.performed.ofType(dateTime).extension[0].value.ofType(string)"
    assert issue.expression == (where,)
    assert "type string is not allowed for Extension.value[x]: expected code" in issue.diagnostics


def test_required_binding_violation(example: Any, profile_validator: ProfileValidator) -> None:
    procedure = example("Procedure-procedure-missing-performed.json")
    procedure["_performedDateTime"]["extension"][0]["valueCode"] = "forgotten"
    issue = only_error(check(profile_validator, procedure))
    assert issue.code == "code-invalid"
    assert issue.expression == (
        "Procedure.performed.ofType(dateTime).extension[0].value.ofType(code)",
    )
    assert "'forgotten' is not in the required value set" in issue.diagnostics


def test_extensible_binding_is_a_warning(example: Any, profile_validator: ProfileValidator) -> None:
    condition = example("Condition-eumfh-39-07-1.json")
    other = "http://terminology.hl7.org/CodeSystem/condition-category"
    condition["category"] = [{"coding": [{"system": other, "code": "encounter-diagnosis"}]}]
    issues = check(profile_validator, condition)
    assert errors(issues) == []
    warning = [i for i in issues if i.severity == "warning" and "extensible" in i.diagnostics]
    assert [i.expression for i in warning] == [("Condition.category[0]",)]


def test_preferred_binding_is_information(
    example: Any, profile_validator: ProfileValidator
) -> None:
    composition = example("Composition-composition-minimal.json")
    reason = {"coding": [{"system": "http://example.org/reasons", "code": "lost"}]}
    composition["section"][0]["emptyReason"] = reason
    issues = check(profile_validator, composition)
    notes = [i for i in issues if "preferred value set" in i.diagnostics]
    assert [(i.severity, i.expression) for i in notes] == [
        ("information", ("Composition.section[0].emptyReason",))
    ]


def test_wrong_reference_target_type(example: Any, profile_validator: ProfileValidator) -> None:
    composition = example("Composition-composition-minimal.json")
    composition["subject"] = {"reference": "Practitioner/someone"}
    issue = only_error(check(profile_validator, composition))
    assert issue.expression == ("Composition.subject",)
    assert "a reference to a Practitioner is not allowed" in issue.diagnostics
    assert "expected Patient" in issue.diagnostics


def test_bundled_target_of_the_wrong_type(
    example: Any, profile_validator: ProfileValidator
) -> None:
    """Inside a Bundle, references resolve to entries: the Composition's subject is a
    Practitioner entry, so the Composition no longer fits the Bundle's composition slice."""
    bundle = example("Bundle-bundle-minimal.json")
    practitioner = next(
        e for e in bundle["entry"] if e["resource"]["resourceType"] == "Practitioner"
    )
    bundle["entry"][0]["resource"]["subject"] = {"reference": practitioner["fullUrl"]}
    found = errors(check(profile_validator, bundle))
    messages = describe(found)
    assert "slice 'composition' of Bundle.entry requires at least 1, found 0" in messages


def test_unknown_extension_is_a_warning(example: Any, profile_validator: ProfileValidator) -> None:
    patient = example("Patient-66033.json")
    patient["extension"] = [{"url": "http://example.org/fhir/unknown", "valueString": "x"}]
    issues = check(profile_validator, patient)
    assert errors(issues) == []
    unknown = [i for i in issues if "http://example.org/fhir/unknown" in i.diagnostics]
    assert [(i.severity, i.expression) for i in unknown] == [("warning", ("Patient.extension[0]",))]


def test_extension_out_of_context(example: Any, profile_validator: ProfileValidator) -> None:
    """patient-birthPlace may only be used on Patient."""
    composition = example("Composition-composition-minimal.json")
    birth_place = CORE_SD + "patient-birthPlace"
    composition["extension"] = [{"url": birth_place, "valueAddress": {"city": "Paris"}}]
    issue = only_error(check(profile_validator, composition))
    assert issue.expression == ("Composition.extension[0]",)
    assert "is not allowed on Composition" in issue.diagnostics


def test_must_support_coverage(example: Any, profile_validator: ProfileValidator) -> None:
    patient = example("Patient-66033.json")
    patient.pop("telecom", None)
    issues = check(profile_validator, patient)
    absent = [i for i in issues if i.diagnostics.startswith("must-support element Patient.telecom")]
    assert [(i.severity, i.expression) for i in absent] == [("information", ("Patient.telecom",))]


def test_invalid_ucum_code(packages: Packages, profile_validator: ProfileValidator) -> None:
    observation = copy.deepcopy(packages.examples[IPS]["Observation-serum-creatinine-adult.json"])
    observation["valueQuantity"]["code"] = "kgg/dLx"
    issue = only_error(check(profile_validator, observation))
    assert issue.expression == ("Observation.value.ofType(Quantity).code",)
    assert "'kgg/dLx' is not a valid UCUM unit code" in issue.diagnostics


def test_unknown_profile_is_reported(example: Any, profile_validator: ProfileValidator) -> None:
    patient = example("Patient-66033.json")
    issue = only_error(check(profile_validator, patient, "http://example.org/no-such-profile"))
    assert issue.code == "not-supported"
    assert "the profile is unknown" in issue.diagnostics
