"""Required terminology bindings: https://hl7.org/fhir/R4/terminologies.html#required
("the concept in this element SHALL be from the specified value set")."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.validation import Validator
from healthbridge.fhir.validation.bindings import binding_check
from tests.fhir import samples
from tests.fhir.conftest import only_issue

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def condition(clinical_status: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": clinical_status,
        "code": {"text": "Headache"},
        "subject": {"reference": "Patient/1"},
    }


def test_code_must_be_in_the_value_set(validator: Validator) -> None:
    patient = samples.patient()
    patient["gender"] = "Male"
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("code-invalid", ("Patient.gender",))
    assert "administrative-gender" in issue.diagnostics
    assert "female, male, other, unknown" in issue.diagnostics


def test_codes_inside_datatypes_and_backbones(validator: Validator) -> None:
    observation = samples.observation()
    observation["valueQuantity"]["comparator"] = "<<"
    issue = only_issue(validator.validate(observation))
    assert issue.code == "code-invalid"
    assert issue.expression == ("Observation.value.ofType(Quantity).comparator",)
    patient = samples.patient()
    patient["name"][0]["use"] = "nickname"
    assert validator.validate(patient) == []
    patient["name"][0]["use"] = "alias"
    issue = only_issue(validator.validate(patient))
    assert issue.expression == ("Patient.name[0].use",)


def test_repeating_codes_are_each_checked(validator: Validator) -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": "Patient/1"},
        "category": ["food", "sweets", "medication"],
    }
    issue = only_issue(validator.validate(allergy))
    assert (issue.code, issue.expression) == ("code-invalid", ("AllergyIntolerance.category[1]",))


def test_codeable_concept_needs_one_coding_from_the_value_set(validator: Validator) -> None:
    good = {"system": CLINICAL, "code": "active"}
    other = {"system": "http://snomed.info/sct", "code": "55561003"}
    assert validator.validate(condition({"coding": [other, good]})) == []
    issue = only_issue(validator.validate(condition({"coding": [other]})))
    assert (issue.code, issue.expression) == ("code-invalid", ("Condition.clinicalStatus",))
    wrong_system = {"system": "http://example.org", "code": "active"}
    issue = only_issue(validator.validate(condition({"coding": [wrong_system]})))
    assert issue.code == "code-invalid"


def test_text_only_concept_does_not_meet_a_required_binding(validator: Validator) -> None:
    issue = only_issue(validator.validate(condition({"text": "active"})))
    assert (issue.code, issue.expression) == ("code-invalid", ("Condition.clinicalStatus",))


def test_malformed_codings_are_reported_once_and_do_not_crash(validator: Validator) -> None:
    concept = {"coding": [{"system": [CLINICAL], "code": "active"}]}
    issues = validator.validate(condition(concept))
    assert [(i.code, i.expression) for i in issues] == [
        ("structure", ("Condition.clinicalStatus.coding[0].system",)),
        ("code-invalid", ("Condition.clinicalStatus",)),
    ]


def test_coding_check(definitions: Definitions) -> None:
    """No base R4 element binds a bare Coding as required; profiles do, so it is ready."""
    value_set = definitions.value_set("http://hl7.org/fhir/ValueSet/administrative-gender")
    check = binding_check("Coding", value_set)
    assert check is not None
    assert check({"system": "http://hl7.org/fhir/administrative-gender", "code": "male"}) is None
    message = check({"code": "male"})
    assert message is not None and "None|male" in message


def test_value_sets_that_were_not_expanded_are_skipped(validator: Validator) -> None:
    patient = samples.patient()
    patient["photo"] = [{"contentType": "application/x-made-up", "url": "http://x/p.png"}]
    assert validator.validate(patient) == []


@pytest.mark.parametrize("url", ["http://hl7.org/fhir/ValueSet/mimetypes", "http://nowhere/vs"])
def test_no_check_without_codes(definitions: Definitions, url: str) -> None:
    assert binding_check("code", definitions.value_set(url)) is None
