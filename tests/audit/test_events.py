"""The AuditEvent builders: valid R4 AuditEvents (https://hl7.org/fhir/R4/auditevent.html) in
the IHE BALP shapes (https://profiles.ihe.net/ITI/BALP/): RESTful read, query, create, failures,
authentication and token events, and committed changes from the outbox."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from healthbridge.audit.events import AuditSource, change_entry, record_entries
from healthbridge.audit.records import NOBODY, AuditRecord, Who, written_through_outbox
from healthbridge.fhir.validation import Validator
from healthbridge.store.audit import AuditEntry, with_id
from healthbridge.store.repository import OutboxEvent

SOURCE = AuditSource("https://fhir.example.org/fhir", "site-1")
ALICE = Who(
    subject="alice",
    fhir_user="Practitioner/7",
    client_id="app-1",
    jti="tok-1",
    address="203.0.113.9",
    patient="p1",
)
RECORDED = 1_767_268_800_123_456  # 2026-01-01T12:00:00.123456Z


def event(entry: AuditEntry, validator: Validator) -> dict[str, Any]:
    """The stored form (with an id), checked against the R4 definitions."""
    resource: dict[str, Any] = json.loads(with_id(entry.body, 1))
    assert validator.validate(resource) == []
    return resource


def agent(resource: dict[str, Any], code: str) -> dict[str, Any]:
    return next(a for a in resource["agent"] if a["type"]["coding"][0]["code"] == code)


def entity(resource: dict[str, Any], role: str) -> dict[str, Any]:
    return next(e for e in resource["entity"] if e["role"]["code"] == role)


def test_a_read_names_user_client_server_resource_and_patient(validator: Validator) -> None:
    record = AuditRecord(
        interaction="read",
        resource_type="Observation",
        id="o1",
        version="3",
        who=ALICE,
        recorded=RECORDED,
    )
    [entry] = record_entries(record, SOURCE, ["p1"])
    resource = event(entry, validator)
    assert resource["type"] == {
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "Restful Operation",
    }
    assert resource["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}
    ]
    assert (resource["action"], resource["outcome"]) == ("R", "0")
    assert resource["recorded"] == "2026-01-01T12:00:00.123456Z"
    user = agent(resource, "IRCP")
    assert user["who"] == {"reference": "Practitioner/7", "identifier": {"value": "alice"}}
    assert user["requestor"] is True
    assert user["policy"] == ["urn:ietf:params:oauth:jti:tok-1"]
    client = agent(resource, "110150")
    assert client["who"] == {"identifier": {"value": "app-1"}}
    assert client["network"] == {"address": "203.0.113.9", "type": "2"}
    assert client["requestor"] is False
    server = agent(resource, "110153")  # data leaves the server: Source Role ID
    assert server["network"] == {"address": "https://fhir.example.org/fhir", "type": "5"}
    assert resource["source"]["observer"]["identifier"]["value"] == SOURCE.base_url
    assert entity(resource, "4")["what"] == {"reference": "Observation/o1/_history/3"}
    assert entity(resource, "1")["what"] == {"reference": "Patient/p1"}
    assert (entry.type, entry.subtype, entry.action, entry.outcome) == ("rest", "read", "R", "0")
    assert (entry.patient, entry.agent, entry.client) == ("p1", "Practitioner/7", "app-1")
    assert entry.recorded == RECORDED and entry.source_seq is None


def test_a_search_is_one_event_per_patient_with_the_query(validator: Validator) -> None:
    query = "GET /fhir/Observation?code=8302-2&_count=10"
    record = AuditRecord(
        interaction="search-type", resource_type="Observation", query=query, who=ALICE
    )
    entries = record_entries(record, SOURCE, ["p1", "p2"])
    assert [e.patient for e in entries] == ["p1", "p2"]
    for entry, patient in zip(entries, ["p1", "p2"], strict=True):
        resource = event(entry, validator)
        assert resource["action"] == "E"
        assert entity(resource, "1")["what"]["reference"] == f"Patient/{patient}"
        assert base64.b64decode(entity(resource, "24")["query"]).decode() == query
        assert agent(resource, "110152")  # a query: the server is the Destination Role ID
        assert all(e["role"]["code"] != "4" for e in resource["entity"])  # no single resource
    [alone] = record_entries(record, SOURCE, [])
    assert alone.patient is None
    assert all(e["role"]["code"] != "1" for e in event(alone, validator)["entity"])


@pytest.mark.parametrize(
    ("status", "outcome"), [(401, "4"), (403, "4"), (404, "4"), (500, "8"), (201, "0")]
)
def test_failures_have_an_outcome_and_a_description(
    validator: Validator, status: int, outcome: str
) -> None:
    record = AuditRecord(interaction="create", resource_type="Patient", status=status, who=ALICE)
    [entry] = record_entries(record, SOURCE, [])
    resource = event(entry, validator)
    assert resource["outcome"] == outcome
    assert resource["action"] == "C"
    assert agent(resource, "AUT")["requestor"] is True  # BALP: the user authored the create
    if outcome != "0":
        assert resource["outcomeDesc"] == f"HTTP {status}"
    else:
        assert "outcomeDesc" not in resource


def test_an_anonymous_request_names_its_address(validator: Validator) -> None:
    record = AuditRecord(
        interaction="read",
        resource_type="Patient",
        id="p1",
        status=401,
        description="No access token",
        who=Who(address="2001:db8::1"),
    )
    [entry] = record_entries(record, SOURCE, [])
    resource = event(entry, validator)
    client = agent(resource, "110150")
    assert client == {
        "type": client["type"],
        "requestor": True,
        "network": {"address": "2001:db8::1", "type": "2"},
    }
    assert resource["outcomeDesc"] == "No access token"
    assert entry.agent is None and entry.client is None


def test_a_backend_service_is_the_requestor_and_holds_the_token(validator: Validator) -> None:
    who = Who(client_id="bulk-exporter", jti="t9", address="exporter.internal")
    record = AuditRecord(interaction="operation", operation="$export", who=who)
    resource = event(record_entries(record, SOURCE, [])[0], validator)
    client = agent(resource, "110150")
    assert client["requestor"] is True
    assert client["policy"] == ["urn:ietf:params:oauth:jti:t9"]
    assert client["network"]["type"] == "1"  # a machine name
    assert resource["subtype"][1]["code"] == "$export"


@pytest.mark.parametrize(
    ("kind", "subtype", "outcome"),
    [
        ("login", "110122", "0"),
        ("login-failed", "110122", "4"),
        ("logout", "110123", "0"),
        ("token-issue", "token-issue", "0"),
        ("token-refresh", "token-refresh", "0"),
        ("token-revoke", "token-revoke", "0"),
    ],
)
def test_authentication_events(validator: Validator, kind: Any, subtype: str, outcome: str) -> None:
    record = AuditRecord(kind=kind, who=ALICE, recorded=RECORDED)
    [entry] = record_entries(record, SOURCE, [])
    resource = event(entry, validator)
    assert resource["type"]["code"] == "110114"  # DICOM User Authentication
    assert resource["subtype"][0]["code"] == subtype
    assert (resource["action"], resource["outcome"]) == ("E", outcome)
    assert (entry.type, entry.subtype) == ("110114", subtype)
    token = entity(resource, "13")
    assert token["what"]["identifier"]["value"] == "urn:ietf:params:oauth:jti:tok-1"
    if kind in ("token-issue", "token-refresh"):
        assert resource["subtype"][1]["code"] == "ITI-71"


def test_a_committed_change_names_its_author_from_the_outbox(validator: Validator) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    change = OutboxEvent(42, "Observation", "o1", 2, "update", moment, ALICE.actor())
    entry = change_entry(change, ["p1", "p2"], SOURCE)
    resource = event(entry, validator)
    assert resource["subtype"][0]["code"] == "update"
    assert (resource["action"], resource["outcome"]) == ("U", "0")
    assert resource["recorded"] == "2026-01-02T03:04:05.000006Z"
    assert agent(resource, "AUT")["who"]["reference"] == "Practitioner/7"
    assert entity(resource, "4")["what"]["reference"] == "Observation/o1/_history/2"
    patients = [e["what"]["reference"] for e in resource["entity"] if e["role"]["code"] == "1"]
    assert patients == ["Patient/p1", "Patient/p2"]
    assert (entry.source_seq, entry.patient, entry.agent) == (42, "p1", "Practitioner/7")
    deleted = change_entry(OutboxEvent(43, "Patient", "p1", 3, "delete", moment, None), [], SOURCE)
    resource = event(deleted, validator)
    assert resource["action"] == "D"
    assert [a["type"]["coding"][0]["code"] for a in resource["agent"]] == ["110152"]


def test_who_round_trips_through_the_outbox_actor() -> None:
    assert Who.from_actor(ALICE.actor()) == ALICE
    assert json.loads(Who(subject="bob").actor()) == {"subject": "bob"}
    assert Who.from_actor(None) is NOBODY
    assert Who.from_actor("not json") is NOBODY
    assert Who.from_actor('{"subject": "x", "other": 1}') == Who(subject="x")


@pytest.mark.parametrize(
    ("interaction", "status", "etag", "relayed"),
    [
        ("create", 201, True, True),
        ("create", 200, True, False),  # conditional create found a match: a disclosure
        ("update", 200, True, True),
        ("update", 201, True, True),
        ("patch", 200, True, True),
        ("delete", 204, True, True),
        ("delete", 204, False, False),  # nothing was there to delete
        ("update", 412, False, False),
        ("read", 200, True, False),
        ("transaction", 200, False, False),
    ],
)
def test_which_writes_the_outbox_relay_audits(
    interaction: str, status: int, etag: bool, relayed: bool
) -> None:
    assert written_through_outbox(interaction, status, etag) is relayed
