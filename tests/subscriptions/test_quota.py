"""The per-client subscription cap holds under concurrent writes (SECURITY.md "Resource
limits": subscriptions per client capped), on every backend.

Each writer runs what a create does around the write: the Subscription write hook's check
(which reserves a place), a pause standing in for the database write, then its ``written``.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import Unprocessable
from healthbridge.security.context import AccessContext
from healthbridge.security.scopes import parse_scopes
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository, StoredResource
from healthbridge.subscriptions.feature import SubscriptionsFeature
from healthbridge.subscriptions.quota import KIND
from tests.subscriptions.api import subscription
from tests.support import databases
from tests.support.databases import BACKEND_PARAMS, PostgresDatabase

CAP = 3


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    with databases.postgres_database() as db:
        yield db


@pytest.fixture(params=BACKEND_PARAMS)
async def repo(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: PostgresDatabase
) -> AsyncIterator[Repository]:
    async with databases.open_backend(request.param, tmp_path, postgres_database) as repo:
        yield repo


def _client(client_id: str) -> AccessContext:
    return AccessContext(scopes=parse_scopes("user/Subscription.cruds"), client_id=client_id)


def _stored(body: dict[str, object]) -> StoredResource:
    content = json.dumps(body | {"id": str(uuid.uuid4())}).encode()
    return StoredResource(
        "Subscription", str(uuid.uuid4()), 1, datetime.now(UTC), False, content, "create"
    )


async def test_parallel_creates_never_exceed_the_cap(repo: Repository, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        public_base_url="http://localhost/fhir",
        subscription_max_per_client=CAP,
        outbound_allowed_hosts=["127.0.0.1:9"],
    )
    feature = SubscriptionsFeature(settings, repo, load_definitions())
    writes = feature.writes
    body = subscription("http://127.0.0.1:9/hook")
    rng = random.Random(7)

    async def create(access: AccessContext) -> bool:
        await asyncio.sleep(rng.uniform(0, 0.01))
        try:
            await writes.check(body, access)
        except Unprocessable:
            return False
        await asyncio.sleep(rng.uniform(0, 0.02))  # the write itself
        await writes.written(_stored(body), access)
        return True

    app, other = _client("app"), _client("other")
    results = await asyncio.gather(*(create(app) for _ in range(12)), create(other))
    assert sum(results[:12]) == CAP
    assert results[12] is True  # another client's quota is its own
    assert await feature.owners.live_count(app) == CAP
    record = await repo.records.get_record(KIND, "client:app")
    assert record is not None and record.value["pending"] == {}  # every place settled
    await feature.close()


async def test_a_write_that_failed_after_reserving_holds_its_place_only_briefly(
    repo: Repository, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        public_base_url="http://localhost/fhir",
        subscription_max_per_client=1,
        outbound_allowed_hosts=["127.0.0.1:9"],
    )
    feature = SubscriptionsFeature(settings, repo, load_definitions())
    now = [1000.0]
    feature.writes.quota._clock = lambda: now[0]
    body = subscription("http://127.0.0.1:9/hook")
    app = _client("app")

    async def check() -> None:  # a fresh request context each time
        await feature.writes.check(body, app)

    await asyncio.create_task(check())  # reserved, then the write failed: never written
    with pytest.raises(Unprocessable):
        await asyncio.create_task(check())
    now[0] += feature.writes.quota.hold + 1
    await asyncio.create_task(check())
    await feature.close()
