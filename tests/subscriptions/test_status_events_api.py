"""``$status``, ``$events`` and the topics in the CapabilityStatement.

https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-status.html,
https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-events.html,
https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-capabilitystatement-subscriptiontopic-canonical.html
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from healthbridge.subscriptions.feature import TOPIC_CANONICAL
from tests.auth.conftest import Harness
from tests.subscriptions.api import (
    LAB_TOPIC,
    USER_SCOPES,
    Inbox,
    bearer,
    harness,
    observation,
    patient_token,
    status_of,
    subscription,
    token,
)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    running = Inbox()
    yield running
    running.close()


@pytest.fixture
def h(tmp_path: Path, inbox: Inbox) -> Iterator[Harness]:
    yield from harness(tmp_path, inbox.receiver)


def _setup(h: Harness, inbox: Inbox) -> tuple[str, str, list[str]]:
    """A patient app's subscription that got its handshake and three events."""
    owner = patient_token(h, "p1")
    made = h.client.post(
        "/fhir/Subscription", json=subscription(inbox.receiver.url()), headers=bearer(owner)
    )
    assert made.status_code == 201, made.text
    writer = token(h, "admin", USER_SCOPES)
    focus = []
    for value in (1.0, 2.0, 3.0):
        written = h.client.post(
            "/fhir/Observation", json=observation("p1", value), headers=bearer(writer)
        )
        focus.append(written.json()["id"])
    inbox.wait_for(4)
    return made.json()["id"], owner, focus


def test_status_instance_and_type(h: Harness, inbox: Inbox) -> None:
    id, owner, _ = _setup(h, inbox)
    for url in (f"/fhir/Subscription/{id}/$status", f"/fhir/Subscription/$status?id={id}"):
        answer = h.client.get(url, headers=bearer(owner))
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        assert (bundle["type"], bundle["total"]) == ("searchset", 1)
        status = status_of({"entry": bundle["entry"]})
        assert (status["type"], status["status"]) == ("query-status", "active")
        assert status["events-since-subscription-start"] == "3"
        assert status["topic"] == LAB_TOPIC
    listed = h.client.get("/fhir/Subscription/$status", headers=bearer(owner)).json()
    assert [
        e["resource"]["parameter"][0]["valueReference"]["reference"] for e in listed["entry"]
    ] == [f"http://localhost/fhir/Subscription/{id}"]


def test_events_by_number(h: Harness, inbox: Inbox) -> None:
    id, owner, focus = _setup(h, inbox)
    answer = h.client.get(
        f"/fhir/Subscription/{id}/$events?eventsSinceNumber=2&eventsUntilNumber=3",
        headers=bearer(owner),
    )
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert bundle["type"] == "history"
    status = status_of(bundle)
    assert status["type"] == "query-event"
    assert [e["event-number"]["valueString"] for e in status["events"]] == ["2", "3"]
    assert [e["resource"]["id"] for e in bundle["entry"][1:]] == focus[1:]
    ids_only = h.client.get(
        f"/fhir/Subscription/{id}/$events?content=id-only", headers=bearer(owner)
    ).json()
    assert len(status_of(ids_only)["events"]) == 3
    assert all("resource" not in e for e in ids_only["entry"][1:])


@pytest.mark.parametrize(
    "query", ["eventsSinceNumber=abc", "eventsUntilNumber=-1", "content=everything"]
)
def test_bad_events_parameters_are_outcomes(h: Harness, inbox: Inbox, query: str) -> None:
    id, owner, _ = _setup(h, inbox)
    answer = h.client.get(f"/fhir/Subscription/{id}/$events?{query}", headers=bearer(owner))
    assert answer.status_code == 400, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_only_the_owner_or_an_admin_may_ask(h: Harness, inbox: Inbox) -> None:
    id, _, _ = _setup(h, inbox)
    stranger = patient_token(h, "p2")
    for url in (f"/fhir/Subscription/{id}/$status", f"/fhir/Subscription/{id}/$events"):
        refused = h.client.get(url, headers=bearer(stranger))  # as if it did not exist
        assert refused.status_code == 404, refused.text
        assert h.client.get(url, headers=bearer(token(h, "admin", USER_SCOPES))).status_code == 200
    assert h.client.get("/fhir/Subscription/$status", headers=bearer(stranger)).json()["total"] == 0
    missing = h.client.get("/fhir/Subscription/nope/$status", headers=bearer(stranger))
    assert missing.status_code == 404
    assert (
        missing.json()["issue"][0]["diagnostics"].replace("nope", id)
        == refused.json()["issue"][0]["diagnostics"]
    )


def test_subscriptions_are_private_to_their_owners(h: Harness, inbox: Inbox) -> None:
    """SECURITY.md: no cross-patient access. A Subscription's endpoint and channel headers may
    hold the receiver's credentials: other users' tokens neither read nor search them."""
    id, _, _ = _setup(h, inbox)
    stranger = patient_token(h, "p2")
    for url in (
        f"/fhir/Subscription/{id}",
        "/fhir/Subscription",
        f"/fhir/Subscription/{id}/_history",
    ):
        refused = h.client.get(url, headers=bearer(stranger))
        assert refused.status_code == 403, refused.text
        assert "endpoint" not in refused.text
    admin = token(h, "admin", USER_SCOPES)
    assert h.client.get(f"/fhir/Subscription/{id}", headers=bearer(admin)).status_code == 200


def test_capability_statement_lists_the_topics(h: Harness) -> None:
    statement = h.client.get("/fhir/metadata").json()
    [entry] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    topics = [e["valueCanonical"] for e in entry["extension"] if e["url"] == TOPIC_CANONICAL]
    assert LAB_TOPIC in [t.partition("|")[0] for t in topics] and len(topics) == 6
    operations = {o["name"] for o in entry.get("operation", [])}
    assert {"status", "events"} <= operations
