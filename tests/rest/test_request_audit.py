"""Every request through the real app leaves an AuditEvent (IHE BALP), failures included, and
writes are audited from the outbox with their author (SECURITY.md "Audit")."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

PATIENT = {"resourceType": "Patient", "name": [{"family": "Audit"}]}


def events(client: TestClient, query: str, want: int, timeout: float = 10.0) -> list[Any]:
    """The AuditEvents matching ``query``, once at least ``want`` are there (the trail is
    written in the background within a fraction of a second)."""
    deadline = time.monotonic() + timeout
    while True:
        bundle = client.get(f"/fhir/AuditEvent?{query}&_count=100").json()
        found = [e["resource"] for e in bundle.get("entry", [])]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _subtype(event: dict[str, Any]) -> str:
    return str(event["subtype"][0]["code"])


def test_reads_writes_and_failures_are_audited(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=PATIENT)
    assert created.status_code == 201
    pid = created.json()["id"]
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert client.get("/fhir/Patient/nobody-here").status_code == 404
    assert client.get(f"/fhir/Observation?subject=Patient/{pid}").status_code == 200

    mine = events(client, f"patient={pid}", 3)
    kinds = sorted((_subtype(e), e["outcome"]) for e in mine)
    assert ("create", "0") in kinds  # from the outbox, in the same transaction as the write
    assert ("read", "0") in kinds
    failed = [e for e in events(client, "subtype=read", 2) if e["outcome"] != "0"]
    assert failed and failed[0]["outcome"] == "4"
    assert "nobody-here" in failed[0].get("outcomeDesc", "")
    for event in mine:
        assert event["agent"] and event["source"]["observer"]
        assert any(a.get("network", {}).get("address") for a in event["agent"])


def test_the_audit_trail_cannot_be_changed_through_the_api(client: TestClient) -> None:
    client.get("/fhir/Patient/x")
    event = events(client, "subtype=read", 1)[0]
    for response in (
        client.put(f"/fhir/AuditEvent/{event['id']}", json=event),
        client.delete(f"/fhir/AuditEvent/{event['id']}"),
        client.post("/fhir/AuditEvent", json={k: v for k, v in event.items() if k != "id"}),
        client.patch(
            f"/fhir/AuditEvent/{event['id']}",
            content=b'[{"op": "remove", "path": "/outcomeDesc"}]',
            headers={"Content-Type": "application/json-patch+json"},
        ),
        client.post(
            "/fhir",
            json={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": event,
                        "request": {"method": "PUT", "url": f"AuditEvent/{event['id']}"},
                    }
                ],
            },
        ),
    ):
        assert response.status_code == 405, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    again = client.get(f"/fhir/AuditEvent/{event['id']}").json()
    assert again == event
