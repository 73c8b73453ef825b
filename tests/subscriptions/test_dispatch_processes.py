"""Two server processes' dispatchers and delivery workers on one database: every event is
numbered once and delivered once, in order, and the handshake is sent once.

Backport IG: https://hl7.org/fhir/uv/subscriptions-backport/notifications.html#event-numbering
(events-since-subscription-start). Each "process" here has its own repository (its own
connections) over the same SQLite file or PostgreSQL database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.security.context import UNRESTRICTED
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository
from healthbridge.subscriptions.feature import SubscriptionsFeature
from healthbridge.subscriptions.owners import Owner
from tests.subscriptions.api import Inbox, observation, status_of, subscription
from tests.support import databases
from tests.support.databases import PostgresDatabase, sqlite_url

EVENTS = 30


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    with databases.postgres_database() as db:
        yield db


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def repositories(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: PostgresDatabase
) -> AsyncIterator[tuple[Repository, Repository]]:
    if request.param == "postgresql":
        url = postgres_database.require()
        await databases.empty_postgres(url)
    else:
        url = sqlite_url(tmp_path)
    async with AsyncExitStack() as stack:
        first = await open_repository(url, migrate=request.param == "sqlite")
        stack.push_async_callback(first.close)
        second = await open_repository(url)
        stack.push_async_callback(second.close)
        yield first, second


async def test_two_processes_deliver_each_event_once_in_order(
    repositories: tuple[Repository, Repository], tmp_path: Path
) -> None:
    inbox = Inbox()
    settings = Settings(
        data_dir=tmp_path,
        public_base_url="http://localhost/fhir",
        outbound_allowed_hosts=[inbox.receiver.host],
    )
    definitions = load_definitions()
    first, second = repositories
    features = [SubscriptionsFeature(settings, r, definitions) for r in repositories]
    try:
        for feature in features:
            feature.start()  # before the subscription: both must pick it up
        await asyncio.sleep(0.2)
        stored = await first.create("Subscription", subscription(inbox.receiver.url()))
        await features[0].owners.put(Owner.of(stored.id, "s3cret", "requested", UNRESTRICTED))
        await first.subscriptions.set_status(stored.id, "requested")
        for n in range(EVENTS):
            await (first if n % 2 else second).create("Observation", observation("p1", n))
        await asyncio.to_thread(inbox.wait_for, EVENTS + 1, 30.0)
        await asyncio.sleep(0.5)  # a duplicate would arrive by now
    finally:
        for feature in features:
            await feature.close()
        inbox.close()
    kinds = [status_of(n)["type"] for n in inbox.notifications()]
    assert kinds == ["handshake"] + ["event-notification"] * EVENTS
    numbers = [
        int(status_of(n)["events"][0]["event-number"]["valueString"])
        for n in inbox.notifications()[1:]
    ]
    assert numbers == list(range(1, EVENTS + 1))
    values = [
        n["entry"][1]["resource"]["valueQuantity"]["value"] for n in inbox.notifications()[1:]
    ]
    assert values == sorted(values)  # the order of the writes
