"""Coalesced calls (healthbridge.infra.batching): those made while a batch runs go together in
the next one; results and failures reach exactly their own callers."""

from __future__ import annotations

import asyncio

import pytest

from healthbridge.infra.batching import Coalescer


class Recorder:
    """A batch function that records the batches it got and waits for a go between them."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.go = asyncio.Event()
        self.fail_on: set[int] = set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.go.wait()
        if self.fail_on & set(items):
            raise ValueError(f"batch {items}")
        return [item * 10 for item in items]


async def test_the_first_call_goes_alone_and_the_waiting_ones_together() -> None:
    run = Recorder()
    coalesce = Coalescer(run)
    first = asyncio.create_task(coalesce(1))
    await asyncio.sleep(0)
    others = [asyncio.create_task(coalesce(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert run.batches == [[1]]  # under way: the others wait for it
    run.go.set()
    assert await first == 10
    assert [await task for task in others] == [20, 30, 40]
    assert run.batches == [[1], [2, 3, 4]]


async def test_batches_are_capped() -> None:
    run = Recorder()
    run.go.set()
    coalesce = Coalescer(run, max_batch=2)
    assert await asyncio.gather(*(coalesce(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert [len(batch) for batch in run.batches] == [2, 2, 1]


async def test_a_failing_batch_fails_only_its_own_callers() -> None:
    run = Recorder()
    run.fail_on = {2}
    coalesce = Coalescer(run)
    first = asyncio.create_task(coalesce(1))
    await asyncio.sleep(0)
    failing = [asyncio.create_task(coalesce(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    run.go.set()
    assert await first == 10
    for task in failing:
        with pytest.raises(ValueError, match=r"batch \[2, 3\]"):
            await task
    assert await coalesce(5) == 50  # the next batch goes on


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    run = Recorder()
    coalesce = Coalescer(run)
    gone = asyncio.create_task(coalesce(1))
    staying = asyncio.create_task(coalesce(2))
    await asyncio.sleep(0)
    gone.cancel()
    run.go.set()
    assert await staying == 20
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert run.batches == [[1, 2]]  # its item ran all the same (as a cancelled write may)
    await coalesce.idle()


async def test_a_run_with_the_wrong_number_of_results_fails_its_callers() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    coalesce = Coalescer(short)
    with pytest.raises(RuntimeError, match="1 results for a batch of 2"):
        await asyncio.gather(coalesce(1), coalesce(2))
