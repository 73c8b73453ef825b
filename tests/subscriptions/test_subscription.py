"""Reading R4 Subscriptions: the Backport IG profile
(https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription.html)
and classic criteria (https://hl7.org/fhir/R4/subscription.html)."""

from __future__ import annotations

from typing import Any

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.subscriptions.subscription import (
    CHANNEL_TYPE,
    PAYLOAD_CONTENT,
    Filter,
    Subscription,
    parse_subscription,
)
from healthbridge.subscriptions.topics import Topic, parse_topic
from tests.subscriptions.topic_samples import (
    TOPIC_URL,
    backport_subscription,
    filters,
    json_topic,
)

TOPIC = parse_topic(json_topic())


def lookup(canonical: str) -> Topic | None:
    return TOPIC if canonical in (TOPIC.url, TOPIC.canonical) else None


def parse(resource: dict[str, Any]) -> Subscription:
    return parse_subscription(resource, lookup)


def test_backport_subscription_reads_every_element() -> None:
    sub = parse(backport_subscription())
    assert sub.id == "admission"
    assert sub.status == "active"
    assert sub.topic_based and sub.topic == TOPIC_URL and sub.criteria is None
    assert sub.filters == (Filter("Encounter", "patient", None, "Patient/123"),)
    assert sub.channel_type == "rest-hook" and sub.channel_type_system is None
    assert sub.endpoint == "https://example.org/Endpoints/d7dcc004-808d-452b-8030-3a3a13cd871d"
    assert sub.headers == (("Authorization", "Bearer secret-token-abc-123"),)
    assert sub.payload == "application/fhir+json"
    assert sub.content == "id-only"
    assert (sub.heartbeat_period, sub.timeout, sub.max_count) == (86400, 60, 20)
    assert sub.end == "2030-12-31T12:00:00Z"


def test_versioned_topic_canonical() -> None:
    sub = parse(backport_subscription(criteria=f"{TOPIC_URL}|1.2.0"))
    assert sub.topic == f"{TOPIC_URL}|1.2.0"


def test_several_filters_and_parameters() -> None:
    sub = parse(
        backport_subscription(
            _criteria=filters("Encounter?patient=Patient/1&length=gt30", "class:not=AMB")
        )
    )
    assert [f.name for f in sub.filters] == ["patient", "length", "class:not"]
    assert sub.filters[2].resource_type == "Encounter"  # the topic's one resource type


def test_custom_channel_type_extension() -> None:
    """backport-channel-type: the custom type wins over channel.type."""
    resource = backport_subscription()
    resource["channel"]["_type"] = {
        "extension": [
            {
                "url": CHANNEL_TYPE,
                "valueCoding": {"system": "http://example.org/ch", "code": "zulip"},
            }
        ]
    }
    sub = parse(resource)
    assert (sub.channel_type, sub.channel_type_system) == ("zulip", "http://example.org/ch")


@pytest.mark.parametrize("content", ["empty", "id-only", "full-resource"])
def test_payload_contents(content: str) -> None:
    resource = backport_subscription()
    resource["channel"]["_payload"]["extension"][0]["valueCode"] = content
    assert parse(resource).content == content


def test_websocket_needs_no_endpoint() -> None:
    resource = backport_subscription()
    resource["channel"] = {"type": "websocket", "payload": "application/fhir+json"}
    sub = parse(resource)
    assert sub.endpoint is None and sub.content == "id-only"


def test_classic_criteria_subscription() -> None:
    """R4 classic: criteria is a search; a payload means the resource is sent."""
    sub = parse(
        {
            "resourceType": "Subscription",
            "status": "requested",
            "criteria": "Observation?code=http://loinc.org|1234-5",
            "channel": {
                "type": "rest-hook",
                "endpoint": "http://hooks.example.org/obs",
                "payload": "application/fhir+json",
            },
        }
    )
    assert not sub.topic_based
    assert sub.criteria == "Observation?code=http://loinc.org|1234-5"
    assert sub.resource_type == "Observation"
    assert sub.content == "full-resource"
    assert sub.id is None and sub.filters == ()


def test_classic_without_payload_is_empty() -> None:
    sub = parse(
        {
            "resourceType": "Subscription",
            "status": "active",
            "criteria": "Patient",
            "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/p"},
        }
    )
    assert sub.content == "empty" and sub.payload is None


def _error(resource: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(resource)
    return caught.value


def test_unknown_filter_is_named() -> None:
    error = _error(backport_subscription(_criteria=filters("Encounter?location=Location/1")))
    assert "'location'" in str(error) and "patient" in str(error)
    assert error.issues[0].expression == ("Subscription.criteria.extension[0]",)


def test_filter_on_a_type_the_topic_does_not_cover() -> None:
    error = _error(backport_subscription(_criteria=filters("Patient?_id=123")))
    assert "no trigger for 'Patient'" in str(error)


def test_filter_modifier_not_offered() -> None:
    error = _error(backport_subscription(_criteria=filters("Encounter?patient:missing=true")))
    assert ":missing" in str(error)


def test_filter_comparator_not_offered() -> None:
    assert "comparator ge" in str(
        _error(backport_subscription(_criteria=filters("Encounter?length=ge3")))
    )


def test_unknown_topic() -> None:
    error = _error(backport_subscription(criteria="http://example.org/SubscriptionTopic/none"))
    assert error.issues[0].code == "not-supported"
    assert error.issues[0].expression == ("Subscription.criteria",)


def _channel(**changes: Any) -> dict[str, Any]:
    resource = backport_subscription()
    resource["channel"].update(changes)
    return resource


BAD = [
    (backport_subscription(status="on"), "Subscription.status"),
    (backport_subscription(criteria="observation?code=1"), "Subscription.criteria"),
    (backport_subscription(end="tomorrow"), "Subscription.end"),
    (_channel(type="pigeon"), "Subscription.channel.type"),
    (_channel(endpoint=None), "Subscription.channel.endpoint"),
    (_channel(endpoint="ftp://example.org/x"), "Subscription.channel.endpoint"),
    (_channel(payload="application/fhir+xml"), "Subscription.channel.payload"),
    (_channel(header=["X-Evil: a\r\nHost: b"]), "Subscription.channel.header[0]"),
    (_channel(header=["no colon here"]), "Subscription.channel.header[0]"),
    (
        _channel(_payload={"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "everything"}]}),
        "Subscription.channel.payload.extension",
    ),
    (
        _channel(
            extension=[
                {
                    "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count",
                    "valuePositiveInt": 0,
                }
            ]
        ),
        "Subscription.channel.extension",
    ),
]


@pytest.mark.parametrize(("resource", "expression"), BAD)
def test_bad_subscriptions_name_the_element(resource: dict[str, Any], expression: str) -> None:
    assert _error(resource).issues[0].expression == (expression,)


def test_missing_channel_and_criteria() -> None:
    assert _error({"resourceType": "Subscription", "status": "active"}).issues[0].code == "required"
    no_channel = backport_subscription()
    del no_channel["channel"]
    assert _error(no_channel).issues[0].expression == ("Subscription.channel",)
