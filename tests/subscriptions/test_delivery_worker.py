"""The delivery worker's claiming: one event of a subscription is claimable at a time
(https://hl7.org/fhir/uv/subscriptions-backport/ event numbers, in order), so when a delivery
settles with the subscription's next event due, the worker claims again at once rather than
at its next poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.security.context import UNRESTRICTED
from healthbridge.settings import Settings
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.subscriptions import Batch, NewEvent
from healthbridge.subscriptions.feature import SubscriptionsFeature
from healthbridge.subscriptions.owners import Owner
from tests.subscriptions.api import Inbox, observation, status_of, subscription


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    running = Inbox()
    yield running
    running.close()


async def _arrived(inbox: Inbox, count: int) -> None:
    """Until ``count`` notifications arrived (the receiver runs in a thread of its own)."""
    while len(inbox.arrivals) < count:  # noqa: ASYNC110 (nothing to wait on but the count)
        await asyncio.sleep(0.01)


async def test_a_backlog_drains_without_waiting_for_polls(tmp_path: Path, inbox: Inbox) -> None:
    url = inbox.receiver.url()
    host = url.split("/")[2]
    settings = Settings(
        data_dir=tmp_path, public_base_url="http://localhost/fhir", outbound_allowed_hosts=host
    )
    repo = MemoryRepository()
    feature = SubscriptionsFeature(settings, repo, load_definitions())
    try:
        await repo.update("Patient", "p1", {"resourceType": "Patient", "id": "p1"})
        sub = (await repo.create("Subscription", subscription(url, status="active"))).id
        await feature.owners.put(Owner.of(sub, "secret", "active", UNRESTRICTED))
        foci = [(await repo.create("Observation", observation("p1"))).id for _ in range(4)]
        events = [NewEvent(sub, n, "Observation", id, 1, {}) for n, id in enumerate(foci, 1)]
        await repo.subscriptions.enqueue(Batch("test", len(foci), events))
        await repo.subscriptions.set_status(sub, "active")
        worker = feature.worker
        worker.poll_seconds = 60.0  # a claim waiting for the poll would not come in time
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(10):
                await _arrived(inbox, len(foci))
        except TimeoutError:
            pass  # the assertion below says what came
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        numbers = [
            status_of(note)["events"][0]["event-number"]["valueString"]
            for note in inbox.notifications()
        ]
        assert numbers == ["1", "2", "3", "4"]
    finally:
        await feature.close()
