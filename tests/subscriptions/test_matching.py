"""Trigger evaluation: R5 SubscriptionTopic resource triggers
(https://hl7.org/fhir/R5/subscriptiontopic-definitions.html#SubscriptionTopic.resourceTrigger:
supportedInteraction, queryCriteria with previous/current, resultForCreate/resultForDelete,
requireBoth, fhirPathCriteria with %previous/%current), backport filter criteria and classic R4
criteria (https://hl7.org/fhir/R4/subscription.html), on real resources, with the project's
search parser and in-memory matcher."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.subscriptions.matching import CompiledSubscription, CompiledTopic, Matcher
from healthbridge.subscriptions.subscription import parse_subscription
from healthbridge.subscriptions.topics import Interaction, Topic, parse_topic
from tests.subscriptions.topic_samples import backport_subscription, filters, json_topic


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(load_definitions())


def encounter(status: str, patient: str = "123", **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "e1",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{patient}"},
        **more,
    }


def topic_with(trigger: dict[str, Any]) -> Topic:
    data = json_topic()
    data["resourceTrigger"] = [{"resource": "Encounter", **trigger}]
    return parse_topic(data)


def fires(
    matcher: Matcher,
    topic: Topic,
    interaction: Interaction,
    previous: dict[str, Any] | None,
    current: dict[str, Any] | None,
) -> bool:
    return matcher.compile_topic(topic).fires(matcher.change(interaction, previous, current))


# -- the IG's encounter-complete topic: queryCriteria AND fhirPathCriteria ------------------
ENCOUNTER_COMPLETE = [
    ("create", None, encounter("finished"), True),  # resultForCreate test-passes
    ("create", None, encounter("in-progress"), False),
    ("update", encounter("in-progress"), encounter("finished"), True),
    ("update", encounter("finished"), encounter("finished"), False),  # previous fails
    ("update", encounter("planned"), encounter("in-progress"), False),
    ("delete", encounter("finished"), None, False),  # not a supported interaction
]


@pytest.mark.parametrize(("interaction", "previous", "current", "expected"), ENCOUNTER_COMPLETE)
def test_encounter_complete(
    matcher: Matcher, interaction: Interaction, previous: Any, current: Any, expected: bool
) -> None:
    assert fires(matcher, parse_topic(json_topic()), interaction, previous, current) is expected


def test_other_resource_types_never_fire(matcher: Matcher) -> None:
    patient = {"resourceType": "Patient", "id": "p", "active": True}
    assert not fires(matcher, parse_topic(json_topic()), "create", None, patient)


# -- queryCriteria semantics ----------------------------------------------------------------
def test_require_both_false_is_either(matcher: Matcher) -> None:
    topic = topic_with(
        {"queryCriteria": {"previous": "status=planned", "current": "status=cancelled"}}
    )
    assert fires(matcher, topic, "update", encounter("planned"), encounter("arrived"))
    assert fires(matcher, topic, "update", encounter("arrived"), encounter("cancelled"))
    assert not fires(matcher, topic, "update", encounter("arrived"), encounter("finished"))


def test_require_both_true_is_both(matcher: Matcher) -> None:
    topic = topic_with(
        {
            "queryCriteria": {
                "previous": "status=planned",
                "current": "status=cancelled",
                "requireBoth": True,
            }
        }
    )
    assert fires(matcher, topic, "update", encounter("planned"), encounter("cancelled"))
    assert not fires(matcher, topic, "update", encounter("planned"), encounter("arrived"))


@pytest.mark.parametrize(
    ("result", "expected"), [("test-passes", True), ("test-fails", False), (None, False)]
)
def test_result_for_create(matcher: Matcher, result: str | None, expected: bool) -> None:
    criteria: dict[str, Any] = {
        "previous": "status=planned",
        "current": "status=arrived",
        "requireBoth": True,
    }
    if result:
        criteria["resultForCreate"] = result
    topic = topic_with({"queryCriteria": criteria})
    assert fires(matcher, topic, "create", None, encounter("arrived")) is expected


@pytest.mark.parametrize(("result", "expected"), [("test-passes", True), ("test-fails", False)])
def test_result_for_delete(matcher: Matcher, result: str, expected: bool) -> None:
    topic = topic_with(
        {
            "supportedInteraction": ["delete"],
            "queryCriteria": {
                "previous": "status=arrived",
                "current": "status=finished",
                "resultForDelete": result,
                "requireBoth": True,
            },
        }
    )
    assert fires(matcher, topic, "delete", encounter("arrived"), None) is expected
    assert not fires(matcher, topic, "delete", encounter("planned"), None)


def test_query_criteria_with_type_prefix_and_reference(matcher: Matcher) -> None:
    topic = topic_with({"queryCriteria": {"current": "Encounter?patient=Patient/123&class=IMP"}})
    assert fires(matcher, topic, "create", None, encounter("arrived"))
    assert not fires(matcher, topic, "create", None, encounter("arrived", patient="9"))


# -- fhirPathCriteria ----------------------------------------------------------------------
def test_fhirpath_previous_and_current(matcher: Matcher) -> None:
    topic = topic_with(
        {"fhirPathCriteria": "%previous.period.end.empty() and %current.period.end.exists()"}
    )
    ended = encounter("finished", period={"start": "2024-01-01", "end": "2024-01-03"})
    started = encounter("in-progress", period={"start": "2024-01-01"})
    assert fires(matcher, topic, "update", started, ended)
    assert fires(matcher, topic, "create", None, ended)  # %previous is empty on create
    assert not fires(matcher, topic, "update", ended, ended)


def test_fhirpath_on_delete_binds_current_empty(matcher: Matcher) -> None:
    topic = topic_with({"fhirPathCriteria": "%current.empty() and %previous.status = 'planned'"})
    assert fires(matcher, topic, "delete", encounter("planned"), None)
    assert not fires(matcher, topic, "delete", encounter("arrived"), None)


def test_fhirpath_runtime_error_does_not_fire(matcher: Matcher) -> None:
    topic = topic_with({"fhirPathCriteria": "%current.status + 1 = 2"})
    assert not fires(matcher, topic, "create", None, encounter("arrived"))


def test_fhirpath_is_compiled_once_per_topic(matcher: Matcher) -> None:
    topic = topic_with({"fhirPathCriteria": "%current.status = 'arrived'"})
    assert matcher.compile_topic(topic) is matcher.compile_topic(topic)


# -- criteria the matcher refuses -----------------------------------------------------------
BAD_CRITERIA = [
    ({"queryCriteria": {"current": "subject:Patient.name=peter"}}, "not-supported"),
    ({"queryCriteria": {"current": "_has:Observation:encounter:code=1234"}}, "not-supported"),
    ({"queryCriteria": {"current": "_text=fever"}}, "not-supported"),
    ({"queryCriteria": {"current": "_count=1"}}, "not-supported"),
    ({"queryCriteria": {"current": "type:in=http://example.org/vs"}}, "not-supported"),
    ({"queryCriteria": {"current": "no-such-param=1"}}, "not-supported"),
    ({"queryCriteria": {"current": "Patient?active=true"}}, "invalid"),
    ({"queryCriteria": {"current": "date=notadate"}}, "value"),
    ({"fhirPathCriteria": "%current.status = = 'x'"}, "invalid"),
]


@pytest.mark.parametrize(("trigger", "code"), BAD_CRITERIA)
def test_unsupported_criteria_are_refused(
    matcher: Matcher, trigger: dict[str, Any], code: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        matcher.compile_topic(topic_with(trigger))
    issue = caught.value.issues[0]
    assert issue.code == code
    assert issue.expression[0].startswith("SubscriptionTopic.resourceTrigger[0].")


def test_unknown_resource_type_in_topic(matcher: Matcher) -> None:
    data = json_topic()
    data["resourceTrigger"][0]["resource"] = "Widget"
    with pytest.raises(InvalidRequest, match="not an R4 resource type"):
        matcher.compile_topic(parse_topic(data))


# -- subscriptions: filters and classic criteria --------------------------------------------
def compiled(matcher: Matcher, resource: dict[str, Any]) -> CompiledSubscription:
    topic = parse_topic(json_topic())
    sub = parse_subscription(resource, lambda url: topic if url == topic.url else None)
    return matcher.compile(sub, topic if sub.topic_based else None)


def test_filters_narrow_the_topic(matcher: Matcher) -> None:
    sub = compiled(matcher, backport_subscription())  # Encounter?patient=Patient/123
    mine = matcher.change("update", encounter("in-progress"), encounter("finished"))
    theirs = matcher.change(
        "update", encounter("in-progress", patient="9"), encounter("finished", patient="9")
    )
    assert sub.triggers(mine)
    assert not sub.triggers(theirs)


def test_filters_with_comparator_and_modifier(matcher: Matcher) -> None:
    sub = compiled(
        matcher, backport_subscription(_criteria=filters("Encounter?length=gt2", "class:not=AMB"))
    )
    long_stay = encounter(
        "finished",
        length={"value": 3, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"},
    )
    short_stay = encounter(
        "finished",
        length={"value": 1, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"},
    )
    assert sub.triggers(matcher.change("create", None, long_stay))
    assert not sub.triggers(matcher.change("create", None, short_stay))


def test_filter_values_are_checked_when_compiled(matcher: Matcher) -> None:
    with pytest.raises(InvalidRequest) as caught:
        compiled(matcher, backport_subscription(_criteria=filters("Encounter?length=gtten")))
    assert caught.value.issues[0].expression == ("Subscription.criteria.extension",)


CLASSIC = {
    "resourceType": "Subscription",
    "status": "active",
    "criteria": "Observation?code=http://loinc.org|1234-5",
    "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/o"},
}


def observation(code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
    }


def test_classic_criteria(matcher: Matcher) -> None:
    sub = compiled(matcher, CLASSIC)
    assert sub.triggers(matcher.change("create", None, observation("1234-5")))
    assert sub.triggers(matcher.change("update", observation("1-1"), observation("1234-5")))
    assert not sub.triggers(matcher.change("create", None, observation("9999-9")))
    assert not sub.triggers(matcher.change("delete", observation("1234-5"), None))
    assert not sub.triggers(matcher.change("create", None, encounter("finished")))


def test_classic_criteria_without_parameters_matches_the_type(matcher: Matcher) -> None:
    sub = compiled(matcher, {**CLASSIC, "criteria": "Observation"})
    assert sub.triggers(matcher.change("create", None, observation("9999-9")))


def test_classic_criteria_errors(matcher: Matcher) -> None:
    with pytest.raises(InvalidRequest, match="not an R4 resource type"):
        compiled(matcher, {**CLASSIC, "criteria": "Widget?x=1"})
    with pytest.raises(InvalidRequest) as caught:
        compiled(matcher, {**CLASSIC, "criteria": "Observation?subject.name=x"})
    assert caught.value.issues[0].expression == ("Subscription.criteria",)


def test_change_checks_its_versions(matcher: Matcher) -> None:
    with pytest.raises(ValueError, match="create"):
        matcher.change("create", encounter("planned"), encounter("arrived"))
    with pytest.raises(ValueError, match="delete"):
        matcher.change("delete", None, encounter("arrived"))


def test_change_indexes_each_version_once(matcher: Matcher) -> None:
    change = matcher.change("update", encounter("in-progress"), encounter("finished"))
    assert change.rows(current=True) is change.rows(current=True)
    assert change.rows(current=False) is not change.rows(current=True)


def test_a_topic_is_evaluated_once_per_change_however_many_subscribe(matcher: Matcher) -> None:
    """Many subscriptions share a topic: its criteria (FHIRPath included) run once per change."""
    compiled = matcher.compile_topic(parse_topic(json_topic()))
    calls: list[int] = []

    class Counting:
        def fires(self, change: Any) -> bool:
            calls.append(1)
            return compiled.triggers[0].fires(change)

    shared = CompiledTopic(compiled.topic, (Counting(),))  # type: ignore[arg-type]
    change = matcher.change("update", encounter("in-progress"), encounter("finished"))
    assert all(shared.fires(change) for _ in range(30))
    assert len(calls) == 1
    another = matcher.change("update", encounter("planned"), encounter("finished"))
    assert shared.fires(another)
    assert len(calls) == 2


# -- candidates: only subscriptions a filter's reference does not rule out are tried -----------
def test_candidates_are_exactly_those_that_can_trigger(matcher: Matcher) -> None:
    """Filed by referenced patient, a change is tried against the subscriptions of its patient
    and those without a reference filter; the answer is the same as trying all of them, for
    topic filters (patient=), classic criteria (subject:Patient= with several ids,
    subject:identifier=) and filters by other parameters."""
    from healthbridge.subscriptions.candidates import Candidates, key_of
    from healthbridge.subscriptions.live import Live
    from healthbridge.subscriptions.owners import Owner

    bodies = {
        "p123": backport_subscription(),  # Encounter?patient=Patient/123
        "p9": backport_subscription(_criteria=filters("Encounter?patient=9")),
        "either": {**CLASSIC, "criteria": "Encounter?subject:Patient=9,123"},
        "by-length": backport_subscription(_criteria=filters("Encounter?length=gt2")),
        "identifier": {**CLASSIC, "criteria": "Encounter?subject:identifier=urn:mrn|9"},
        "unfiltered": backport_subscription(_criteria=None),
        "classic-9": {**CLASSIC, "criteria": "Encounter?patient=9&status=finished"},
        "classic-obs": CLASSIC,
    }
    made = {name: compiled(matcher, body) for name, body in bodies.items()}
    lives = {
        name: Live(name, 1, c.subscription, c, Owner(name, "s", "active"))
        for name, c in made.items()
    }
    ids = {"p123": {"123"}, "p9": {"9"}, "either": {"9", "123"}, "classic-9": {"9"}}
    assert key_of(lives["p123"].compiled, "Encounter") == ("patient", ["123"])
    assert key_of(lives["either"].compiled, "Encounter") == ("subject", ["9", "123"])
    assert key_of(lives["by-length"].compiled, "Encounter") is None
    assert key_of(lives["identifier"].compiled, "Encounter") is None
    candidates = Candidates(lives)
    assert candidates.types == {"Encounter", "Observation"}
    for patient in ("123", "9", "77"):
        for previous, current in [
            (None, encounter("finished", patient)),
            (encounter("in-progress", patient), encounter("finished", patient)),
            (encounter("in-progress", "123"), encounter("finished", patient)),  # moved
            (encounter("finished", patient), None),
        ]:
            interaction: Interaction = (
                "create" if previous is None else "delete" if current is None else "update"
            )
            change = matcher.change(interaction, previous, current)
            tried = [live.id for live in candidates.of(change)]
            every = [name for name, live in lives.items() if live.compiled.triggers(change)]
            assert [name for name in tried if lives[name].compiled.triggers(change)] == every
            ruled_out = {"classic-obs"} | {n for n, of in ids.items() if patient not in of}
            assert not set(tried) & ruled_out
