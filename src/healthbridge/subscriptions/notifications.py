"""Notification bundles and SubscriptionStatus in R4.

Spec: the Backport IG's R4 shapes,
https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription-status-r4.html
(SubscriptionStatus as a ``Parameters``: ``subscription``, ``topic``, ``status``, ``type``,
``events-since-subscription-start``, one ``notification-event`` per event with the parts
``event-number``, ``timestamp``, ``focus``, ``additional-context``, and ``error``) and
https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription-notification-r4.html
(a ``history`` Bundle whose first entry is that Parameters, its request the ``$status`` call).

Payloads (https://hl7.org/fhir/uv/subscriptions-backport/payloads.html):

* ``empty``: no ``topic``, no ``focus``/``additional-context``, no entry but the status;
* ``id-only``: ``focus`` (and ``additional-context``) references; an entry per resource with
  ``fullUrl`` and ``request``/``response`` but no ``resource``;
* ``full-resource``: the same with the resource in each entry (a deleted focus has none: its
  entry carries the DELETE request only).

Types: ``handshake`` and ``heartbeat`` carry no events; ``event-notification`` the events;
``query-event`` answers ``$events`` (a history bundle like a notification); ``query-status``
answers ``$status``, a ``searchset`` of status Parameters (:func:`status_bundle`).

Everything is a pure function of its arguments: ids and timestamps come from the caller, so
the same inputs give the same bytes (:func:`encode`, the project's JSON format).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from healthbridge.fhir import jsonformat
from healthbridge.fhir.types import Resource
from healthbridge.subscriptions.subscription import Content, Subscription
from healthbridge.subscriptions.topics import Interaction

NotificationType = Literal[
    "handshake", "heartbeat", "event-notification", "query-status", "query-event"
]
BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
STATUS_PROFILE: Final = BACKPORT + "backport-subscription-status-r4"
NOTIFICATION_PROFILE: Final = BACKPORT + "backport-subscription-notification-r4"
_METHOD: Final = {"create": "POST", "update": "PUT", "delete": "DELETE"}
_STATUS: Final = {"create": "201", "update": "200", "delete": "204"}


@dataclass(frozen=True, slots=True)
class Event:
    """One triggered event: its number in the subscription, when it happened, the focus
    version (the deleted version on delete) and the resources of its notification shape."""

    number: int
    timestamp: str  # an instant
    interaction: Interaction
    focus: Resource
    context: tuple[Resource, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """What the status Parameters say besides the events."""

    type: NotificationType
    status: str  # the Subscription.status when the notification was made
    events_since_start: int | None = None
    errors: tuple[dict[str, Any], ...] = ()  # CodeableConcepts


def _ref(base: str, resource: Resource) -> str:
    return f"{base}/{resource['resourceType']}/{resource['id']}"


def status_parameters(
    subscription: Subscription,
    info: StatusInfo,
    events: Sequence[Event],
    *,
    base: str,
    status_id: str,
    content: Content | None = None,
) -> Resource:
    """The SubscriptionStatus of one notification or query as an R4 ``Parameters``."""
    if subscription.id is None:
        raise ValueError("a subscription needs an id before it notifies")
    content = content or subscription.content
    params: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{base}/Subscription/{subscription.id}"},
        }
    ]
    if subscription.topic is not None and content != "empty":
        params.append({"name": "topic", "valueCanonical": subscription.topic})
    params.append({"name": "status", "valueCode": info.status})
    params.append({"name": "type", "valueCode": info.type})
    if info.events_since_start is not None:
        params.append(
            {"name": "events-since-subscription-start", "valueString": str(info.events_since_start)}
        )
    params.extend(_event_parameter(e, content, base) for e in events)
    params.extend({"name": "error", "valueCodeableConcept": e} for e in info.errors)
    return {
        "resourceType": "Parameters",
        "id": status_id,
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": params,
    }


def _event_parameter(event: Event, content: Content, base: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "event-number", "valueString": str(event.number)},
        {"name": "timestamp", "valueInstant": event.timestamp},
    ]
    if content != "empty":
        parts.append({"name": "focus", "valueReference": {"reference": _ref(base, event.focus)}})
        parts.extend(
            {"name": "additional-context", "valueReference": {"reference": _ref(base, r)}}
            for r in event.context
        )
    return {"name": "notification-event", "part": parts}


def notification_bundle(
    subscription: Subscription,
    info: StatusInfo,
    events: Sequence[Event] = (),
    *,
    base: str,
    bundle_id: str,
    status_id: str,
    timestamp: str,
    content: Content | None = None,
) -> Resource:
    """A notification (handshake, heartbeat, event-notification) or a ``$events`` answer
    (query-event): a ``history`` Bundle, the status Parameters first."""
    content = content or subscription.content
    status = status_parameters(
        subscription, info, events, base=base, status_id=status_id, content=content
    )
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status_id}",
            "resource": status,
            "request": {"method": "GET", "url": f"{base}/Subscription/{subscription.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        entries.extend(_event_entries(events, content, base))
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": timestamp,
        "entry": entries,
    }


def _event_entries(events: Sequence[Event], content: Content, base: str) -> list[dict[str, Any]]:
    """One entry per focus and context resource (each resource once, first occurrence)."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for event in events:
        items = [(event.focus, event.interaction), *((r, None) for r in event.context)]
        for resource, interaction in items:
            url = _ref(base, resource)
            if url in seen:
                continue
            seen.add(url)
            out.append(_entry(resource, interaction, url, content))
    return out


def _entry(
    resource: Resource, interaction: Interaction | None, url: str, content: Content
) -> dict[str, Any]:
    kind, rid = resource["resourceType"], resource["id"]
    entry: dict[str, Any] = {"fullUrl": url}
    if content == "full-resource" and interaction != "delete":
        entry["resource"] = resource
    if interaction is None:  # additional context: as read now
        entry["request"] = {"method": "GET", "url": f"{kind}/{rid}"}
        entry["response"] = {"status": "200"}
        return entry
    target = kind if interaction == "create" else f"{kind}/{rid}"
    entry["request"] = {"method": _METHOD[interaction], "url": target}
    entry["response"] = {"status": _STATUS[interaction]}
    return entry


def status_bundle(statuses: Sequence[Resource], *, bundle_id: str, timestamp: str) -> Resource:
    """The ``$status`` answer: a ``searchset`` of query-status Parameters, one per
    subscription (OperationDefinition backport-subscription-status)."""
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "searchset",
        "timestamp": timestamp,
        "total": len(statuses),
        "entry": [
            {"fullUrl": f"urn:uuid:{s['id']}", "resource": s, "search": {"mode": "match"}}
            for s in statuses
        ],
    }


def classic_body(subscription: Subscription, event: Event) -> bytes | None:
    """The body of a classic R4 notification (subscription.html#2.46.7.1): nothing without a
    ``payload``, else the resource (nothing for a delete)."""
    if subscription.content != "full-resource" or event.interaction == "delete":
        return None
    return encode(event.focus)


def encode(resource: Resource) -> bytes:
    """Compact, byte-stable JSON (keys in construction order, decimals exact)."""
    return jsonformat.dumps(resource)
