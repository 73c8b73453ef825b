"""Invariants checked without FHIRPath: ele-1 (https://hl7.org/fhir/R4/element.html), ext-1
(https://hl7.org/fhir/R4/extensibility.html) and dom-2..dom-5
(https://hl7.org/fhir/R4/domainresource.html#invariants)."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.validation import Validator
from healthbridge.fhir.validation.invariants import unreferenced_contained
from tests.fhir import samples
from tests.fhir.conftest import only_issue


def with_contained(contained: dict[str, Any], reference: str = "#org") -> dict[str, Any]:
    patient = samples.patient()
    patient["contained"] = [contained]
    patient["managingOrganization"] = {"reference": reference}
    return patient


def organization(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": "org", "name": "Acme", **fields}


def test_element_with_only_an_id_breaks_ele_1(validator: Validator) -> None:
    patient = samples.patient()
    patient["name"] = [{"id": "n1"}]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("invariant", ("Patient.name[0]",))
    assert issue.diagnostics.startswith("ele-1")


def test_extension_with_value_and_extensions_breaks_ext_1(validator: Validator) -> None:
    patient = samples.patient()
    patient["extension"][0]["extension"] = [{"url": "part", "valueString": "x"}]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("invariant", ("Patient.extension[0]",))
    assert issue.diagnostics.startswith("ext-1")


def test_extension_without_value_or_extensions_breaks_ext_1(validator: Validator) -> None:
    patient = samples.patient()
    patient["name"][0]["extension"] = [{"url": "http://example.org/empty"}]
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("invariant", ("Patient.name[0].extension[0]",))


def test_complex_extension_passes(validator: Validator) -> None:
    patient = samples.patient()
    patient["extension"] = [
        {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [{"url": "text", "valueString": "Mixed"}],
        }
    ]
    assert validator.validate(patient) == []


def test_referenced_contained_resource_passes(validator: Validator) -> None:
    assert validator.validate(with_contained(organization())) == []


def test_contained_resources_may_not_contain_resources(validator: Validator) -> None:
    nested = organization(contained=[{"resourceType": "Endpoint", "id": "e"}])
    issues = validator.validate(with_contained(nested))
    found = [i for i in issues if i.diagnostics.startswith("dom-2")]
    assert [(i.code, i.expression) for i in found] == [
        ("invariant", ("Patient.contained[0].contained",))
    ]


def test_unreferenced_contained_resource_breaks_dom_3(validator: Validator) -> None:
    issue = only_issue(validator.validate(with_contained(organization(), "Organization/1")))
    assert (issue.code, issue.expression) == ("invariant", ("Patient.contained[0]",))
    assert issue.diagnostics.startswith("dom-3")


def test_contained_resource_referring_to_its_container_passes(validator: Validator) -> None:
    person = {
        "resourceType": "RelatedPerson",
        "id": "rp",
        "patient": {"reference": "#"},
    }
    patient = samples.patient()
    patient["contained"] = [person]
    assert validator.validate(patient) == []


def test_contained_resource_referenced_by_canonical_passes(validator: Validator) -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "contained": [
            {
                "resourceType": "ValueSet",
                "id": "yesno",
                "status": "active",
                "compose": {"include": [{"system": "http://example.org/yn"}]},
            }
        ],
        "item": [{"linkId": "1", "type": "choice", "answerValueSet": "#yesno"}],
    }
    assert validator.validate(questionnaire) == []


@pytest.mark.parametrize(
    ("meta", "key", "expression"),
    [
        ({"versionId": "1"}, "dom-4", "Patient.contained[0].meta.versionId"),
        ({"lastUpdated": "2020-01-01T00:00:00Z"}, "dom-4", "Patient.contained[0].meta.lastUpdated"),
        ({"security": [{"code": "R"}]}, "dom-5", "Patient.contained[0].meta.security"),
    ],
)
def test_contained_meta_rules(
    validator: Validator, meta: dict[str, Any], key: str, expression: str
) -> None:
    issue = only_issue(validator.validate(with_contained(organization(meta=meta))))
    assert (issue.code, issue.expression) == ("invariant", (expression,))
    assert issue.diagnostics.startswith(key)


def test_contained_narrative_is_only_a_warning(validator: Validator) -> None:
    """R4 removed STU3's dom-1; narrative in a contained resource is allowed but discouraged."""
    text = {"status": "generated", "div": samples.XHTML_DIV}
    patient = with_contained(organization(text=text))
    issue = only_issue(validator.validate(patient))
    assert (issue.severity, issue.expression) == ("warning", ("Patient.contained[0].text",))
    validator.check(patient)  # warnings alone do not fail


def test_check_raises_with_errors_and_warnings(validator: Validator) -> None:
    text = {"status": "generated", "div": samples.XHTML_DIV}
    patient = with_contained(organization(text=text, meta={"versionId": "3"}))
    with pytest.raises(InvalidRequest) as raised:
        validator.check(patient, "Patient")
    severities = sorted(issue.severity for issue in raised.value.issues)
    assert severities == ["error", "warning"]
    assert "not valid R4" in str(raised.value)


def test_a_string_that_merely_contains_the_reference_does_not_count(validator: Validator) -> None:
    patient = with_contained(organization(), "Organization/1")
    patient["name"][0]["text"] = 'see "#org" and x"#org'
    issue = only_issue(validator.validate(patient))
    assert issue.diagnostics.startswith("dom-3")


def test_dom_3_without_a_json_encoding() -> None:
    """Values that cannot be encoded fall back to walking the objects."""
    patient = with_contained(organization())
    patient["unencodable"] = object()
    assert unreferenced_contained(patient) == []
    patient["managingOrganization"] = {"reference": "Organization/1"}
    assert [v.key for v in unreferenced_contained(patient)] == ["dom-3"]
