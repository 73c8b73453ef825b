"""Structure, cardinality and the JSON representation rules of base validation.

https://hl7.org/fhir/R4/json.html (arrays, choice types, ``resourceType``, contained resources,
``null``/``{}``/``[]``) and https://hl7.org/fhir/R4/conformance-rules.html#cardinality, checked
against the R4 StructureDefinitions (https://hl7.org/fhir/R4/structuredefinition.html).
"""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.errors import Issue
from healthbridge.fhir.validation import Validator
from tests.fhir import samples
from tests.fhir.conftest import only_issue


def issue_at(issues: list[Issue], expression: str) -> Issue:
    found = [i for i in issues if i.expression == (expression,)]
    assert found, f"no issue at {expression}; got {issues}"
    return found[0]


def test_valid_patient_and_observation_pass(validator: Validator) -> None:
    assert validator.validate(samples.patient()) == []
    assert validator.validate(samples.observation(), "Observation") == []
    validator.check(samples.patient(), "Patient")


@pytest.mark.parametrize("value", [None, [], "Patient", 3])
def test_a_resource_must_be_a_json_object(validator: Validator, value: Any) -> None:
    issue = only_issue(validator.validate(value))
    assert (issue.severity, issue.code) == ("error", "structure")


def test_resource_type_is_required(validator: Validator) -> None:
    patient = samples.patient()
    del patient["resourceType"]
    issue = only_issue(validator.validate(patient))
    assert issue.code == "structure"
    assert "resourceType" in issue.diagnostics


@pytest.mark.parametrize("resource_type", ["Patients", "patient", "HumanName", 7])
def test_unknown_resource_type_is_invalid(validator: Validator, resource_type: Any) -> None:
    issue = only_issue(validator.validate({"resourceType": resource_type}))
    assert issue.code == "invalid"
    assert "not an R4 resource type" in issue.diagnostics


@pytest.mark.parametrize("resource_type", ["Resource", "DomainResource"])
def test_abstract_resource_types_are_refused(validator: Validator, resource_type: str) -> None:
    issue = only_issue(validator.validate({"resourceType": resource_type, "id": "a"}))
    assert issue.code == "invalid"
    assert "abstract" in issue.diagnostics


def test_resource_type_must_match_the_expected_type(validator: Validator) -> None:
    issue = only_issue(validator.validate(samples.patient(), "Observation"))
    assert issue.code == "invalid"
    assert "expected resourceType 'Observation', got 'Patient'" in issue.diagnostics


def test_unknown_element(validator: Validator) -> None:
    patient = samples.patient()
    patient["gendre"] = "male"
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("structure", ("Patient.gendre",))
    assert "did you mean 'gender'" in issue.diagnostics


def test_unknown_element_in_a_datatype(validator: Validator) -> None:
    patient = samples.patient()
    patient["name"][0]["first"] = "Peter"
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("structure", ("Patient.name[0].first",))
    assert "HumanName" in issue.diagnostics


def test_resource_type_inside_a_datatype_is_unknown(validator: Validator) -> None:
    patient = samples.patient()
    patient["name"][0]["resourceType"] = "HumanName"
    issue = only_issue(validator.validate(patient))
    assert issue.expression == ("Patient.name[0].resourceType",)


def test_single_valued_element_given_as_array(validator: Validator) -> None:
    patient = samples.patient()
    patient["gender"] = ["male"]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("structure", ("Patient.gender",))
    assert "max cardinality 1" in issue.diagnostics


def test_repeating_element_given_as_object(validator: Validator) -> None:
    patient = samples.patient()
    patient["name"] = {"family": "Chalmers"}
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("structure", ("Patient.name",))
    assert "expected an array" in issue.diagnostics


def test_missing_required_elements(validator: Validator) -> None:
    observation = samples.observation()
    del observation["status"]
    del observation["code"]
    issues = validator.validate(observation)
    assert [(i.code, i.expression) for i in issues] == [
        ("required", ("Observation.status",)),
        ("required", ("Observation.code",)),
    ]


def test_required_element_in_a_backbone_element(validator: Validator) -> None:
    patient = samples.patient()
    patient["link"] = [{"type": "seealso"}]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("required", ("Patient.link[0].other",))


def test_required_choice_element(validator: Validator) -> None:
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    issue = only_issue(validator.validate(request))
    assert (issue.code, issue.expression) == ("required", ("MedicationRequest.medication",))
    assert "medicationCodeableConcept" in issue.diagnostics
    request["medicationReference"] = {"reference": "Medication/1"}
    assert validator.validate(request) == []


def test_a_choice_element_takes_one_type(validator: Validator) -> None:
    observation = samples.observation()
    observation["valueString"] = "72.5 kg"
    issue = only_issue(validator.validate(observation))
    assert (issue.code, issue.expression) == ("structure", ("Observation.value",))
    assert "valueQuantity" in issue.diagnostics and "valueString" in issue.diagnostics


def test_a_choice_element_needs_a_known_type_suffix(validator: Validator) -> None:
    observation = samples.observation()
    del observation["valueQuantity"]
    observation["valueMoney"] = {"value": 1}
    issue = only_issue(validator.validate(observation))
    assert (issue.code, issue.expression) == ("structure", ("Observation.valueMoney",))
    assert "valueQuantity" in issue.diagnostics
    observation = samples.observation()
    observation["value"] = observation.pop("valueQuantity")
    issue = only_issue(validator.validate(observation))
    assert issue.expression == ("Observation.value",)


def test_choice_locations_use_of_type(validator: Validator) -> None:
    observation = samples.observation()
    observation["valueQuantity"]["unit"] = ""
    issue = only_issue(validator.validate(observation))
    assert issue.expression == ("Observation.value.ofType(Quantity).unit",)


def test_nested_backbone_elements_and_content_references(validator: Validator) -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]},
            {"linkId": "2", "type": "group", "item": [{"type": "string", "prefix": "a"}]},
        ],
    }
    issue = only_issue(validator.validate(questionnaire))
    assert (issue.code, issue.expression) == ("required", ("Questionnaire.item[1].item[0].linkId",))
    questionnaire["item"][1]["item"][0] = {"linkId": "2.1", "type": "string", "colour": "red"}
    issue = only_issue(validator.validate(questionnaire))
    assert issue.expression == ("Questionnaire.item[1].item[0].colour",)


def test_bundle_entry_link_content_reference(validator: Validator) -> None:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"link": [{"relation": "self", "url": "http://x/Patient/1"}]}],
    }
    assert validator.validate(bundle) == []
    del bundle["entry"][0]["link"][0]["url"]
    issue = only_issue(validator.validate(bundle))
    assert (issue.code, issue.expression) == ("required", ("Bundle.entry[0].link[0].url",))


def test_bundle_entry_resources_are_validated_as_resources(validator: Validator) -> None:
    patient = samples.patient()
    patient["gender"] = "boy"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": samples.observation()}, {"resource": patient}],
    }
    issue = only_issue(validator.validate(bundle))
    assert (issue.code, issue.expression) == ("code-invalid", ("Bundle.entry[1].resource.gender",))
    bundle["entry"][0]["resource"] = {"id": "no-type"}
    issues = validator.validate(bundle)
    assert issue_at(issues, "Bundle.entry[0].resource").code == "structure"


def test_parameters_resources_are_validated(validator: Validator) -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": {"resourceType": "DomainResource"}}],
    }
    issue = only_issue(validator.validate(parameters))
    assert (issue.code, issue.expression) == ("invalid", ("Parameters.parameter[0].resource",))


def test_contained_resources_are_validated_recursively(validator: Validator) -> None:
    patient = samples.patient()
    practitioner = {"resourceType": "Practitioner", "id": "p1", "name": [{"given": [""]}]}
    patient["contained"] = [practitioner]
    patient["generalPractitioner"] = [{"reference": "#p1"}]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("value", ("Patient.contained[0].name[0].given[0]",))
    patient["contained"] = [{"id": "p1", "name": [{"family": "X"}]}]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("structure", ("Patient.contained[0]",))


def test_extensions_need_a_url(validator: Validator) -> None:
    patient = samples.patient()
    del patient["extension"][0]["url"]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("required", ("Patient.extension[0].url",))


def test_extension_values_are_a_choice(validator: Validator) -> None:
    patient = samples.patient()
    patient["extension"][0]["valueAddress"]["use"] = "moon"
    issue = only_issue(validator.validate(patient))
    assert issue.expression == ("Patient.extension[0].value.ofType(Address).use",)
    patient = samples.patient()
    patient["extension"][0]["valueWidget"] = "x"
    issues = validator.validate(patient)
    assert issue_at(issues, "Patient.extension[0].valueWidget").code == "structure"


def test_modifier_extensions_are_extensions(validator: Validator) -> None:
    patient = samples.patient()
    patient["modifierExtension"] = [{"url": "http://example.org/x", "valueBoolean": "yes"}]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == (
        "value",
        ("Patient.modifierExtension[0].value.ofType(boolean)",),
    )


@pytest.mark.parametrize(
    ("mutate", "expression"),
    [
        (lambda p: p.update(gender=None), "Patient.gender"),
        (lambda p: p["name"][0].update(given=["Peter", None]), "Patient.name[0].given[1]"),
        (lambda p: p.update(managingOrganization=None), "Patient.managingOrganization"),
        (lambda p: p["name"].append(None), "Patient.name[1]"),
        (lambda p: p.update(contained=[None]), "Patient.contained[0]"),
    ],
)
def test_null_is_refused(validator: Validator, mutate: Any, expression: str) -> None:
    patient = samples.patient()
    mutate(patient)
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("structure", (expression,))


@pytest.mark.parametrize(
    ("mutate", "expression", "text"),
    [
        (lambda p: p.update(name=[]), "Patient.name", "empty array"),
        (lambda p: p["name"].append({}), "Patient.name[1]", "empty object"),
        (lambda p: p.update(managingOrganization={}), "Patient.managingOrganization", "empty"),
        (lambda p: p.update(_birthDate={}), "Patient.birthDate", "empty object"),
    ],
)
def test_empty_objects_and_arrays_are_refused(
    validator: Validator, mutate: Any, expression: str, text: str
) -> None:
    patient = samples.patient()
    mutate(patient)
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("structure", (expression,))
    assert text in issue.diagnostics


def test_deep_nesting_is_refused_with_one_issue(validator: Validator) -> None:
    extension: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(100):
        extension = {"url": "http://example.org/node", "extension": [extension] * 50}
    patient = {"resourceType": "Patient", "extension": [extension]}
    issue = only_issue(validator.validate(patient))
    assert issue.code == "structure"
    assert "more than 64 levels deep" in issue.diagnostics
    assert issue.expression[0].startswith("Patient.extension[0].extension[0].extension[0]")


def test_recursion_error_becomes_an_issue(definitions: Any) -> None:
    extension: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(5000):
        extension = {"url": "http://example.org/node", "extension": [extension]}
    validator = Validator(definitions, max_depth=100_000)
    issues = validator.validate({"resourceType": "Patient", "extension": [extension]})
    assert [(i.code, i.diagnostics, i.expression) for i in issues] == [
        ("structure", "the resource is nested too deeply to validate", ("Patient",))
    ]
