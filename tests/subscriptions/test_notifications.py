"""Notification bundles and SubscriptionStatus Parameters, checked against the R4 examples of
the Subscriptions Backport IG (https://hl7.org/fhir/uv/subscriptions-backport/, Bundle
r4-notification-handshake, -heartbeat, -empty, -id-only, -full-resource; profiles
backport-subscription-status-r4 and backport-subscription-notification-r4) and the payload
rules of https://hl7.org/fhir/uv/subscriptions-backport/payloads.html."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.subscriptions.notifications import (
    NOTIFICATION_PROFILE,
    STATUS_PROFILE,
    Event,
    StatusInfo,
    classic_body,
    encode,
    notification_bundle,
    status_bundle,
    status_parameters,
)
from healthbridge.subscriptions.subscription import Subscription, parse_subscription
from healthbridge.subscriptions.topics import parse_topic
from tests.subscriptions.topic_samples import TOPIC_URL, backport_subscription, json_topic

BASE = "https://example.org/fhir"
WHEN = "2020-05-29T11:44:13.1882432-05:00"
STATUS_ID = "292d3c72-edc1-4d8a-afaa-d85e19c7f563"
TOPIC = parse_topic(json_topic())
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "86009987-eabe-42bf-8c02-b112b18cb616",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
    "subject": {"reference": "Patient/123"},
}
PATIENT = {"resourceType": "Patient", "id": "123", "name": [{"family": "Chalmers"}]}
EVENT = Event(2, WHEN, "create", ENCOUNTER, (PATIENT,))


def subscription(content: str = "id-only") -> Subscription:
    resource = backport_subscription()
    resource["channel"]["_payload"]["extension"][0]["valueCode"] = content
    return parse_subscription(resource, lambda url: TOPIC)


def bundle(content: str, info: StatusInfo, events: tuple[Event, ...] = ()) -> dict[str, Any]:
    return notification_bundle(
        subscription(content),
        info,
        events,
        base=BASE,
        bundle_id="r4-notification",
        status_id=STATUS_ID,
        timestamp=WHEN,
    )


def status_entry(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """entry[0] as the IG's AddParameterStatus rule set builds it."""
    return {
        "fullUrl": f"urn:uuid:{STATUS_ID}",
        "resource": {
            "resourceType": "Parameters",
            "id": STATUS_ID,
            "meta": {"profile": [STATUS_PROFILE]},
            "parameter": parameters,
        },
        "request": {"method": "GET", "url": f"{BASE}/Subscription/admission/$status"},
        "response": {"status": "200"},
    }


SUBSCRIPTION = {
    "name": "subscription",
    "valueReference": {"reference": f"{BASE}/Subscription/admission"},
}
TOPIC_PARAM = {"name": "topic", "valueCanonical": TOPIC_URL}


def test_handshake_matches_the_ig_example() -> None:
    out = bundle("id-only", StatusInfo("handshake", "requested", 0))
    assert out == {
        "resourceType": "Bundle",
        "id": "r4-notification",
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": WHEN,
        "entry": [
            status_entry(
                [
                    SUBSCRIPTION,
                    TOPIC_PARAM,
                    {"name": "status", "valueCode": "requested"},
                    {"name": "type", "valueCode": "handshake"},
                    {"name": "events-since-subscription-start", "valueString": "0"},
                ]
            )
        ],
    }


def test_heartbeat_carries_no_events() -> None:
    out = bundle("full-resource", StatusInfo("heartbeat", "active", 2))
    (entry,) = out["entry"]
    names = [p["name"] for p in entry["resource"]["parameter"]]
    assert names == ["subscription", "topic", "status", "type", "events-since-subscription-start"]


def test_empty_payload_matches_the_ig_example() -> None:
    """payloads.html#empty: no topic, no focus, no entry but the status."""
    out = bundle("empty", StatusInfo("event-notification", "active", 2), (EVENT,))
    assert out["entry"] == [
        status_entry(
            [
                SUBSCRIPTION,
                {"name": "status", "valueCode": "active"},
                {"name": "type", "valueCode": "event-notification"},
                {"name": "events-since-subscription-start", "valueString": "2"},
                {
                    "name": "notification-event",
                    "part": [
                        {"name": "event-number", "valueString": "2"},
                        {"name": "timestamp", "valueInstant": WHEN},
                    ],
                },
            ]
        )
    ]


def test_id_only_payload() -> None:
    """payloads.html#id-only: focus and context references; entries without resources."""
    out = bundle("id-only", StatusInfo("event-notification", "active", 2), (EVENT,))
    status, focus, context = out["entry"]
    event = status["resource"]["parameter"][-1]
    assert event == {
        "name": "notification-event",
        "part": [
            {"name": "event-number", "valueString": "2"},
            {"name": "timestamp", "valueInstant": WHEN},
            {
                "name": "focus",
                "valueReference": {"reference": f"{BASE}/Encounter/{ENCOUNTER['id']}"},
            },
            {"name": "additional-context", "valueReference": {"reference": f"{BASE}/Patient/123"}},
        ],
    }
    assert focus == {
        "fullUrl": f"{BASE}/Encounter/{ENCOUNTER['id']}",
        "request": {"method": "POST", "url": "Encounter"},
        "response": {"status": "201"},
    }
    assert context == {
        "fullUrl": f"{BASE}/Patient/123",
        "request": {"method": "GET", "url": "Patient/123"},
        "response": {"status": "200"},
    }


def test_full_resource_payload() -> None:
    """payloads.html#full-resource: each entry carries its resource."""
    out = bundle("full-resource", StatusInfo("event-notification", "active", 2), (EVENT,))
    assert out["entry"][0]["resource"]["parameter"][1] == TOPIC_PARAM
    assert out["entry"][1]["resource"] == ENCOUNTER
    assert out["entry"][1]["request"] == {"method": "POST", "url": "Encounter"}
    assert out["entry"][2]["resource"] == PATIENT


def test_several_events_share_context_entries_once() -> None:
    update = Event(3, WHEN, "update", {**ENCOUNTER, "id": "e2"}, (PATIENT,))
    out = bundle("full-resource", StatusInfo("event-notification", "active", 3), (EVENT, update))
    urls = [e["fullUrl"] for e in out["entry"][1:]]
    assert urls == [
        f"{BASE}/Encounter/{ENCOUNTER['id']}",
        f"{BASE}/Patient/123",
        f"{BASE}/Encounter/e2",
    ]
    assert out["entry"][3]["request"] == {"method": "PUT", "url": "Encounter/e2"}
    events = [
        p for p in out["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"
    ]
    assert [e["part"][0]["valueString"] for e in events] == ["2", "3"]


def test_deleted_focus_has_no_resource() -> None:
    deleted = Event(4, WHEN, "delete", ENCOUNTER)
    out = bundle("full-resource", StatusInfo("event-notification", "active", 4), (deleted,))
    assert out["entry"][1] == {
        "fullUrl": f"{BASE}/Encounter/{ENCOUNTER['id']}",
        "request": {"method": "DELETE", "url": f"Encounter/{ENCOUNTER['id']}"},
        "response": {"status": "204"},
    }


def test_query_event_for_events_operation() -> None:
    """$events (OperationDefinition backport-subscription-events): a history bundle, the
    status first with type query-event; the requested content overrides the subscription's."""
    out = notification_bundle(
        subscription("id-only"),
        StatusInfo("query-event", "active", 2),
        (EVENT,),
        base=BASE,
        bundle_id="b",
        status_id=STATUS_ID,
        timestamp=WHEN,
        content="full-resource",
    )
    assert out["type"] == "history"
    assert {"name": "type", "valueCode": "query-event"} in out["entry"][0]["resource"]["parameter"]
    assert out["entry"][1]["resource"] == ENCOUNTER


def test_query_status_bundle() -> None:
    """$status (OperationDefinition backport-subscription-status): a searchset of status
    Parameters with type query-status."""
    info = StatusInfo("query-status", "error", 7, ({"coding": [{"code": "no-response"}]},))
    status = status_parameters(subscription(), info, (), base=BASE, status_id="s1")
    assert status["parameter"][-1] == {
        "name": "error",
        "valueCodeableConcept": {"coding": [{"code": "no-response"}]},
    }
    out = status_bundle([status], bundle_id="b", timestamp=WHEN)
    assert out["type"] == "searchset" and out["total"] == 1
    assert out["entry"] == [
        {"fullUrl": "urn:uuid:s1", "resource": status, "search": {"mode": "match"}}
    ]


def test_output_is_byte_stable_and_keeps_decimals() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o",
        "valueQuantity": {"value": Decimal("72.50")},
    }
    event = Event(1, WHEN, "create", observation)
    first = encode(bundle("full-resource", StatusInfo("event-notification", "active", 1), (event,)))
    again = encode(bundle("full-resource", StatusInfo("event-notification", "active", 1), (event,)))
    assert first == again
    assert b'"value":72.50' in first
    assert jsonformat.loads(first)["entry"][1]["resource"]["valueQuantity"]["value"] == Decimal(
        "72.50"
    )


def test_classic_bodies() -> None:
    """R4 subscription.html: no payload, no body; a payload, the resource."""
    classic: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": "c",
        "status": "active",
        "criteria": "Encounter?status=finished",
        "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/e"},
    }
    empty = parse_subscription(classic, lambda url: None)
    assert classic_body(empty, EVENT) is None
    classic["channel"]["payload"] = "application/fhir+json"
    full = parse_subscription(classic, lambda url: None)
    assert classic_body(full, EVENT) == encode(ENCOUNTER)
    assert classic_body(full, Event(1, WHEN, "delete", ENCOUNTER)) is None
    # a classic subscription's status has no topic
    params = status_parameters(
        full, StatusInfo("handshake", "active", 0), (), base=BASE, status_id="x"
    )
    assert [p["name"] for p in params["parameter"]][:2] == ["subscription", "status"]


def test_a_subscription_needs_an_id_to_notify() -> None:
    resource = backport_subscription()
    del resource["id"]
    anonymous = parse_subscription(resource, lambda url: TOPIC)
    with pytest.raises(ValueError, match="id"):
        status_parameters(
            anonymous, StatusInfo("handshake", "requested"), (), base=BASE, status_id="x"
        )
