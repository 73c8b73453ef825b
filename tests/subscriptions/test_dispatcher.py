"""The dispatcher step by step (no background tasks): owners recorded after the commit, gaps in
the outbox, and the owner's access deciding what is queued.

Backport IG: https://hl7.org/fhir/uv/subscriptions-backport/workflow.html and
safety_security.html.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.security.context import UNRESTRICTED, AccessContext
from healthbridge.security.scopes import parse_scopes
from healthbridge.settings import Settings
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.repository import OutboxEvent
from healthbridge.subscriptions.dispatcher import Dispatcher
from healthbridge.subscriptions.feature import SubscriptionsFeature
from healthbridge.subscriptions.owners import Owner
from tests.subscriptions.api import observation, subscription

PATIENT_APP = AccessContext(parse_scopes("patient/*.rs"), patient="p1", client_id="app")


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def feature(tmp_path: Path) -> AsyncIterator[SubscriptionsFeature]:
    repo = MemoryRepository()
    settings = Settings(data_dir=tmp_path, public_base_url="http://localhost/fhir")
    made = SubscriptionsFeature(settings, repo, load_definitions())
    for id in ("p1", "p2"):
        await repo.update("Patient", id, {"resourceType": "Patient", "id": id})
    yield made
    await made.close()


async def _subscribe(feature: SubscriptionsFeature, owner: AccessContext | None) -> str:
    repo = feature.repository
    stored = await repo.create("Subscription", subscription("http://hooks.example.org/x"))
    if owner is not None:
        await feature.owners.put(Owner.of(stored.id, "secret", "requested", owner))
    return stored.id


async def _numbers(feature: SubscriptionsFeature, id: str) -> list[str]:
    events = await feature.repository.subscriptions.events(id)
    return [d.event.focus_id for d in events]


async def test_changes_wait_for_the_owner_of_a_new_subscription(
    feature: SubscriptionsFeature,
) -> None:
    """The API records the owner just after the Subscription commits: a change committed in
    between is matched once the owner is there, not lost."""
    feature.dispatcher.handshakes = _no_handshakes  # type: ignore[method-assign]
    id = await _subscribe(feature, None)
    focus = (await feature.repository.create("Observation", observation("p1"))).id
    await feature.dispatcher.step()
    assert await _numbers(feature, id) == []
    await feature.owners.put(Owner.of(id, "secret", "requested", UNRESTRICTED))
    await feature.dispatcher.step()
    assert await _numbers(feature, id) == [focus]


async def test_the_owners_access_decides(feature: SubscriptionsFeature) -> None:
    """A patient app's subscription (no filters) queues only its patient's Observations."""
    feature.dispatcher.handshakes = _no_handshakes  # type: ignore[method-assign]
    id = await _subscribe(feature, PATIENT_APP)
    repo = feature.repository
    mine = (await repo.create("Observation", observation("p1"))).id
    await repo.create("Observation", observation("p2"))
    await feature.dispatcher.step()
    assert await _numbers(feature, id) == [mine]
    assert await feature.repository.subscriptions.dispatcher_cursor("subscriptions") == 5


async def _no_handshakes(subscriptions: object) -> None:
    return None


def _row(seq: int) -> OutboxEvent:
    return OutboxEvent(seq, "Observation", str(seq), 1, "create", datetime.now(UTC))


def test_the_cursor_waits_at_a_gap_until_the_timeout(feature: SubscriptionsFeature) -> None:
    """Commit order is not seq order on PostgreSQL: seq 2 missing keeps the cursor at 1 until
    gap_timeout has passed (a rolled-back transaction never fills it)."""
    clock = Clock()
    d = feature.dispatcher
    dispatcher = Dispatcher(
        d.repository, d.live, d.matcher, d.policy, d.sender, gap_timeout=60.0, clock=clock
    )
    rows = [_row(1), _row(3), _row(4)]
    assert dispatcher._advance(0, rows) == 1
    clock.now = 59.0
    assert dispatcher._advance(1, rows[1:]) == 1
    clock.now = 61.0
    assert dispatcher._advance(1, rows[1:]) == 4
    assert dispatcher._advance(4, []) == 4


async def test_one_process_dispatches_at_a_time_and_another_takes_over(tmp_path: Path) -> None:
    """The dispatcher lease: of two processes' dispatchers over one database one leads; when it
    stops renewing (it died) the other takes over once the lease has run out."""
    repo = MemoryRepository()
    settings = Settings(data_dir=tmp_path, public_base_url="http://localhost/fhir")
    first = SubscriptionsFeature(settings, repo, load_definitions())
    second = SubscriptionsFeature(settings, repo, load_definitions())
    assert await first.dispatcher._leading()
    assert not await second.dispatcher._leading()
    lease = first.dispatcher.lease
    assert lease is not None
    record = await repo.records.get_record("lease", lease.name)
    assert record is not None and record.expires is not None
    await repo.records.put_record(  # the first one's lease runs out without renewal
        "lease", lease.name, record.value, datetime.now(UTC), if_version=record.version
    )
    assert await second.dispatcher._leading()
    first.dispatcher._renewed = -1e9  # its next renewal is due
    assert not await first.dispatcher._leading()


async def test_changes_no_subscription_looks_at_are_not_read(
    feature: SubscriptionsFeature,
) -> None:
    """Only Observation subscriptions live: a Patient change moves the cursor without the
    dispatcher reading its versions; an Observation change is read and matched."""
    feature.dispatcher.handshakes = _no_handshakes  # type: ignore[method-assign]
    id = await _subscribe(feature, UNRESTRICTED)
    read: list[str] = []
    repo = feature.repository
    versions = repo.versions

    async def counting(keys: Any) -> Any:
        read.extend(type_ for type_, _, _ in keys)
        return await versions(keys)

    repo.versions = counting  # type: ignore[method-assign]
    await repo.update("Patient", "p3", {"resourceType": "Patient", "id": "p3"})
    focus = (await repo.create("Observation", observation("p1"))).id
    await feature.dispatcher.step()
    assert await _numbers(feature, id) == [focus]
    assert "Patient" not in read and "Observation" in read
