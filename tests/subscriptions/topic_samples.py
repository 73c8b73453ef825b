"""Topics and subscriptions shaped like the Subscriptions Backport IG examples
(https://hl7.org/fhir/uv/subscriptions-backport/artifacts.html): an encounter-complete topic as
an R4 Basic with the cross-version extensions, the same topic as SubscriptionTopic JSON, and a
backport Subscription on it."""

from __future__ import annotations

from typing import Any

R5X = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
R43X = "http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic."
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC_URL = "http://example.org/fhir/SubscriptionTopic/encounter-complete"


def basic_topic() -> dict[str, Any]:
    """An encounter-complete topic carried by a Basic (Basic-r4-encounter-complete's shape)."""
    return {
        "resourceType": "Basic",
        "id": "encounter-complete",
        "meta": {
            "profile": ["http://hl7.org/fhir/5.0/StructureDefinition/profile-SubscriptionTopic"]
        },
        "extension": [
            {"url": R5X + "url", "valueUri": TOPIC_URL},
            {"url": R5X + "version", "valueString": "1.2.0"},
            {"url": R5X + "title", "valueString": "Encounter complete"},
            {
                "url": R43X + "resourceTrigger",
                "extension": [
                    {"url": "description", "valueMarkdown": "An encounter completes."},
                    {
                        "url": "resource",
                        "valueUri": "http://hl7.org/fhir/StructureDefinition/Encounter",
                    },
                    {"url": "supportedInteraction", "valueCode": "create"},
                    {"url": "supportedInteraction", "valueCode": "update"},
                    {
                        "url": "queryCriteria",
                        "extension": [
                            {"url": "previous", "valueString": "status:not=finished"},
                            {"url": "resultForCreate", "valueCode": "test-passes"},
                            {"url": "current", "valueString": "status=finished"},
                            {"url": "resultForDelete", "valueCode": "test-fails"},
                            {"url": "requireBoth", "valueBoolean": True},
                        ],
                    },
                    {
                        "url": "fhirPathCriteria",
                        "valueString": "(%previous.id.empty() or (%previous.status != 'finished'))"
                        " and (%current.status = 'finished')",
                    },
                ],
            },
            {
                "url": R43X + "canFilterBy",
                "extension": [
                    {"url": "resource", "valueUri": "Encounter"},
                    {"url": "filterParameter", "valueString": "patient"},
                ],
            },
            {
                "url": R43X + "canFilterBy",
                "extension": [
                    {"url": "resource", "valueUri": "Encounter"},
                    {"url": "filterParameter", "valueString": "length"},
                    {"url": "modifier", "valueCode": "gt"},
                    {"url": "modifier", "valueCode": "lt"},
                ],
            },
            {
                "url": R43X + "canFilterBy",
                "extension": [
                    {"url": "resource", "valueUri": "Encounter"},
                    {"url": "filterParameter", "valueString": "class"},
                    {"url": "modifier", "valueCode": "not"},
                ],
            },
            {
                "url": R43X + "notificationShape",
                "extension": [
                    {"url": "resource", "valueUri": "Encounter"},
                    {"url": "include", "valueString": "Encounter:patient&iterate=Patient.link"},
                    {"url": "include", "valueString": "Encounter:location"},
                    {"url": "revInclude", "valueString": "Encounter:subject"},
                    {
                        "url": BACKPORT + "backport-related-query",
                        "extension": [{"url": "query", "valueString": "Encounter/[id]/$x"}],
                    },
                ],
            },
        ],
        "modifierExtension": [{"url": R5X + "status", "valueCode": "draft"}],
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
    }


def json_topic() -> dict[str, Any]:
    """The same topic as R5 SubscriptionTopic JSON."""
    return {
        "resourceType": "SubscriptionTopic",
        "id": "encounter-complete",
        "url": TOPIC_URL,
        "version": "1.2.0",
        "title": "Encounter complete",
        "status": "draft",
        "resourceTrigger": [
            {
                "description": "An encounter completes.",
                "resource": "http://hl7.org/fhir/StructureDefinition/Encounter",
                "supportedInteraction": ["create", "update"],
                "queryCriteria": {
                    "previous": "status:not=finished",
                    "resultForCreate": "test-passes",
                    "current": "status=finished",
                    "resultForDelete": "test-fails",
                    "requireBoth": True,
                },
                "fhirPathCriteria": "(%previous.id.empty() or (%previous.status != 'finished'))"
                " and (%current.status = 'finished')",
            }
        ],
        "canFilterBy": [
            {"resource": "Encounter", "filterParameter": "patient"},
            {"resource": "Encounter", "filterParameter": "length", "modifier": ["gt", "lt"]},
            {"resource": "Encounter", "filterParameter": "class", "modifier": ["not"]},
        ],
        "notificationShape": [
            {
                "resource": "Encounter",
                "include": ["Encounter:patient&iterate=Patient.link", "Encounter:location"],
                "revInclude": ["Encounter:subject"],
            }
        ],
    }


def backport_subscription(**changes: Any) -> dict[str, Any]:
    """BackportSubscriptionExampleAdmission's shape, on the encounter-complete topic."""
    subscription: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": "admission",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "active",
        "end": "2030-12-31T12:00:00Z",
        "reason": "Encounters of one patient completing",
        "criteria": TOPIC_URL,
        "_criteria": {
            "extension": [
                {
                    "url": BACKPORT + "backport-filter-criteria",
                    "valueString": "Encounter?patient=Patient/123",
                }
            ]
        },
        "channel": {
            "extension": [
                {"url": BACKPORT + "backport-heartbeat-period", "valueUnsignedInt": 86400},
                {"url": BACKPORT + "backport-timeout", "valueUnsignedInt": 60},
                {"url": BACKPORT + "backport-max-count", "valuePositiveInt": 20},
            ],
            "type": "rest-hook",
            "endpoint": "https://example.org/Endpoints/d7dcc004-808d-452b-8030-3a3a13cd871d",
            "header": ["Authorization: Bearer secret-token-abc-123"],
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": BACKPORT + "backport-payload-content", "valueCode": "id-only"}
                ]
            },
        },
    }
    subscription.update(changes)
    return subscription


def filters(*values: str) -> dict[str, Any]:
    """A ``_criteria`` element with these backport filter criteria."""
    return {
        "extension": [
            {"url": BACKPORT + "backport-filter-criteria", "valueString": v} for v in values
        ]
    }
