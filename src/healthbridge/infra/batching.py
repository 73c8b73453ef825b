"""Calls coalesced into batches: those made while a batch is under way go together in the next.

Group commit without a timer (as :mod:`healthbridge.store.sql.group_commit` does for SQLite's
writer thread): the first call starts a batch at once, alone; calls made while it runs wait and
then go in one batch, up to ``max_batch``. Under light load nothing waits; under load the
batches grow with it, and the cost per call (a database round trip, a commit) falls.

A caller cancelled while its batch runs stops waiting, but its item stays in the batch (it may
take effect all the same, as any cancelled write may).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self, run: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_batch: int = 128
    ) -> None:
        """``run`` takes a batch of items and returns one result per item, in order; what it
        raises goes to every caller of that batch."""
        self._run = run
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            try:
                results = await self._run([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # cancelled (the loop is closing): so are the callers
                for _, future in batch + self._waiting:
                    future.cancel()
                self._waiting.clear()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def idle(self) -> None:
        """Wait until no batch is under way (before closing what ``run`` uses)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})
