"""Real material must pass base validation (https://hl7.org/fhir/R4/validation.html): every
resource of the spec's examples package (https://hl7.org/fhir/R4/downloads.html) and every
resource of 100 Synthea patients. Read from ../shared/data; skipped when it is missing."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.fhir.validation import Validator
from tests.fhir.conftest import errors, package_resources, shared_file

pytestmark = pytest.mark.shared_data

#: Spec examples that break a rule of the spec itself, with the reason (checked below: each one
#: must still fail for that reason, so the list cannot go stale).
INVALID_EXAMPLES = {
    "Questionnaire-qs1.json": "Questionnaire.item.linkId is required",
    "ImplementationGuide-fhir.json": "ImplementationGuide.name is required",
    "ig-r4.json": "ImplementationGuide.name is required",
    # an empty <div> (txt-2: the narrative SHALL have some non-whitespace content)
    "ActivityDefinition-blood-tubes-supply.json": "txt-2",
    "ActivityDefinition-heart-valve-replacement.json": "txt-2",
    "EventDefinition-example.json": "txt-2",
    "List-prognosis.json": "txt-2",
    "Questionnaire-zika-virus-exposure-assessment.json": "txt-2",
    # the id has 68 characters; ids are at most 64
    "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": (
        "is not a valid id"
    ),
    **{
        f"SearchParameter-{name}.json": "SearchParameter.base is required"
        for name in (
            "codesystem-extensions-CodeSystem-author",
            "codesystem-extensions-CodeSystem-effective",
            "codesystem-extensions-CodeSystem-end",
            "codesystem-extensions-CodeSystem-keyword",
            "codesystem-extensions-CodeSystem-workflow",
            "valueset-extensions-ValueSet-author",
            "valueset-extensions-ValueSet-effective",
            "valueset-extensions-ValueSet-end",
            "valueset-extensions-ValueSet-keyword",
            "valueset-extensions-ValueSet-workflow",
        )
    },
}


@pytest.fixture(scope="module")
def example_errors(validator: Validator) -> dict[str, list[str]]:
    """Error messages per example file name (an empty list when the example is valid)."""
    path = shared_file("fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz")
    found: dict[str, list[str]] = {}
    for name, raw in package_resources(path):
        resource = jsonformat.loads(raw)
        if isinstance(resource, dict) and "resourceType" in resource:  # not package.json
            issues = errors(validator.validate(resource))
            found[name] = [f"{i.expression[0]}: {i.diagnostics}" for i in issues]
    return found


def test_every_spec_example_passes(example_errors: dict[str, list[str]]) -> None:
    assert len(example_errors) > 5000
    failures = {
        name: messages
        for name, messages in example_errors.items()
        if messages and name not in INVALID_EXAMPLES
    }
    assert failures == {}, json.dumps(failures, indent=1)[:5000]


def test_the_invalid_examples_fail_for_the_documented_reason(
    example_errors: dict[str, list[str]],
) -> None:
    for name, reason in INVALID_EXAMPLES.items():
        messages = example_errors[name]
        assert any(reason in m for m in messages), (name, messages)


def synthea_resources() -> Iterator[Any]:
    path = shared_file("synthea/synthea-r4-100-patients.tar.gz")
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None or not member.name.endswith(".json"):
                continue
            bundle = jsonformat.loads(handle.read())
            for entry in bundle["entry"]:
                yield entry["resource"]


def test_every_synthea_resource_passes(validator: Validator) -> None:
    failures: list[str] = []
    count = 0
    for resource in synthea_resources():
        count += 1
        for issue in validator.validate(resource):
            failures.append(f"{resource['resourceType']}/{resource.get('id')}: {issue}")
    assert count > 28000
    assert failures == [], "\n".join(failures[:50])
