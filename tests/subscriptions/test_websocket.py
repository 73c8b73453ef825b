"""The websocket channel: ``$get-ws-binding-token``, binding, handshakes, events, heartbeats.

Backport IG https://hl7.org/fhir/uv/subscriptions-backport/channels.html#websockets and
https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-get-ws-binding-token.html.
Protocol tests drive the real app through Starlette's TestClient websockets; one test runs a
real server process and talks to it over a loopback socket with the ``websockets`` library.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets
from starlette.testclient import WebSocketTestSession
from starlette.types import Message

from healthbridge.store.subscriptions import SubscriptionState
from healthbridge.subscriptions import websocket as ws_module
from healthbridge.subscriptions.subscription import (
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    PROFILE,
)
from tests.auth.conftest import Harness, make_harness
from tests.durability.server import ServerProcess, scratch_database
from tests.subscriptions.api import (
    LAB_TOPIC,
    USER_SCOPES,
    bearer,
    observation,
    patient_token,
    status_of,
    subscription,
    token,
)
from tests.support import databases
from tests.support.databases import BACKEND_PARAMS, PostgresDatabase

WS_PATH = "/fhir/$subscription-ws"
HOOK_HOST = "127.0.0.1:9"  # a rest-hook subscription to compare with (never answers)


def ws_subscription(
    *, filters: tuple[str, ...] = (), heartbeat: int | None = None, content: str = "full-resource"
) -> dict[str, Any]:
    extensions = [{"url": FILTER_CRITERIA, "valueString": f} for f in filters]
    channel: dict[str, Any] = {
        "type": "websocket",
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]},
    }
    if heartbeat is not None:
        channel["extension"] = [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": heartbeat}]
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [PROFILE]},
        "status": "requested",
        "reason": "test",
        "criteria": LAB_TOPIC,
        **({"_criteria": {"extension": extensions}} if extensions else {}),
        "channel": channel,
    }


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness("memory", tmp_path, outbound_allowed_hosts=[HOOK_HOST])


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    with databases.postgres_database() as db:
        yield db


@pytest.fixture(params=BACKEND_PARAMS)
def any_h(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: PostgresDatabase
) -> Iterator[Harness]:
    kind = str(request.param)
    if kind == "postgresql":
        postgres_database.require()
        yield from make_harness(kind, tmp_path, postgres_database)
    else:
        yield from make_harness(kind, tmp_path)


def create(h: Harness, owner: str, resource: dict[str, Any]) -> str:
    made = h.client.post("/fhir/Subscription", json=resource, headers=bearer(owner))
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def outputs(parameters: dict[str, Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for p in parameters["parameter"]:
        found.setdefault(p["name"], []).append(next(v for k, v in p.items() if k != "name"))
    return found


def binding_token(h: Harness, owner: str, id: str) -> str:
    answer = h.client.get(f"/fhir/Subscription/{id}/$get-ws-binding-token", headers=bearer(owner))
    assert answer.status_code == 200, answer.text
    return str(outputs(answer.json())["token"][0])


def receive(ws: WebSocketTestSession, timeout: float = 15.0) -> Message:
    """The next message the server sent, failing after ``timeout`` seconds (never hangs)."""

    async def get() -> Message:
        with anyio.fail_after(timeout):
            message: Message = await ws._send_rx.receive()
            return message

    return ws.portal.call(get)


def bundle(ws: WebSocketTestSession, *, heartbeats: bool = False) -> dict[str, Any]:
    """The next notification Bundle (heartbeats skipped unless asked for)."""
    while True:
        message = receive(ws)
        assert message["type"] == "websocket.send", message
        found: dict[str, Any] = json.loads(message["text"])
        assert found["resourceType"] == "Bundle", found
        if heartbeats or status_of(found)["type"] != "heartbeat":
            return found


def closed(ws: WebSocketTestSession) -> tuple[list[dict[str, Any]], int]:
    """The texts the server sent before closing, and the close code."""
    texts = []
    while (message := receive(ws))["type"] == "websocket.send":
        texts.append(json.loads(message["text"]))
    assert message["type"] == "websocket.close", message
    return texts, int(message["code"])


def events(notification: dict[str, Any]) -> list[tuple[str, str]]:
    """(event number, focus id) of each event of a notification."""
    status = status_of(notification)
    return [
        (e["event-number"]["valueString"], e["focus"]["valueReference"]["reference"].split("/")[-1])
        for e in status["events"]
    ]


def write(h: Harness, patient: str, value: float = 1.0) -> str:
    writer = token(h, "admin", USER_SCOPES)
    written = h.client.post(
        "/fhir/Observation", json=observation(patient, value), headers=bearer(writer)
    )
    assert written.status_code == 201, written.text
    return str(written.json()["id"])


def wait_state(
    h: Harness, id: str, done: Callable[[SubscriptionState], bool], timeout: float = 15.0
) -> SubscriptionState:
    """The subscription's queue state once ``done`` holds (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = h.run(h.repo.subscriptions.status(id))
        if state is not None and done(state):
            return state
        time.sleep(0.02)
    raise AssertionError(f"Subscription/{id}: {h.run(h.repo.subscriptions.status(id))}")


# -- $get-ws-binding-token ------------------------------------------------------------------


def test_token_operation(h: Harness) -> None:
    """Instance and type level, GET and POST; the owner, an admin; nobody else (404)."""
    owner = patient_token(h, "p1")
    id = create(h, owner, ws_subscription())
    other = create(h, owner, ws_subscription())
    got = h.client.get(f"/fhir/Subscription/{id}/$get-ws-binding-token", headers=bearer(owner))
    assert got.status_code == 200, got.text
    found = outputs(got.json())
    assert len(found["token"][0]) >= 40 and found["subscription"] == [f"Subscription/{id}"]
    assert found["websocket-url"] == ["ws://localhost/fhir/$subscription-ws"]
    assert found["expiration"][0].endswith("Z")
    posted = h.client.post(f"/fhir/Subscription/{id}/$get-ws-binding-token", headers=bearer(owner))
    assert posted.status_code == 200 and outputs(posted.json())["token"] != found["token"]
    both = h.client.get(
        f"/fhir/Subscription/$get-ws-binding-token?id={id}&id=Subscription/{other}",
        headers=bearer(owner),
    )
    assert outputs(both.json())["subscription"] == [f"Subscription/{id}", f"Subscription/{other}"]
    body = {"resourceType": "Parameters", "parameter": [{"name": "id", "valueId": other}]}
    by_post = h.client.post(
        "/fhir/Subscription/$get-ws-binding-token", json=body, headers=bearer(owner)
    )
    assert outputs(by_post.json())["subscription"] == [f"Subscription/{other}"]
    mine = h.client.get("/fhir/Subscription/$get-ws-binding-token", headers=bearer(owner))
    assert sorted(outputs(mine.json())["subscription"]) == sorted(
        [f"Subscription/{id}", f"Subscription/{other}"]
    )
    stranger = patient_token(h, "p2")
    refused = h.client.get(
        f"/fhir/Subscription/{id}/$get-ws-binding-token", headers=bearer(stranger)
    )
    assert refused.status_code == 404, refused.text  # as $status: as if it did not exist
    none = h.client.get("/fhir/Subscription/$get-ws-binding-token", headers=bearer(stranger))
    assert none.status_code == 404
    admin = token(h, "admin", USER_SCOPES)
    assert binding_token(h, admin, id)
    hook = create(h, owner, subscription(f"http://{HOOK_HOST}/hook"))
    wrong = h.client.get(f"/fhir/Subscription/{hook}/$get-ws-binding-token", headers=bearer(owner))
    assert wrong.status_code == 422 and "websocket" in wrong.text
    bad = h.client.get("/fhir/Subscription/$get-ws-binding-token?id=a/b", headers=bearer(owner))
    assert bad.status_code == 400


def test_token_record_keeps_only_a_digest(h: Harness) -> None:
    owner = patient_token(h, "p1")
    id = create(h, owner, ws_subscription())
    secret = binding_token(h, owner, id)
    stored = h.run(h.repo.records.records("subscription-ws-token"))
    assert len(stored) == 1 and secret not in json.dumps(stored[0].value) + stored[0].key


# -- binding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("bind-with-token: not-a-token", 1008),
        ("bind-with-token:", 1008),
        ("hello", 1008),
        ('{"type": "bind-with-token", "payload": {"token": 7}}', 1008),
        ("x" * 5000, 1009),
    ],
)
def test_bad_messages_close_the_socket(h: Harness, message: str, code: int) -> None:
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(message)
        texts, got = closed(ws)
    assert got == code
    assert [t["resourceType"] for t in texts] == ["OperationOutcome"]


def test_binary_and_expired_tokens_are_refused(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_bytes(b"bind-with-token: x")
        assert closed(ws)[1] == 1003
    owner = patient_token(h, "p1")
    id = create(h, owner, ws_subscription())
    secret = binding_token(h, owner, id)
    feature_tokens = h.run(h.repo.records.records("subscription-ws-token"))
    record = feature_tokens[0]
    past = record.expires.replace(year=2000) if record.expires else None
    h.run(h.repo.records.put_record(record.kind, record.key, record.value, past))
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(f"bind-with-token: {secret}")
        texts, code = closed(ws)
    assert code == 1008 and "expired" in texts[0]["issue"][0]["diagnostics"]
    monkeypatch.setattr(ws_module, "BIND_TIMEOUT_S", 0.2)
    with h.client.websocket_connect(WS_PATH) as ws:
        texts, code = closed(ws)  # nothing sent: closed after the bind timeout
    assert code == 1008 and "bind-with-token" in texts[0]["issue"][0]["diagnostics"]


def test_events_in_order_over_the_socket(any_h: Harness) -> None:
    """Handshake on bind, then each event in number order; the generic worker keeps off."""
    h = any_h
    owner = patient_token(h, "p1")
    id = create(h, owner, ws_subscription())
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(f"bind-with-token: {binding_token(h, owner, id)}")
        handshake = bundle(ws)
        status = status_of(handshake)
        assert (status["type"], status["status"]) == ("handshake", "active")
        assert status["subscription"]["reference"].endswith(f"Subscription/{id}")
        focus = [write(h, "p1", value) for value in (1.0, 2.0, 3.0)]
        got = [events(bundle(ws)) for _ in focus]
    assert got == [[(str(n), f)] for n, f in enumerate(focus, start=1)]
    state = wait_state(h, id, lambda s: s.last_delivered == 3)  # marked after it was sent
    assert (state.status, state.failures) == ("active", 0)
    answer = h.client.get(f"/fhir/Subscription/{id}/$status", headers=bearer(owner))
    assert status_of({"entry": answer.json()["entry"]})["status"] == "active"


def test_events_while_disconnected_wait_for_the_next_bind(any_h: Harness) -> None:
    """Nothing is lost and nothing counts as failed while no client is bound."""
    h = any_h
    owner = patient_token(h, "p1")
    id = create(h, owner, ws_subscription())
    secret = binding_token(h, owner, id)
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(f"bind-with-token: {secret}")
        bundle(ws)
        first = write(h, "p1")
        assert events(bundle(ws)) == [("1", first)]
    later = [write(h, "p1", 2.0), write(h, "p1", 3.0)]
    wait_state(h, id, lambda s: s.events_since_start == 3 and s.last_delivered == 1)
    time.sleep(1.2)  # the delivery worker polls every 0.5 s: give it the chance to misbehave
    pending = h.run(h.repo.subscriptions.events(id, 2))
    assert [(d.state, d.attempts, d.owner) for d in pending] == [("pending", 0, None)] * 2
    state = h.run(h.repo.subscriptions.status(id))
    assert state is not None and (state.status, state.failures) == ("active", 0)
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(f"bind-with-token: {secret}")  # valid until it expires
        assert status_of(bundle(ws))["events-since-subscription-start"] == "3"
        assert [events(bundle(ws)) for _ in later] == [[("2", later[0])], [("3", later[1])]]


def test_heartbeats(h: Harness) -> None:
    """IG: a heartbeat when the heartbeat period passed without a notification."""
    owner = patient_token(h, "p1")
    id = create(h, owner, ws_subscription(heartbeat=1))
    quiet = create(h, owner, ws_subscription())
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(f"bind-with-token: {binding_token(h, owner, quiet)}")
        assert status_of(bundle(ws))["type"] == "handshake"
        ws.send_text(f"bind-with-token: {binding_token(h, owner, id)}")
        assert status_of(bundle(ws))["type"] == "handshake"
        started = time.monotonic()
        beats = [status_of(bundle(ws, heartbeats=True)) for _ in range(2)]
    assert [(b["type"], b["subscription"]["reference"].rsplit("/", 1)[1]) for b in beats] == [
        ("heartbeat", id)
    ] * 2
    assert 1.0 <= time.monotonic() - started < 5.0


def test_patient_app_hears_only_its_patient(h: Harness) -> None:
    """The owner's access applies: a patient-context app gets no event about another patient."""
    owner = patient_token(h, "p1")
    id = create(h, owner, ws_subscription())
    with h.client.websocket_connect(WS_PATH) as ws:
        medplum_style = {
            "type": "bind-with-token",
            "payload": {"token": binding_token(h, owner, id)},
        }
        ws.send_text(json.dumps(medplum_style))
        bundle(ws)
        write(h, "p2")
        mine = write(h, "p1")
        assert events(bundle(ws)) == [("1", mine)]


def test_one_connection_several_subscriptions_and_unbind(h: Harness) -> None:
    owner = patient_token(h, "p1")
    a = create(h, owner, ws_subscription())
    b = create(h, owner, ws_subscription(filters=("Observation?patient=Patient/p1",)))
    both = h.client.get(
        f"/fhir/Subscription/$get-ws-binding-token?id={a}&id={b}", headers=bearer(owner)
    )
    secret = outputs(both.json())["token"][0]
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(f"bind-with-token: {secret}")
        shaken = {
            status_of(bundle(ws))["subscription"]["reference"].rsplit("/", 1)[1] for _ in "ab"
        }
        assert shaken == {a, b}
        focus = write(h, "p1")
        got = {
            status_of(n)["subscription"]["reference"].rsplit("/", 1)[1]: events(n)
            for n in (bundle(ws), bundle(ws))
        }
        assert got == {a: [("1", focus)], b: [("1", focus)]}
        ws.send_text(f"unbind-with-token: {binding_token(h, owner, b)}")
        time.sleep(0.2)
        second = write(h, "p1", 2.0)
        assert events(n := bundle(ws)) == [("2", second)]
        assert status_of(n)["subscription"]["reference"].endswith(a)


def test_deleted_subscription_is_unbound(h: Harness) -> None:
    owner = patient_token(h, "p1")
    id = create(h, owner, ws_subscription())
    secret = binding_token(h, owner, id)
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(f"bind-with-token: {secret}")
        bundle(ws)
        assert h.client.delete(f"/fhir/Subscription/{id}", headers=bearer(owner)).status_code < 300
        message = json.loads(receive(ws, timeout=20)["text"])
        assert message["resourceType"] == "OperationOutcome" and id in json.dumps(message)
    with h.client.websocket_connect(WS_PATH) as ws:
        ws.send_text(f"bind-with-token: {secret}")
        assert closed(ws)[1] == 1008


# -- a real server, a real socket ------------------------------------------------------------


def test_end_to_end_over_a_real_socket(tmp_path: Path) -> None:
    """``healthbridge serve`` (Granian) and the ``websockets`` client over loopback."""
    with scratch_database("sqlite", tmp_path) as url:
        server = ServerProcess(url, tmp_path)
        server.start()
        try:
            asyncio.run(_talk(server))
        finally:
            server.kill()


async def _talk(server: ServerProcess) -> None:
    with server.client() as client:
        made = client.post("/Subscription", json=ws_subscription())
        assert made.status_code == 201, made.text
        id = made.json()["id"]
        found = outputs(client.get(f"/Subscription/{id}/$get-ws-binding-token").json())
        assert found["websocket-url"] == [f"ws://127.0.0.1:{server.port}/fhir/$subscription-ws"]
        async with websockets.connect(found["websocket-url"][0], open_timeout=10) as ws:
            await ws.send("bind-with-token: wrong")
            refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert refused["resourceType"] == "OperationOutcome"
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        async with websockets.connect(found["websocket-url"][0], open_timeout=10) as ws:
            await ws.send(f"bind-with-token: {found['token'][0]}")
            handshake = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert status_of(handshake)["type"] == "handshake"
            focus = []
            for value in (1.0, 2.0):
                written = await asyncio.to_thread(
                    client.post, "/Observation", json=observation("p1", value)
                )
                assert written.status_code == 201, written.text
                focus.append(written.json()["id"])
            got = [events(json.loads(await asyncio.wait_for(ws.recv(), 15))) for _ in focus]
    assert got == [[("1", focus[0])], [("2", focus[1])]]
