"""Deliveries a claimer leased and has not settled yet, handed back when the server stops.

Backport IG delivery is at least once (https://hl7.org/fhir/uv/subscriptions-backport/): a
delivery leased by a server that stops would otherwise wait out its lease before another
server sends it, and, one event in flight per subscription, nothing else of its subscription
would go meanwhile. The delivery worker (:mod:`.delivery`) and the websocket hub
(:mod:`.websocket_hub`) each keep one :class:`InFlight`:

* a claim is shielded from cancellation: one interrupted by shutdown may commit all the same
  (SQLite's writer thread, a statement the server already ran), so the claimer waits for it and
  counts what it leased as in flight;
* a delivery stays in flight until it is settled; a settle cancelled by shutdown leaves it
  there (it may have reached its endpoint: handing it back means it may go twice);
* :meth:`InFlight.release` hands back everything still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from healthbridge.store.subscriptions import Delivery, DeliveryQueue

T = TypeVar("T")


class InFlight:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._ids: set[int] = set()

    async def claim(self, claiming: Awaitable[list[Delivery]]) -> list[Delivery]:
        """What ``claiming`` (a claim as ``owner``) leased, in flight from now on."""
        future = asyncio.ensure_future(claiming)
        try:
            claimed = await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self._ids |= {d.id for d in await future}
            raise
        self._ids |= {d.id for d in claimed}
        return claimed

    async def settle(self, delivery: Delivery, work: Awaitable[T]) -> T:
        """Run ``work`` (sending and settling ``delivery``); the delivery is no longer in flight
        once it ends, unless it was cancelled (shutdown: to be handed back)."""
        try:
            result = await work
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._ids.discard(delivery.id)
            raise
        self._ids.discard(delivery.id)
        return result

    async def release(self, queue: DeliveryQueue) -> None:
        """Hand back to ``queue`` every delivery still in flight (at shutdown, the claimer
        stopped)."""
        held, self._ids = self._ids, set()
        for id in sorted(held):
            with contextlib.suppress(Exception):
                await queue.release(id, self.owner)
