"""The Validator API (https://hl7.org/fhir/R4/validation.html): issues carry severity, an
issue-type code (https://hl7.org/fhir/R4/valueset-issue-type.html), actionable diagnostics and a
FHIRPath location; ``check`` raises InvalidRequest; odd input never raises anything else."""

from __future__ import annotations

import copy
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.outcome import operation_outcome
from healthbridge.fhir.validation import Validator
from tests.fhir import samples

ISSUE_TYPES = {"structure", "required", "value", "invariant", "code-invalid", "invalid"}


def test_check_passes_silently_for_a_valid_resource(validator: Validator) -> None:
    validator.check(samples.observation(), "Observation")


def test_check_raises_invalid_request_with_every_issue(validator: Validator) -> None:
    patient = samples.patient()
    patient["gender"] = "M"
    patient["birthDate"] = "1974-13-01"
    with pytest.raises(InvalidRequest) as raised:
        validator.check(patient, "Patient")
    issues = raised.value.issues
    assert [(i.code, i.expression) for i in issues] == [
        ("code-invalid", ("Patient.gender",)),
        ("value", ("Patient.birthDate",)),
    ]
    outcome = operation_outcome(issues)
    assert outcome["issue"][0]["expression"] == ["Patient.gender"]


def test_validation_does_not_change_the_resource(validator: Validator) -> None:
    patient = samples.patient()
    patient["contained"] = [{"resourceType": "Organization", "id": "o", "name": "x"}]
    before = copy.deepcopy(patient)
    validator.validate(patient)
    assert patient == before


def _mutations(value: Any, rng: random.Random) -> Any:
    """A copy of ``value`` with random JSON junk swapped in at random places."""
    junk: list[Any] = [None, {}, [], "", 0, -1, 2**40, True, "x", [None], {"a": 1}, [[]], 1.5]
    if isinstance(value, dict):
        out = {k: _mutations(v, rng) for k, v in value.items()}
        if out and rng.random() < 0.3:
            out[rng.choice(list(out))] = rng.choice(junk)
        return out
    if isinstance(value, list):
        return [_mutations(v, rng) for v in value] + (
            [rng.choice(junk)] if rng.random() < 0.1 else []
        )
    return rng.choice(junk) if rng.random() < 0.1 else value


def test_random_junk_gives_issues_never_exceptions(validator: Validator) -> None:
    rng = random.Random(20231125)
    for _ in range(400):
        for sample in (samples.patient(), samples.observation()):
            issues = validator.validate(_mutations(sample, rng))
            for issue in issues:
                assert issue.severity in ("error", "warning")
                assert issue.code in ISSUE_TYPES
                assert issue.diagnostics
                assert len(issue.expression) == 1 and issue.expression[0]


def test_every_issue_names_a_location(validator: Validator) -> None:
    issues = validator.validate({"resourceType": "Nope"})
    assert issues[0].expression == ("resourceType",)
    issues = validator.validate({"resourceType": "Patient", "gender": 1})
    assert issues[0].expression == ("Patient.gender",)


def test_one_validator_serves_many_threads(validator: Validator) -> None:
    def run(index: int) -> list[Any]:
        patient = samples.patient()
        if index % 2:
            patient["gender"] = "robot"
        return validator.validate(patient)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, range(64)))
    assert all(results[i] == [] for i in range(0, 64, 2))
    assert all(len(results[i]) == 1 for i in range(1, 64, 2))
