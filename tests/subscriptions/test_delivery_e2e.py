"""End to end: Observations written through the API reach a real loopback receiver.

Backport IG: https://hl7.org/fhir/uv/subscriptions-backport/workflow.html (handshake, then
event notifications numbered from 1), notifications.html (the history Bundle),
safety_security.html (a notification carries only what the subscriber may read).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository
from healthbridge.subscriptions.channels.signature import HEADER, verify_signature
from tests.auth.conftest import BASE, FHIR, Harness
from tests.subscriptions.api import (
    PATIENT_SCOPES,
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
from tests.support import databases
from tests.support.databases import BACKEND_PARAMS, PostgresDatabase, sqlite_url
from tests.support.http_receiver import Answer, Received

FAST: dict[str, Any] = {"subscription_retry_base_seconds": 0.1}


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    running = Inbox()
    yield running
    running.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    with databases.postgres_database() as db:
        yield db


@pytest.fixture(params=BACKEND_PARAMS)
def h(
    tmp_path: Path,
    inbox: Inbox,
    request: pytest.FixtureRequest,
    postgres_database: PostgresDatabase,
) -> Iterator[Harness]:
    if request.param == "postgresql":
        postgres_database.require()
    yield from harness(tmp_path, inbox.receiver, request.param, postgres_database, **FAST)


def _subscribe(h: Harness, inbox: Inbox, bearer_token: str, **kw: Any) -> tuple[str, str]:
    made = h.client.post(
        "/fhir/Subscription",
        json=subscription(inbox.receiver.url(), **kw),
        headers=bearer(bearer_token),
    )
    assert made.status_code == 201, made.text
    _reference, secret = made.headers["x-subscription-secret"].split(" ")
    return made.json()["id"], secret


def _write(h: Harness, writer: str, patient: str) -> tuple[str, float]:
    made = h.client.post("/fhir/Observation", json=observation(patient), headers=bearer(writer))
    assert made.status_code == 201, made.text
    return made.json()["id"], time.monotonic()


def test_handshake_then_events_in_order_signed_and_only_the_owners_patient(
    h: Harness, inbox: Inbox
) -> None:
    """A patient-context subscription without filters: the handshake, then one notification per
    Observation of ITS patient, numbered 1..N in order, each signed; the other patient's
    Observations are never sent (the owner may not read them)."""
    id, secret = _subscribe(h, inbox, patient_token(h, "p1"))
    handshake = inbox.wait_for(1)[0]
    assert status_of(handshake)["type"] == "handshake"
    writer = token(h, "admin", USER_SCOPES)
    mine, latencies = [], []
    for n in range(1, 6):
        _write(h, writer, "p2")  # another patient's: never notified
        focus, written = _write(h, writer, "p1")
        mine.append(focus)
        inbox.wait_for(1 + n)
        latencies.append(inbox.arrivals[n][0] - written)
    time.sleep(0.5)  # anything about p2 would have arrived by now
    assert len(inbox.arrivals) == 6
    for n, (_, got) in enumerate(inbox.arrivals[1:], start=1):
        note = inbox.notifications()[n]
        status = status_of(note)
        assert status["type"] == "event-notification"
        assert status["subscription"]["reference"].endswith(f"/Subscription/{id}")
        [event] = status["events"]
        assert event["event-number"]["valueString"] == str(n)
        assert event["focus"]["valueReference"]["reference"].endswith(f"Observation/{mine[n - 1]}")
        resource = note["entry"][1]["resource"]
        assert resource["subject"]["reference"] == "Patient/p1"
        assert verify_signature(secret, got.headers[HEADER.lower()], got.body)
        assert not verify_signature("another secret", got.headers[HEADER.lower()], got.body)
    print(f"commit-to-delivery latency: {[round(x * 1000) for x in latencies]} ms")
    state = h.run(h.repo.subscriptions.status(id))
    assert state is not None
    assert (state.status, state.events_since_start, state.last_delivered) == ("active", 5, 5)
    # each notification is audited as a disclosure to the owner (BALP read, the patient's)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = h.run(h.repo.audit.scan(0, 10_000))
        disclosed = [r for r in rows if f"Subscription/{id} event".encode() in r.content]
        if len(disclosed) == 5:
            break
        time.sleep(0.05)
    assert len(disclosed) == 5
    assert {(r.action, r.outcome, r.patient, r.client) for r in disclosed} == {
        ("R", "0", "p1", "app")
    }


def test_revoking_the_owners_grant_turns_its_subscription_off(h: Harness, inbox: Inbox) -> None:
    """RFC 7009 (revocation at once) and Backport safety_security.html: the app revokes its
    refresh token, so the grant its subscription was made under is gone: no notification is
    sent in its name any more, and $status says why.
    Writing the Subscription again under a new grant brings it back."""
    params = h.authorize_params(scope=PATIENT_SCOPES + " offline_access")
    granted = h.exchange(params, h.code_for(params, "doc", patient="p1")).json()
    id, _secret = _subscribe(h, inbox, granted["access_token"])
    inbox.wait_for(1)  # the handshake
    writer = token(h, "admin", USER_SCOPES)
    _write(h, writer, "p1")
    assert status_of(inbox.wait_for(2)[1])["type"] == "event-notification"
    revoked = h.client.post(
        "/auth/revoke", data={"token": granted["refresh_token"], "client_id": "app"}
    )
    assert revoked.status_code == 200
    _write(h, writer, "p1")
    deadline = time.monotonic() + 10
    while (state := h.run(h.repo.subscriptions.status(id))) is None or state.status != "off":
        assert time.monotonic() < deadline, "the subscription was not turned off"
        time.sleep(0.05)
    assert "revoked" in (state.error or "")
    time.sleep(0.5)  # a notification sent anyway would have arrived by now
    assert len(inbox.arrivals) == 2
    # the same user authorizes the app again and writes the subscription: it resumes
    again = patient_token(h, "p1")
    body = {**subscription(inbox.receiver.url()), "id": id}  # the app's own copy
    rewritten = h.client.put(f"/fhir/Subscription/{id}", json=body, headers=bearer(again))
    assert rewritten.status_code == 200, rewritten.text
    inbox.wait_for(3)  # a new handshake
    _write(h, writer, "p1")
    assert status_of(inbox.wait_for(4)[3])["type"] == "event-notification"


def test_the_topics_notification_shape_rides_along_as_the_owner_reads_it(
    h: Harness, inbox: Inbox
) -> None:
    """The lab topic's shape includes the Observation's patient: a full-resource notification
    carries Patient/p1 as additional context, read with the owner's access (a patient app of
    p1 may read it), once per notification."""
    _subscribe(h, inbox, patient_token(h, "p1"))
    inbox.wait_for(1)
    focus, _ = _write(h, token(h, "admin", USER_SCOPES), "p1")
    note = inbox.wait_for(2)[1]
    [event] = status_of(note)["events"]
    assert event["focus"]["valueReference"]["reference"].endswith(f"Observation/{focus}")
    assert event["additional-context"]["valueReference"]["reference"].endswith("Patient/p1")
    shown = [e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in note["entry"][1:]]
    assert shown == [f"Observation/{focus}", "Patient/p1"]
    assert note["entry"][2]["request"] == {"method": "GET", "url": "Patient/p1"}


def test_a_shape_resource_the_owner_may_not_read_is_left_out(h: Harness, inbox: Inbox) -> None:
    """An Observation of p1 pointing at an Encounter of p2: p1's app is sent its own Patient,
    never the other patient's Encounter (includes are checked like any search include)."""
    admin = token(h, "admin", USER_SCOPES)
    other = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p2"},
    }
    made = h.client.put("/fhir/Encounter/e-p2", json=other | {"id": "e-p2"}, headers=bearer(admin))
    assert made.status_code in (200, 201), made.text
    _subscribe(h, inbox, patient_token(h, "p1"))
    inbox.wait_for(1)
    body = observation("p1") | {"encounter": {"reference": "Encounter/e-p2"}}
    written = h.client.post("/fhir/Observation", json=body, headers=bearer(admin))
    assert written.status_code == 201, written.text
    note = inbox.wait_for(2)[1]
    shown = [e["fullUrl"].split("/fhir/")[1] for e in note["entry"][1:]]
    assert shown == [f"Observation/{written.json()['id']}", "Patient/p1"]
    assert not any(e["fullUrl"].endswith("/Encounter/e-p2") for e in note["entry"])
    [event] = status_of(note)["events"]
    assert event["additional-context"]["valueReference"]["reference"].endswith("Patient/p1")


def test_a_failed_delivery_is_retried(tmp_path: Path) -> None:
    """The receiver answers 500 once: the event arrives again after the backoff, then the
    next ones, still in order."""
    inbox = Inbox(statuses=(200, 500))  # the handshake passes, the first event fails once
    try:
        for h in harness(tmp_path, inbox.receiver, **FAST):
            id, _ = _subscribe(h, inbox, token(h, "admin", USER_SCOPES))
            inbox.wait_for(1)
            writer = token(h, "admin", USER_SCOPES)
            _write(h, writer, "p1")
            _write(h, writer, "p2")
            numbers = [
                status_of(n)["events"][0]["event-number"]["valueString"]
                for n in inbox.wait_for(4)[1:]
            ]
            assert numbers == ["1", "1", "2"]
            assert inbox.arrivals[2][0] - inbox.arrivals[1][0] >= 0.05  # after a backoff
            # The receiver has event 2; the worker records it delivered just after the answer.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                state = h.run(h.repo.subscriptions.status(id))
                if state is not None and state.last_delivered == 2:
                    break
                time.sleep(0.01)
            assert state is not None and (state.failures, state.last_delivered) == (0, 2)
    finally:
        inbox.close()


def test_consecutive_failures_set_error_and_gone_is_dead(tmp_path: Path) -> None:
    """After subscription_max_failures failed deliveries in a row the subscription is
    ``error`` with the reason; nothing more is tried."""
    inbox = Inbox(statuses=(200, 500, 503, 500, 500))
    try:
        for h in harness(tmp_path, inbox.receiver, subscription_max_failures=3, **FAST):
            id, _ = _subscribe(h, inbox, token(h, "admin", USER_SCOPES))
            inbox.wait_for(1)
            _write(h, token(h, "admin", USER_SCOPES), "p1")
            inbox.wait_for(4)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                state = h.run(h.repo.subscriptions.status(id))
                if state is not None and state.status == "error":
                    break
                time.sleep(0.01)
            assert state is not None and state.status == "error"
            assert state.error is not None and "3 deliveries failed" in state.error
            time.sleep(0.5)
            assert len(inbox.arrivals) == 4
    finally:
        inbox.close()


def test_a_failed_handshake_sets_error(tmp_path: Path) -> None:
    inbox = Inbox(statuses=(410,))
    try:
        for h in harness(tmp_path, inbox.receiver, **FAST):
            id, _ = _subscribe(h, inbox, token(h, "admin", USER_SCOPES))
            inbox.wait_for(1)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                state = h.run(h.repo.subscriptions.status(id))
                if state is not None and state.status == "error":
                    break
                time.sleep(0.01)
            assert state is not None and state.status == "error"
            assert state.error is not None and state.error.startswith("handshake")
    finally:
        inbox.close()


def _restarted(tmp_path: Path, inbox: Inbox) -> TestClient:
    """A new server on the SQLite database of an earlier one (its lifespan runs in ``with``)."""
    settings = Settings(
        data_dir=tmp_path,
        access_log=False,
        public_base_url=FHIR,
        rate_limits=False,
        outbound_allowed_hosts=[inbox.receiver.host],
    )

    async def factory() -> Repository:
        return await open_repository(sqlite_url(tmp_path), migrate=True)

    return TestClient(create_app(settings, repository_factory=factory), base_url=BASE)


def test_every_event_once_across_a_restart(tmp_path: Path) -> None:
    """SQLite: a server stopped right after a write, and a new one on the same database: the
    receiver gets the handshake once and events 1 and 2 exactly once, in order (the cursor,
    owners, secrets and pending deliveries are all in the database)."""
    inbox = Inbox()
    try:
        first = harness(tmp_path, inbox.receiver, "sqlite", **FAST)
        h = next(first)
        _, secret = _subscribe(h, inbox, token(h, "admin", USER_SCOPES))
        inbox.wait_for(1)
        writer = token(h, "admin", USER_SCOPES)
        _write(h, writer, "p1")
        first.close()  # the lifespan ends: tasks cancelled, database closed
        with _restarted(tmp_path, inbox) as again:
            made = again.post("/fhir/Observation", json=observation("p1"), headers=bearer(writer))
            assert made.status_code == 201, made.text
            inbox.wait_for(3)
            time.sleep(0.5)
        notes = inbox.notifications()
        assert [status_of(n)["type"] for n in notes] == ["handshake"] + ["event-notification"] * 2
        numbers = [status_of(n)["events"][0]["event-number"]["valueString"] for n in notes[1:]]
        assert numbers == ["1", "2"]
        for _, got in inbox.arrivals:
            assert verify_signature(secret, got.headers[HEADER.lower()], got.body)
    finally:
        inbox.close()


def test_a_delivery_in_flight_at_shutdown_is_handed_back(tmp_path: Path) -> None:
    """A server stopped while its worker waits for a slow receiver hands the delivery back:
    the next server sends it at once, not after the lease (notification timeout + 10 s)."""
    slow = [True]

    def answer(got: Received) -> Answer:
        inbox.arrivals.append((time.monotonic(), got))
        if status_of(json.loads(got.body))["type"] == "event-notification" and slow[0]:
            slow[0] = False
            return Answer(200, delay_s=3.0)  # the server is stopped meanwhile
        return Answer(200)

    inbox = Inbox()
    inbox.receiver.answer = answer
    try:
        first = harness(tmp_path, inbox.receiver, "sqlite", **FAST)
        h = next(first)
        _subscribe(h, inbox, token(h, "admin", USER_SCOPES))
        inbox.wait_for(1)
        writer = token(h, "admin", USER_SCOPES)
        _write(h, writer, "p1")
        inbox.wait_for(2)  # event 1 is in flight
        first.close()
        started = time.monotonic()
        with _restarted(tmp_path, inbox):
            inbox.wait_for(3, timeout=8.0)
        assert time.monotonic() - started < 8.0
        numbers = [
            status_of(n)["events"][0]["event-number"]["valueString"]
            for n in inbox.notifications()[1:]
        ]
        assert numbers == ["1", "1"]  # at least once: sent again by the next server
    finally:
        inbox.close()


def test_a_classic_subscription_gets_the_resource(h: Harness, inbox: Inbox) -> None:
    """R4 classic (subscription.html#2.46.7.1): criteria a search; with a payload each
    notification is the matching resource itself; the initial ping has no body."""
    admin = token(h, "admin", USER_SCOPES)
    classic = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "classic",
        "criteria": "Observation?subject=Patient/p2",
        "channel": {
            "type": "rest-hook",
            "endpoint": inbox.receiver.url(),
            "payload": "application/fhir+json",
        },
    }
    made = h.client.post("/fhir/Subscription", json=classic, headers=bearer(admin))
    assert made.status_code == 201, made.text
    deadline = time.monotonic() + 10
    while not inbox.arrivals and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inbox.arrivals and inbox.arrivals[0][1].body == b""
    _write(h, admin, "p1")
    focus, _ = _write(h, admin, "p2")
    deadline = time.monotonic() + 10
    while len(inbox.arrivals) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert len(inbox.arrivals) == 2
    resource = json.loads(inbox.arrivals[1][1].body)
    assert (resource["resourceType"], resource["id"]) == ("Observation", focus)
