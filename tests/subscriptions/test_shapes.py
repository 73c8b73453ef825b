"""Notification shapes (R5 SubscriptionTopic.notificationShape,
https://hl7.org/fhir/R5/subscriptiontopic-definitions.html#SubscriptionTopic.notificationShape):
includes resolved from the focus's own references and read as the owner may, the rest
(revIncludes) searched; the same resources a search with those parameters would include."""

from __future__ import annotations

from typing import Any

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.security.access import AccessPolicy
from healthbridge.security.context import AccessContext
from healthbridge.security.scopes import parse_scopes
from healthbridge.store.memory import MemoryRepository
from healthbridge.subscriptions.shapes import context, shape_of
from healthbridge.subscriptions.topics import NotificationShape, Topic

DEFINITIONS = load_definitions()
SEARCH = SearchParser(DEFINITIONS)
REPORT = {
    "resourceType": "DiagnosticReport",
    "id": "r1",
    "status": "final",
    "code": {"text": "panel"},
    "subject": {"reference": "Patient/p1"},
    "result": [{"reference": "Observation/o1"}, {"reference": "Observation/o2"}],
    "performer": [{"reference": "Practitioner/d1"}],
}


def _topic(*shapes: NotificationShape) -> Topic:
    return Topic(url="http://example.org/t", resource_triggers=(), notification_shapes=shapes)


async def _filled(repo: MemoryRepository) -> None:
    await repo.update("Patient", "p1", {"resourceType": "Patient", "id": "p1"})
    await repo.update("Patient", "p2", {"resourceType": "Patient", "id": "p2"})
    await repo.update("Practitioner", "d1", {"resourceType": "Practitioner", "id": "d1"})
    for id, patient in (("o1", "p1"), ("o2", "p2")):
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": id,
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{patient}"},
        }
        await repo.update("Observation", id, observation)
    await repo.update("DiagnosticReport", "r1", REPORT)
    await repo.update(
        "Provenance",
        "v1",
        {
            "resourceType": "Provenance",
            "id": "v1",
            "target": [{"reference": "DiagnosticReport/r1"}],
            "recorded": "2026-01-01T00:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/d1"}}],
        },
    )


async def test_includes_are_read_directly_and_revincludes_searched() -> None:
    repo = MemoryRepository()
    await _filled(repo)
    shape = shape_of(
        SEARCH,
        _topic(
            NotificationShape(
                "DiagnosticReport",
                include=("DiagnosticReport:subject", "DiagnosticReport:result:Observation"),
                rev_include=("Provenance:target",),
            )
        ),
        "DiagnosticReport",
        "r1",
    )
    assert shape.includes == (("subject", None), ("result", "Observation"))
    assert shape.search is not None
    found = await context(repo, Indexer(DEFINITIONS), REPORT, shape)
    assert [f"{r['resourceType']}/{r['id']}" for r in found] == [
        "Patient/p1",
        "Observation/o1",
        "Observation/o2",
        "Provenance/v1",
    ]
    # the target type filters: results are Observations, never the performer
    only = shape_of(
        SEARCH,
        _topic(
            NotificationShape("DiagnosticReport", include=("DiagnosticReport:performer:Patient",))
        ),
        "DiagnosticReport",
        "r1",
    )
    assert await context(repo, Indexer(DEFINITIONS), REPORT, only) == ()
    assert shape_of(SEARCH, _topic(), "DiagnosticReport", "r1").includes == ()


async def test_what_the_owner_may_not_read_is_left_out() -> None:
    """A patient app owning the subscription: p1's resources come along, p2's Observation (a
    result of the same report) does not, exactly as a search include would drop it."""
    repo = MemoryRepository()
    await _filled(repo)
    app = AccessContext(parse_scopes("patient/*.rs"), patient="p1", client_id="app")
    scoped = AccessPolicy(SEARCH).wrap(repo, app)
    shape = shape_of(
        SEARCH,
        _topic(NotificationShape("DiagnosticReport", include=("DiagnosticReport:result",))),
        "DiagnosticReport",
        "r1",
    )
    found = await context(scoped, Indexer(DEFINITIONS), REPORT, shape)
    assert [f"{r['resourceType']}/{r['id']}" for r in found] == ["Observation/o1"]
