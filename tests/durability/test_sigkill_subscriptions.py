"""kill -9 during subscription delivery: no notification is lost, none out of order.

Subscriptions Backport IG (https://hl7.org/fhir/uv/subscriptions-backport/): every event of a
subscription gets the next ``eventNumber`` (events-since-subscription-start, workflow.html),
notifications carry it (notifications.html), delivery is at least once and a receiver that sees
a gap in the numbers knows it missed one (errors.html). docs/subscriptions.md, "Delivery queue":
event numbers and the dispatcher cursor commit together, deliveries go out in number order.

A real server (``healthbridge serve``, two Granian workers, ``--no-auth``) has one active
rest-hook subscription to the built-in ``lab-result-available`` topic (``full-resource``) whose
endpoint is a loopback receiver. Client threads keep creating final laboratory Observations (each
one an event) while the whole server is killed with SIGKILL at random moments and started again
on the same database, several times. The receiver answers 500 to the first try of some event
numbers, so retries happen too. In the end, with the server up and the receiver caught up:

* the event numbers received cover 1..N without a gap, N being ``events-since-subscription-start``
  of ``$status``;
* every Observation the server acknowledged (201) is the focus of a received event;
* an event number always names the same focus (duplicates are allowed: at least once);
* the first arrival of each number comes in increasing order: the receiver never sees event k+1
  before it has seen k.

Short form: 3 cycles. Full form: ``HEALTHBRIDGE_DURABILITY_CYCLES=50`` (docs/durability.md);
``HEALTHBRIDGE_DURABILITY_SEED`` replays a run.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from healthbridge.subscriptions.subscription import PAYLOAD_CONTENT, PROFILE
from tests.durability.conftest import ServerFactory, kill_cycles
from tests.durability.server import ServerProcess
from tests.support.http_receiver import Answer, Received, Receiver

TOPIC = "http://healthbridge.dev/fhir/SubscriptionTopic/lab-result-available"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
WRITERS = 3
ACK_WAIT_S = 60.0
HANDSHAKE_WAIT_S = 30.0
CATCH_UP_S = 150.0
"""How long the receiver may take to catch up at the end: a delivery held by a killed worker
waits for its lease to expire (``subscription_timeout_seconds + 30``), and on PostgreSQL the
dispatcher's cursor waits up to 60 s before a seq a killed transaction took."""
FLAKY_EVERY = 7
"""The receiver answers 500 to the first try of every 7th event number (a retry follows)."""
SERVER_ENV = {
    "HEALTHBRIDGE_SUBSCRIPTION_RETRY_BASE_SECONDS": "0.1",
    "HEALTHBRIDGE_SUBSCRIPTION_TIMEOUT_SECONDS": "2",
}


@dataclass
class Arrival:
    at: float
    status: int  # what the receiver answered
    type: str  # handshake, event-notification...
    events: list[tuple[int, str]]  # (event number, focus reference)


@dataclass
class Inbox:
    """What the loopback receiver got, in arrival order; answers 500 to the first try of every
    ``FLAKY_EVERY``-th event number."""

    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refused: set[int] = field(default_factory=set)
    bad: list[str] = field(default_factory=list)  # requests that were not notifications

    def answer(self, got: Received) -> Answer:
        try:
            arrival = parse_notification(got.body)
        except (ValueError, KeyError, StopIteration) as exc:
            with self.lock:
                self.bad.append(f"{exc!r}: {got.body[:300]!r}")
            return Answer(400)
        with self.lock:
            status = 200
            for number, _ in arrival.events:
                if number % FLAKY_EVERY == 0 and number not in self.refused:
                    self.refused.add(number)
                    status = 500
            arrival.status = status
            self.arrivals.append(arrival)
        return Answer(status)

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def accepted(self) -> dict[int, set[str]]:
        """Event number -> the focus references of its accepted (2xx) deliveries."""
        found: dict[int, set[str]] = {}
        for arrival in self.snapshot():
            if arrival.status == 200:
                for number, focus in arrival.events:
                    found.setdefault(number, set()).add(focus)
        return found


def parse_notification(body: bytes) -> Arrival:
    """The SubscriptionStatus of a notification Bundle (its first entry, an R4 Parameters)."""
    bundle = json.loads(body)
    status = bundle["entry"][0]["resource"]
    assert status["resourceType"] == "Parameters"
    kind = ""
    events: list[tuple[int, str]] = []
    for parameter in status["parameter"]:
        if parameter["name"] == "type":
            kind = parameter["valueCode"]
        elif parameter["name"] == "notification-event":
            parts = {part["name"]: part for part in parameter["part"]}
            number = int(parts["event-number"]["valueString"])
            focus = parts["focus"]["valueReference"]["reference"]
            events.append((number, "/".join(focus.rsplit("/", 2)[-2:])))
    return Arrival(time.monotonic(), 0, kind, events)


def observation(n: int) -> dict[str, Any]:
    """A final laboratory Observation: created so, it is an event of lab-result-available."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": f"Patient/p{n % 5}"},
        "valueQuantity": {"value": n, "unit": "mg/dL"},
    }


def subscription(endpoint: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [PROFILE]},
        "status": "requested",
        "reason": "durability: every event, in order",
        "criteria": TOPIC,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "full-resource"}]},
        },
    }


class Writer(threading.Thread):
    """Creates Observations one at a time until the server dies or ``stop`` is set; notes the
    ids the server acknowledged with 201."""

    def __init__(
        self, base: str, stop: threading.Event, acked: list[str], name: str, most: int
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.base = base
        self.stop = stop
        self.acked = acked
        self.most = most  # writes at most: the receiver must be able to catch up
        self.bad: list[tuple[int, str]] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx2.Client(base_url=self.base, timeout=httpx2.Timeout(20.0)) as http:
                n = 0
                while not self.stop.is_set() and not self.bad and n < self.most:
                    n += 1
                    try:
                        response = http.post("/Observation", json=observation(n))
                    except httpx2.TimeoutException as exc:
                        self.bad.append((0, f"no answer: {exc!r}"))
                        return
                    except httpx2.TransportError:  # killed: the write may or may not be there
                        return
                    if response.status_code == 201:
                        self.acked.append(response.json()["id"])
                    elif response.status_code != 503:
                        self.bad.append((response.status_code, response.text[:500]))
        except BaseException as exc:
            self.failure = exc


def run_writers(server: ServerProcess, acked: list[str], until: int, where: str) -> list[Writer]:
    """Writers started on ``server``; returns once ``until`` writes are acknowledged (or the
    writers are gone)."""
    stop = threading.Event()
    most = (until - len(acked)) * 2 // WRITERS + 10
    writers = [
        Writer(server.base, stop, acked, f"writer-{where}-{i}", most) for i in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + ACK_WAIT_S
    while len(acked) < until and time.monotonic() < deadline:
        if not any(w.is_alive() for w in writers):
            break
        time.sleep(0.01)
    assert len(acked) >= until, f"only {len(acked)} of {until} writes acknowledged ({where})"
    return writers


def stop_writers(writers: list[Writer], where: str) -> None:
    writers[0].stop.set()
    for writer in writers:
        writer.join(timeout=60)
        assert not writer.is_alive(), f"a client hung ({where})"
        if writer.failure is not None:
            raise writer.failure
        assert writer.bad == [], f"error answers other than 503 ({where}): {writer.bad}"


def wait_for(condition: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def events_since_start(http: httpx2.Client, id: str) -> int:
    answer = http.get(f"/Subscription/{id}/$status")
    assert answer.status_code == 200, answer.text
    [entry] = answer.json()["entry"]
    parameters = {p["name"]: p for p in entry["resource"]["parameter"]}
    assert parameters["status"]["valueCode"] == "active", parameters
    return int(parameters["events-since-subscription-start"]["valueString"])


def test_no_notification_lost_or_reordered_across_sigkill(
    scratch_url: str, servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = int(os.environ.get("HEALTHBRIDGE_DURABILITY_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    print(f"HEALTHBRIDGE_DURABILITY_SEED={seed}")  # shown with a failure: replays the choices
    inbox = Inbox()
    receiver = Receiver(inbox.answer)
    try:
        for name, value in {
            **SERVER_ENV,
            "HEALTHBRIDGE_OUTBOUND_ALLOWED_HOSTS": receiver.host,
        }.items():
            monkeypatch.setenv(name, value)
        server = servers(scratch_url, workers=2)
        server.start()
        with server.client() as http:
            made = http.post("/Subscription", json=subscription(receiver.url()))
            assert made.status_code == 201, made.text
            id = made.json()["id"]
        assert wait_for(
            lambda: any(a.type == "handshake" for a in inbox.snapshot()), HANDSHAKE_WAIT_S
        ), f"no handshake:\n{server.log_tail()}"
        acked: list[str] = []
        for cycle in range(1, kill_cycles() + 1):
            where = f"cycle {cycle}, seed {seed}"
            writers = run_writers(server, acked, len(acked) + rng.randint(5, 80), where)
            if cycle == 1 or rng.random() < 0.3:  # land the kill among deliveries, too
                seen = len(inbox.snapshot())
                wait_for(lambda seen=seen: len(inbox.snapshot()) > seen + 3, 45.0)
                time.sleep(rng.uniform(0, 0.2))
            time.sleep(rng.uniform(0, 0.4))  # the kill lands at a random moment of the load
            server.kill()
            stop_writers(writers, where)
            server.start()
        where = f"after the last restart, seed {seed}"
        stop_writers(run_writers(server, acked, len(acked) + 20, where), where)
        _check(server, id, inbox, acked, where)
        assert inbox.bad == [], inbox.bad[:3]
    finally:
        receiver.close()


def _caught_up(http: httpx2.Client, id: str, inbox: Inbox, acked: list[str]) -> bool:
    accepted = inbox.accepted()
    total = events_since_start(http, id)
    foci = {focus for references in accepted.values() for focus in references}
    return all(n in accepted for n in range(1, total + 1)) and all(
        f"Observation/{a}" in foci for a in acked
    )


def _check(server: ServerProcess, id: str, inbox: Inbox, acked: list[str], where: str) -> None:
    with server.client() as http:
        started = time.monotonic()
        caught_up = wait_for(lambda: _caught_up(http, id, inbox, acked), CATCH_UP_S, step=0.5)
        print(f"caught up in {time.monotonic() - started:.1f} s")
        total = events_since_start(http, id)
    arrivals = [a for a in inbox.snapshot() if a.type == "event-notification"]
    accepted = inbox.accepted()
    missing = [n for n in range(1, total + 1) if n not in accepted]
    assert not missing, f"events never delivered ({where}): {missing[:20]} of 1..{total}"
    assert max(accepted) == total, f"events beyond {total} ({where}): {max(accepted)}"
    foci = {focus for references in accepted.values() for focus in references}
    lost = [a for a in acked if f"Observation/{a}" not in foci]
    assert not lost, f"acknowledged Observations never notified ({where}): {lost[:20]}"
    two_foci = {n: sorted(f) for n, f in accepted.items() if len(f) > 1}
    assert not two_foci, f"an event number with two foci ({where}): {two_foci}"
    numbers = [n for a in arrivals for n, _ in a.events]
    first_seen: list[int] = []
    seen: set[int] = set()
    for number in numbers:
        if number not in seen:
            seen.add(number)
            first_seen.append(number)
    assert first_seen == sorted(first_seen) == list(range(1, total + 1)), (
        f"first arrivals out of order ({where}): "
        f"{[(a, b) for a, b in itertools.pairwise(first_seen) if b != a + 1][:10]}"
    )
    assert caught_up
    retried = len(numbers) - len(seen)
    print(
        f"{total} events, {len(acked)} acknowledged writes, {len(numbers)} deliveries "
        f"({retried} repeated), {server.starts} server starts"
    )
    assert retried >= total // FLAKY_EVERY, "the 500 answers were not retried"
