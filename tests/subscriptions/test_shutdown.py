"""Background loops stop when cancelled, even when the cancellation surfaces as another error.

A step interrupted by ``Task.cancel()`` may come out of a driver or store as some other
exception; a loop that retries after any error must still end, or shutdown waits for it
forever (infra/tasks.py).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import FhirError
from healthbridge.settings import Settings
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.subscriptions import Batch, DeliveryQueue, NewEvent
from healthbridge.subscriptions.feature import SubscriptionsFeature


def feature_of(tmp_path: Path, repository: MemoryRepository) -> SubscriptionsFeature:
    settings = Settings(data_dir=tmp_path, public_base_url="http://localhost/fhir")
    return SubscriptionsFeature(settings, repository, load_definitions())


def _masking(error: BaseException) -> Any:
    async def step(*_args: object) -> Any:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise error from None  # the interruption, reported as something else

    return step


@pytest.mark.parametrize("error", [RuntimeError("driver"), FhirError("database unavailable")])
async def test_every_subscription_loop_ends_on_cancel(tmp_path: Path, error: Exception) -> None:
    feature = feature_of(tmp_path, MemoryRepository())
    feature.dispatcher.step = _masking(error)  # type: ignore[method-assign]
    feature.worker.step = _masking(error)  # type: ignore[method-assign]
    feature.timekeeper.step = _masking(error)  # type: ignore[method-assign]
    loops = [feature.dispatcher.run(), feature.worker.run(), feature.timekeeper.run()]
    tasks = [asyncio.create_task(loop) for loop in loops]
    await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=3)
    assert not pending, [t.get_coro() for t in pending]
    assert all(t.cancelled() or isinstance(t.exception(), type(error)) for t in done)
    await feature.close()


async def test_a_cancellation_that_arrives_as_the_worker_wakes_is_not_lost(tmp_path: Path) -> None:
    """A cancellation that arrives as the worker is woken from its pause between claims ends
    it (the pause uses asyncio.timeout: Python 3.11's asyncio.wait_for may return normally
    when cancelled just as its awaitable completes, and the loop would go on)."""
    feature = feature_of(tmp_path, MemoryRepository())
    worker = feature.worker
    worker.poll_seconds = 60.0

    async def claim_nothing(limit: int) -> list[Any]:
        return []

    worker._claim = claim_nothing  # type: ignore[method-assign]
    for _ in range(20):
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.01)  # now waiting in the pause
        worker.wake()  # the event is set ...
        task.cancel()  # ... and the task cancelled in the same turn of the loop
        done, _ = await asyncio.wait([task], timeout=2)
        assert done, "the worker went on after being cancelled"
    await feature.close()


def lingering(queue: DeliveryQueue, leased: asyncio.Event) -> Any:
    """``queue`` whose claims commit, set ``leased``, then take a while to return (the
    claimer is cancelled before it hears of them)."""

    async def claim_then_linger(*args: Any, **kwargs: Any) -> Any:
        claimed = await queue.claim(*args, **kwargs)  # committed ...
        leased.set()
        await asyncio.sleep(0.2)  # ... and the caller cancelled before it hears of it
        return claimed

    return cast(Any, SimpleNamespace(claim=claim_then_linger, release=queue.release))


async def test_a_claim_interrupted_by_shutdown_is_handed_back(tmp_path: Path) -> None:
    """Shutdown cancels the worker while its claim is under way: the claim may commit all the
    same (SQLite's writer thread, a statement the server already ran), and the delivery it
    leased must be handed back like any in flight, not wait out its lease (the next server
    would send nothing for that subscription until then)."""
    repository = MemoryRepository()
    feature = feature_of(tmp_path, repository)
    queue = repository.subscriptions
    await queue.enqueue(Batch("d", 1, [NewEvent("s", 1, "Patient", "p1", 1, {})]))
    await queue.set_status("s", "active")
    leased = asyncio.Event()
    worker = feature.worker
    worker.queue = lingering(queue, leased)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(leased.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.release_in_flight()
    again = await queue.claim(datetime.now(UTC), 10, 60, "next-server")
    assert [d.event.number for d in again] == [1]
    await feature.close()


class _Connection:
    async def notify(self, subscription_id: str, text: str) -> bool:
        return True

    async def shutdown(self) -> None:
        return None


async def test_the_websocket_hub_hands_back_what_it_held_at_shutdown(tmp_path: Path) -> None:
    """The websocket hub, stopped while it claims (the claim committing all the same) or while
    it sends, hands its deliveries back as the worker does: a client that binds to the next
    server gets them at once, not after the hub's lease."""
    repository = MemoryRepository()
    feature = feature_of(tmp_path, repository)
    queue = repository.subscriptions
    events = [NewEvent(sub, 1, "Patient", "p1", 1, {}) for sub in ("claiming", "sending")]
    await queue.enqueue(Batch("d", 1, events))
    for sub in ("claiming", "sending"):
        await queue.set_status(sub, "active")
    hub = feature.hub
    hub.bind(_Connection(), "sending")
    sending = asyncio.Event()

    async def send_forever(*_args: object) -> bool:
        sending.set()
        await asyncio.sleep(60)
        return True

    hub._deliver = send_forever  # type: ignore[method-assign]
    task = asyncio.create_task(hub.step())
    await asyncio.wait_for(sending.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    hub.bind(_Connection(), "claiming")
    leased = asyncio.Event()
    hub.queue = lingering(queue, leased)
    task = asyncio.create_task(hub.step())
    await asyncio.wait_for(leased.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert await queue.claim(datetime.now(UTC), 10, 60, "next-server") == []  # both leased
    await feature.close()  # hands them back
    again = await queue.claim(datetime.now(UTC), 10, 60, "next-server")
    assert sorted(d.event.subscription_id for d in again) == ["claiming", "sending"]
