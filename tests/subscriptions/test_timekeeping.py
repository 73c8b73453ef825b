"""Subscriptions as time passes: heartbeats, ``Subscription.end`` and retention.

Backport IG heartbeats: https://hl7.org/fhir/uv/subscriptions-backport/notifications.html#heartbeat;
``end``: https://hl7.org/fhir/R4/subscription-definitions.html#Subscription.end.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from healthbridge.store.memory import MemoryRepository
from healthbridge.store.subscriptions import Batch, NewEvent
from healthbridge.subscriptions.subscription import HEARTBEAT_PERIOD
from healthbridge.subscriptions.timekeeping import Timekeeper
from tests.auth.conftest import Harness
from tests.subscriptions.api import (
    USER_SCOPES,
    Inbox,
    bearer,
    harness,
    observation,
    status_of,
    subscription,
    token,
)


def _subscribe(h: Harness, inbox: Inbox, **changes: Any) -> str:
    body = subscription(inbox.receiver.url()) | changes
    made = h.client.post(
        "/fhir/Subscription", json=body, headers=bearer(token(h, "admin", USER_SCOPES))
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _wait(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert check()


def test_heartbeats_arrive_each_period_with_the_event_count(tmp_path: Path) -> None:
    """A one-second heartbeat period: after the handshake, heartbeats keep coming (one per
    period, no more), each saying how many events there have been."""
    inbox = Inbox()
    try:
        for h in harness(tmp_path, inbox.receiver):
            body = subscription(inbox.receiver.url())
            body["channel"]["extension"] = [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 1}]
            made = h.client.post(
                "/fhir/Subscription", json=body, headers=bearer(token(h, "admin", USER_SCOPES))
            )
            assert made.status_code == 201, made.text
            h.client.post(
                "/fhir/Observation",
                json=observation("p1"),
                headers=bearer(token(h, "admin", USER_SCOPES)),
            )
            started = time.monotonic()
            _wait(lambda: _heartbeats(inbox) >= 3)
            elapsed = time.monotonic() - started
            kinds = _kinds(inbox)
            assert kinds[:2] == ["handshake", "event-notification"]
            beats = [n for n in inbox.notifications() if status_of(n)["type"] == "heartbeat"]
            assert len(beats) >= 3
            assert len(beats) <= elapsed + 2  # one per period (and one period's slack)
            assert all(status_of(b)["events-since-subscription-start"] == "1" for b in beats)
            assert all(len(b["entry"]) == 1 for b in beats)  # the status only, no event
    finally:
        inbox.close()


def _kinds(inbox: Inbox) -> list[str]:
    return [status_of(n)["type"] for n in inbox.notifications()]


def _heartbeats(inbox: Inbox) -> int:
    return _kinds(inbox).count("heartbeat")


def test_a_subscription_past_its_end_is_turned_off(tmp_path: Path) -> None:
    """Events before ``end`` are sent; once it has passed, the subscription is off (``$status``
    says why) and later changes are not notified."""
    inbox = Inbox()
    try:
        for h in harness(tmp_path, inbox.receiver):
            end = datetime.now(UTC) + timedelta(seconds=2)
            id = _subscribe(h, inbox, end=end.isoformat(timespec="milliseconds"))
            writer = bearer(token(h, "admin", USER_SCOPES))
            inbox.wait_for(1)
            h.client.post("/fhir/Observation", json=observation("p1"), headers=writer)
            inbox.wait_for(2)
            time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 1.5)
            state = h.run(h.repo.subscriptions.status(id))
            assert state is not None and state.status == "off"
            assert state.error is not None and state.error.startswith("ended at")
            h.client.post("/fhir/Observation", json=observation("p1"), headers=writer)
            time.sleep(0.5)
            assert _kinds(inbox) == ["handshake", "event-notification"]
            status = h.client.get(f"/fhir/Subscription/{id}/$status", headers=writer)
            assert status.status_code == 200, status.text
            assert '"off"' in status.text
    finally:
        inbox.close()


async def test_retention_purges_old_delivered_events_and_keeps_dead_letters() -> None:
    repository = MemoryRepository()
    queue = repository.subscriptions
    events = [NewEvent("s1", seq, "Observation", f"o{seq}", 1) for seq in (1, 2, 3)]
    await queue.enqueue(Batch("test", 3, events))
    await queue.set_status("s1", "active")
    for number in (1, 2, 3):
        [claimed] = await queue.claim(datetime.now(UTC), 10, 60, "w")
        if number == 2:
            await queue.dead_letter(claimed.id, "w", "gone")
        else:
            await queue.delivered(claimed.id, "w")
    later = datetime.now(UTC) + timedelta(hours=2)
    nothing: Any = None  # purging needs neither live subscriptions nor a sender
    keeper = Timekeeper(repository, nothing, nothing, retention=timedelta(hours=1))
    await keeper.purge(later)
    kept = await queue.events("s1")
    assert [(d.event.number, d.state) for d in kept] == [(2, "dead")]
