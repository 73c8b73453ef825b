"""The built-in alert topics (R5 SubscriptionTopic, https://hl7.org/fhir/R5/subscriptiontopic.html)
on realistic R4 resources: each fires for what it promises and stays quiet otherwise."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.subscriptions.builtin_topics import (
    BASE,
    CriticalRange,
    builtin_topics,
    critical_ranges,
    default_critical_ranges,
    range_criteria,
    topic_resources,
)
from healthbridge.subscriptions.matching import CompiledTopic, Matcher
from healthbridge.subscriptions.topics import Interaction

UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(load_definitions())


@pytest.fixture(scope="module")
def topics(matcher: Matcher) -> dict[str, CompiledTopic]:
    return {t.url.removeprefix(BASE): matcher.compile_topic(t) for t in builtin_topics()}


def fires(
    matcher: Matcher,
    topic: CompiledTopic,
    interaction: Interaction,
    previous: dict[str, Any] | None,
    current: dict[str, Any] | None,
) -> bool:
    return topic.fires(matcher.change(interaction, previous, current))


def lab(code: str, value: str, unit: str, status: str = "final", **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "lab1",
        "status": status,
        "category": [LAB],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:30:00Z",
        "valueQuantity": {"value": Decimal(value), "unit": unit, "system": UCUM, "code": unit},
        **more,
    }


def test_every_topic_loads_and_compiles(topics: dict[str, CompiledTopic]) -> None:
    assert sorted(topics) == [
        "appointment-changed",
        "consent-changed",
        "critical-lab-result",
        "encounter-start-discharge",
        "lab-result-available",
        "missed-medication-dose",
    ]
    assert all(t.topic.can_filter_by for t in topics.values())
    assert all(t.topic.notification_shapes for t in topics.values())


# -- critical lab result --------------------------------------------------------------------
CRITICAL = [
    (lab("2823-3", "6.9", "mmol/L"), True),  # potassium high
    (lab("2823-3", "2.5", "mmol/L"), True),  # potassium low
    (lab("2823-3", "4.1", "mmol/L"), False),
    (lab("2823-3", "7.0", "meq/L"), True),  # mEq/L is mmol/L for a monovalent ion (UCUM)
    (lab("2951-2", "118", "mmol/L"), True),  # sodium low
    (lab("2951-2", "140", "mmol/L"), False),
    (lab("2345-7", "38", "mg/dL"), True),  # glucose low
    (lab("2345-7", "510", "mg/dL"), True),
    (lab("2345-7", "95", "mg/dL"), False),
    (lab("2345-7", "2.1", "mmol/L"), True),  # glucose in SI units
    (lab("2345-7", "5.4", "mmol/L"), False),
    (lab("718-7", "6.1", "g/dL"), True),  # hemoglobin low
    (lab("718-7", "61", "g/L"), True),  # the same in g/L: compared canonically
    (lab("718-7", "135", "g/L"), False),
    (lab("777-3", "12", "10*3/uL"), True),  # platelets low
    (lab("777-3", "1200", "10*9/L"), True),  # 10*9/L is 10*3/uL
    (lab("777-3", "250", "10*3/uL"), False),
    (lab("6598-7", "0.45", "ng/mL"), True),  # troponin T high
    (lab("6598-7", "0.008", "ng/mL"), False),
    (lab("2823-3", "6.9", "mmol/L", status="entered-in-error"), False),
    (lab("2823-3", "6.9", "mmol/L", status="registered"), False),
    (lab("1975-2", "25", "mg/dL"), False),  # bilirubin: no configured range
    (
        lab(
            "1975-2",
            "25",
            "mg/dL",
            interpretation=[{"coding": [{"system": INTERPRETATION, "code": "HH"}]}],
        ),
        True,
    ),
    (
        lab(
            "2823-3",
            "4.0",
            "mmol/L",
            interpretation=[{"coding": [{"system": INTERPRETATION, "code": "LL"}]}],
        ),
        True,
    ),
    (
        lab(
            "2823-3",
            "5.5",
            "mmol/L",
            interpretation=[{"coding": [{"system": INTERPRETATION, "code": "H"}]}],
        ),
        False,
    ),
]


@pytest.mark.parametrize(("observation", "expected"), CRITICAL)
def test_critical_lab_result(
    matcher: Matcher, topics: dict[str, CompiledTopic], observation: dict[str, Any], expected: bool
) -> None:
    topic = topics["critical-lab-result"]
    assert fires(matcher, topic, "create", None, observation) is expected
    preliminary = {**observation, "status": "preliminary"}
    if observation["status"] == "final":
        assert fires(matcher, topic, "update", preliminary, observation) is expected


def test_critical_lab_result_ignores_deletes(
    matcher: Matcher, topics: dict[str, CompiledTopic]
) -> None:
    assert not fires(
        matcher, topics["critical-lab-result"], "delete", lab("2823-3", "6.9", "mmol/L"), None
    )


def test_configured_ranges_replace_the_defaults(matcher: Matcher) -> None:
    ranges = [CriticalRange("2823-3", "mmol/L", Decimal("3.0"), Decimal("6.0"))]
    (topic,) = [t for t in builtin_topics(ranges) if t.url.endswith("critical-lab-result")]
    compiled = matcher.compile_topic(topic)
    assert fires(matcher, compiled, "create", None, lab("2823-3", "6.1", "mmol/L"))  # > 6.0
    assert not fires(matcher, compiled, "create", None, lab("2345-7", "30", "mg/dL"))  # no range
    (only_interpretation,) = [
        t for t in builtin_topics(()) if t.url.endswith("critical-lab-result")
    ]
    assert len(only_interpretation.resource_triggers) == 1


def test_default_ranges_are_data() -> None:
    ranges = default_critical_ranges()
    assert {r.code for r in ranges} == {"2823-3", "2951-2", "2345-7", "718-7", "777-3", "6598-7"}
    assert all(r.source for r in ranges)
    potassium = next(r for r in ranges if r.code == "2823-3")
    assert (potassium.low, potassium.high) == (Decimal("2.8"), Decimal("6.2"))
    assert "http://loinc.org|2823-3$lt2.8|http://unitsofmeasure.org|mmol/L" in range_criteria(
        ranges
    )


@pytest.mark.parametrize(
    "bad",
    [
        [{"code": "2823-3"}],
        [{"code": "2823-3", "unit": "mmol/L"}],
        [{"code": "2823-3", "unit": "mmol/L", "low": 7, "high": 3}],
        [{"code": "2823-3", "unit": "mmol/L", "low": "low"}],
        ["2823-3"],
    ],
)
def test_bad_ranges_are_refused(bad: list[Any]) -> None:
    with pytest.raises(InvalidRequest, match=r"ranges\[0\]"):
        critical_ranges(bad)


# -- new lab result or report available -----------------------------------------------------
def report(status: str) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": "Patient/p1"},
        "result": [{"reference": "Observation/lab1"}],
    }


AVAILABLE = [
    ("create", None, lab("2823-3", "4.1", "mmol/L"), True),
    ("create", None, lab("2823-3", "4.1", "mmol/L", status="preliminary"), False),
    (
        "update",
        lab("2823-3", "4.1", "mmol/L", status="preliminary"),
        lab("2823-3", "4.1", "mmol/L"),
        True,
    ),
    (
        "update",
        lab("2823-3", "4.1", "mmol/L"),
        lab("2823-3", "4.3", "mmol/L", status="amended"),
        True,
    ),
    ("update", lab("2823-3", "4.1", "mmol/L"), lab("2823-3", "4.1", "mmol/L"), False),  # re-saved
    ("create", None, {**lab("8867-4", "72", "/min"), "category": []}, False),  # not laboratory
    ("create", None, report("final"), True),
    ("update", report("preliminary"), report("final"), True),
    ("update", report("final"), report("amended"), True),
    ("update", report("final"), report("final"), False),
    ("create", None, report("registered"), False),
]


@pytest.mark.parametrize(("interaction", "previous", "current", "expected"), AVAILABLE)
def test_lab_result_available(
    matcher: Matcher,
    topics: dict[str, CompiledTopic],
    interaction: Interaction,
    previous: Any,
    current: Any,
    expected: bool,
) -> None:
    assert (
        fires(matcher, topics["lab-result-available"], interaction, previous, current) is expected
    )


# -- appointment cancelled or rescheduled ---------------------------------------------------
def appointment(
    status: str = "booked", start: str | None = "2024-05-02T09:00:00Z"
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": "a1",
        "status": status,
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}],
    }
    if start:
        resource["start"] = start
        resource["end"] = start.replace("09:00", "09:30")
    return resource


APPOINTMENTS = [
    (appointment(), appointment("cancelled"), True),
    (appointment(), appointment(start="2024-05-03T09:00:00Z"), True),  # rescheduled
    (appointment(), appointment(start="2024-05-02T11:00:00+02:00"), False),  # same instant
    (appointment(), appointment(), False),
    (appointment(), appointment("arrived"), False),
    (appointment("cancelled"), appointment("cancelled"), False),
    (appointment("proposed", start=None), appointment("booked"), False),  # first scheduled
]


@pytest.mark.parametrize(("previous", "current", "expected"), APPOINTMENTS)
def test_appointment_changed(
    matcher: Matcher, topics: dict[str, CompiledTopic], previous: Any, current: Any, expected: bool
) -> None:
    assert fires(matcher, topics["appointment-changed"], "update", previous, current) is expected


def test_appointment_create_does_not_fire(
    matcher: Matcher, topics: dict[str, CompiledTopic]
) -> None:
    assert not fires(
        matcher, topics["appointment-changed"], "create", None, appointment("cancelled")
    )


# -- encounter start or discharge -----------------------------------------------------------
def visit(status: str, end: str | None = None) -> dict[str, Any]:
    period = {"start": "2024-04-01T10:00:00Z"} | ({"end": end} if end else {})
    return {
        "resourceType": "Encounter",
        "id": "v1",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "period": period,
    }


ENCOUNTERS = [
    ("create", None, visit("in-progress"), True),
    ("create", None, visit("planned"), False),
    ("update", visit("arrived"), visit("in-progress"), True),
    ("update", visit("in-progress"), visit("in-progress"), False),
    ("update", visit("in-progress"), visit("finished", "2024-04-03T12:00:00Z"), True),
    ("update", visit("in-progress"), visit("in-progress", "2024-04-03T12:00:00Z"), True),  # end set
    (
        "update",
        visit("finished", "2024-04-03T12:00:00Z"),
        visit("finished", "2024-04-03T13:00:00Z"),
        False,
    ),
    ("update", visit("in-progress"), visit("cancelled"), False),
    ("delete", visit("in-progress"), None, False),
]


@pytest.mark.parametrize(("interaction", "previous", "current", "expected"), ENCOUNTERS)
def test_encounter_start_discharge(
    matcher: Matcher,
    topics: dict[str, CompiledTopic],
    interaction: Interaction,
    previous: Any,
    current: Any,
    expected: bool,
) -> None:
    assert (
        fires(matcher, topics["encounter-start-discharge"], interaction, previous, current)
        is expected
    )


# -- consent given or revoked ---------------------------------------------------------------
def consent(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": "c1",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
    }


CONSENTS = [
    ("create", None, consent("active"), True),
    ("create", None, consent("proposed"), True),
    ("create", None, consent("entered-in-error"), False),
    ("update", consent("active"), consent("inactive"), True),
    ("update", consent("proposed"), consent("rejected"), True),
    ("update", consent("inactive"), consent("inactive"), False),
    ("update", consent("draft"), consent("active"), False),
]


@pytest.mark.parametrize(("interaction", "previous", "current", "expected"), CONSENTS)
def test_consent_changed(
    matcher: Matcher,
    topics: dict[str, CompiledTopic],
    interaction: Interaction,
    previous: Any,
    current: Any,
    expected: bool,
) -> None:
    assert fires(matcher, topics["consent-changed"], interaction, previous, current) is expected


# -- missed medication dose -----------------------------------------------------------------
def missed_dose(status: str = "not-done", system: str = "urn:healthbridge:missed-dose") -> Any:
    """A MedicationAdministration as the missed-dose scheduler records it."""
    return {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "identifier": [{"system": system, "value": "m1/2024-03-01T08:00:00Z"}],
        "status": status,
        "statusReason": [{"text": "No administration recorded by the due time plus grace period"}],
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:00:00Z",
        "request": {"reference": "MedicationRequest/m1"},
    }


MISSED_DOSES = [
    ("create", None, missed_dose(), True),
    ("create", None, missed_dose("completed"), False),  # a dose given
    ("create", None, missed_dose(system="urn:other"), False),  # staff recording a dose not given
    ("update", missed_dose(), missed_dose(), False),  # each missed dose notifies once
    ("delete", missed_dose(), None, False),
]


@pytest.mark.parametrize(("interaction", "previous", "current", "expected"), MISSED_DOSES)
def test_missed_dose(
    matcher: Matcher,
    topics: dict[str, CompiledTopic],
    interaction: Interaction,
    previous: Any,
    current: Any,
    expected: bool,
) -> None:
    topic = topics["missed-medication-dose"]
    assert fires(matcher, topic, interaction, previous, current) is expected


def test_shipped_json_is_untouched_by_loading() -> None:
    first = topic_resources()
    builtin_topics()
    assert copy.deepcopy(first) == topic_resources()
    assert all(r["resourceType"] == "SubscriptionTopic" for r in first)
