"""Reading SubscriptionTopics: R5 SubscriptionTopic JSON
(https://hl7.org/fhir/R5/subscriptiontopic.html) and the R4 Basic with cross-version extensions of
the Subscriptions Backport IG
(https://hl7.org/fhir/uv/subscriptions-backport/components.html#subscription-topics)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.subscriptions.topics import (
    CanFilterBy,
    NotificationShape,
    QueryCriteria,
    Topic,
    parse_topic,
)
from tests.subscriptions.topic_samples import R5X, TOPIC_URL, basic_topic, json_topic


def test_json_topic_reads_every_element() -> None:
    topic = parse_topic(json_topic())
    assert topic.url == TOPIC_URL
    assert topic.version == "1.2.0"
    assert topic.canonical == f"{TOPIC_URL}|1.2.0"
    assert topic.title == "Encounter complete"
    assert topic.status == "draft"
    (trigger,) = topic.resource_triggers
    assert trigger.resource == "Encounter"
    assert trigger.interactions == ("create", "update")
    assert trigger.query == QueryCriteria(
        "status:not=finished", "test-passes", "status=finished", "test-fails", True
    )
    assert trigger.fhirpath is not None and "%current.status" in trigger.fhirpath
    assert topic.can_filter_by[1] == CanFilterBy("length", "Encounter", ("gt", "lt"))
    assert topic.notification_shapes == (
        NotificationShape(
            "Encounter",
            ("Encounter:patient&iterate=Patient.link", "Encounter:location"),
            ("Encounter:subject",),
        ),
    )
    assert topic.resource_types == ("Encounter",)


def test_basic_topic_reads_the_same_as_the_json_topic() -> None:
    """The cross-version extensions carry the same topic (5.0 and 4.3 URL prefixes both
    accepted, the status from the modifier extension, unrelated extensions skipped)."""
    from_basic = parse_topic(basic_topic())
    assert from_basic == parse_topic(json_topic())
    assert from_basic.id == "encounter-complete"


def test_basic_is_recognised_by_code_alone() -> None:
    basic = basic_topic()
    del basic["meta"]
    assert parse_topic(basic).url == TOPIC_URL


def test_defaults_all_interactions_and_active_status() -> None:
    data = json_topic()
    del data["resourceTrigger"][0]["supportedInteraction"]
    del data["status"]
    topic = parse_topic(data)
    assert topic.resource_triggers[0].interactions == ("create", "update", "delete")
    assert topic.status == "active"


def test_event_trigger_is_kept() -> None:
    data = json_topic()
    del data["resourceTrigger"]
    data["eventTrigger"] = [
        {
            "event": {"coding": [{"system": "urn:x", "code": "missed-dose"}]},
            "resource": "MedicationRequest",
        }
    ]
    topic = parse_topic(data)
    assert topic.event_triggers[0].code == "missed-dose"
    assert topic.resource_types == ("MedicationRequest",)


def _broken(change: Any) -> dict[str, Any]:
    data = json_topic()
    change(data)
    return data


BAD_JSON = [
    (lambda d: d.pop("url"), "SubscriptionTopic.url"),
    (lambda d: d.update(status="finished"), "SubscriptionTopic.status"),
    (lambda d: d.pop("resourceTrigger"), "SubscriptionTopic"),
    (
        lambda d: d["resourceTrigger"][0].update(supportedInteraction=["read"]),
        "SubscriptionTopic.resourceTrigger[0].supportedInteraction",
    ),
    (
        lambda d: d["resourceTrigger"][0]["queryCriteria"].update(resultForCreate="maybe"),
        "SubscriptionTopic.resourceTrigger[0].queryCriteria.resultForCreate",
    ),
    (
        lambda d: d["resourceTrigger"][0]["queryCriteria"].update(requireBoth="yes"),
        "SubscriptionTopic.resourceTrigger[0].queryCriteria.requireBoth",
    ),
    (
        lambda d: d["resourceTrigger"][0].update(queryCriteria={"requireBoth": True}),
        "SubscriptionTopic.resourceTrigger[0].queryCriteria",
    ),
    (
        lambda d: d["resourceTrigger"][0].update(resource="encounter"),
        "SubscriptionTopic.resourceTrigger[0].resource",
    ),
    (
        lambda d: d["canFilterBy"][0].pop("filterParameter"),
        "SubscriptionTopic.canFilterBy[0].filterParameter",
    ),
    (lambda d: d.update(notificationShape=["Encounter"]), "SubscriptionTopic.notificationShape[0]"),
]


@pytest.mark.parametrize(("change", "expression"), BAD_JSON)
def test_malformed_topics_name_the_element(change: Any, expression: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_topic(_broken(change))
    assert caught.value.issues[0].expression == (expression,)


def test_basic_without_the_topic_code_is_refused() -> None:
    basic = basic_topic()
    del basic["meta"]
    basic["code"] = {"coding": [{"system": "http://example.org", "code": "Other"}]}
    with pytest.raises(InvalidRequest) as caught:
        parse_topic(basic)
    assert caught.value.issues[0].expression == ("Basic.code",)


def test_basic_with_a_single_element_twice_is_refused() -> None:
    basic = basic_topic()
    basic["extension"].append({"url": R5X + "url", "valueUri": "http://example.org/other"})
    with pytest.raises(InvalidRequest, match="may appear once") as caught:
        parse_topic(basic)
    assert caught.value.issues[0].expression == ("SubscriptionTopic.url",)


def test_basic_extension_with_value_and_children_is_refused() -> None:
    basic = basic_topic()
    trigger = basic["extension"][3]
    trigger["valueString"] = "both"
    with pytest.raises(InvalidRequest, match="ext-1"):
        parse_topic(basic)


def test_other_resources_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="Expected a SubscriptionTopic"):
        parse_topic({"resourceType": "Patient"})


def test_topics_are_frozen_and_hashable() -> None:
    topic = parse_topic(json_topic())
    assert isinstance(hash(topic), int)
    with pytest.raises(AttributeError):
        topic.url = "x"  # type: ignore[misc]
    assert parse_topic(copy.deepcopy(json_topic())) == topic
    assert isinstance(topic, Topic)
