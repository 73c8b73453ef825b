"""Delivering websocket subscriptions' events to the connections bound to them.

Backport IG websocket channel (https://hl7.org/fhir/uv/subscriptions-backport/channels.html#websockets)
with the queue's guarantees (:mod:`healthbridge.store.subscriptions`): one hub per server
process knows which of its connections (:mod:`.websocket`) are bound to which subscriptions and
claims just those subscriptions' deliveries (``claim(only=...)``; the delivery worker claims
everything else, ``skip=...``), in event-number order, one in flight per subscription:

* each event becomes an ``event-notification`` Bundle built as the delivery worker builds it
  (the focus read with the owner's access, :meth:`.DeliveryWorker.event`), sent as one text
  message on a bound connection, then marked delivered; it is audited and logged like any
  notification (:meth:`.DeliveryWorker.audit`);
* a delivery whose subscription lost its connections meanwhile, or whose send failed (the
  client went away), is released untried: events recorded while no client is bound stay
  pending, uncounted, until one binds (in any server process) or ``$events`` is asked;
* what it claimed and has not settled when the server stops is handed back
  (:mod:`.in_flight`), as the delivery worker does;
* the hub looks when the dispatcher of this process queued events or a connection bound
  (:meth:`WebsocketHub.wake`) and at least every ``poll_seconds`` for events queued by other
  processes.

Classic (non topic-based) subscriptions get ``ping <id>`` per event, as R4 websockets do
(https://hl7.org/fhir/R4/subscription.html#2.46.7.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from healthbridge.fhir.errors import FhirError
from healthbridge.infra.logging import get_logger
from healthbridge.infra.tasks import forever, wait_for_event
from healthbridge.store.repository import Repository
from healthbridge.store.subscriptions import MAX_CLAIM_FILTER, Delivery, DeliveryQueue
from healthbridge.subscriptions.channels.base import DeliveryResult
from healthbridge.subscriptions.delivery import DeliveryWorker
from healthbridge.subscriptions.in_flight import InFlight
from healthbridge.subscriptions.live import Live, LiveSubscriptions
from healthbridge.subscriptions.sender import Sender

_log = get_logger("healthbridge.subscriptions.websocket")


class Bound(Protocol):
    """A connection as the hub sees it (:class:`.websocket.Connection`)."""

    async def notify(self, subscription_id: str, text: str) -> bool:
        """Send one notification; False when the connection is gone."""
        ...

    async def shutdown(self) -> None:
        """Close the connection: the server is stopping."""
        ...


class WebsocketHub:
    def __init__(
        self,
        repository: Repository,
        live: LiveSubscriptions,
        worker: DeliveryWorker,
        sender: Sender,
        *,
        lease_s: float = 30.0,
        batch_size: int = 100,
        poll_seconds: float = 0.5,
    ) -> None:
        self.queue: DeliveryQueue = repository.subscriptions
        self.live = live
        self.worker = worker
        self.sender = sender
        self.owner = f"{worker.owner}:ws"
        self.lease_s = lease_s
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._bound: dict[str, list[Bound]] = {}  # subscription id -> its connections
        self._connections: set[Bound] = set()
        self._wake = asyncio.Event()
        self._in_flight = InFlight(self.owner)  # claimed, not settled yet

    def wake(self) -> None:
        """Events may be due (queued in this process, or a connection bound): look now."""
        self._wake.set()

    def add(self, connection: Bound) -> None:
        self._connections.add(connection)

    def bind(self, connection: Bound, subscription_id: str) -> None:
        bound = self._bound.setdefault(subscription_id, [])
        if connection not in bound:
            bound.append(connection)
        self.wake()

    def unbind(self, connection: Bound, subscription_id: str) -> None:
        bound = self._bound.get(subscription_id, [])
        if connection in bound:
            bound.remove(connection)
        if not bound:
            self._bound.pop(subscription_id, None)

    def drop(self, connection: Bound) -> None:
        """The connection ended: every binding of it goes."""
        self._connections.discard(connection)
        for subscription_id in list(self._bound):
            self.unbind(connection, subscription_id)

    def bound_ids(self) -> list[str]:
        return sorted(self._bound)

    async def step(self) -> int:
        """Claim and send once; how many deliveries were settled."""
        ids = self.bound_ids()
        claimed: list[Delivery] = []
        for start in range(0, len(ids), MAX_CLAIM_FILTER):
            chunk = ids[start : start + MAX_CLAIM_FILTER]
            claimed += await self._in_flight.claim(
                self.queue.claim(
                    datetime.now(UTC), self.batch_size, self.lease_s, self.owner, only=chunk
                )
            )
        if claimed:
            subscriptions = await self.live.get()
            if any(d.event.subscription_id not in subscriptions for d in claimed):
                subscriptions = await self.live.get(stale=True)
            done = await asyncio.gather(*(self._settle(d, subscriptions) for d in claimed))
            return sum(done)
        return 0

    async def _settle(self, delivery: Delivery, subscriptions: dict[str, Live]) -> bool:
        live = subscriptions.get(delivery.event.subscription_id)
        return await self._in_flight.settle(delivery, self._deliver(delivery, live))

    async def _deliver(self, delivery: Delivery, live: Live | None) -> bool:
        """Send one delivery; whether it was settled (sent, or given up on)."""
        connections = list(self._bound.get(delivery.event.subscription_id, ()))
        if not connections:
            await self.queue.release(delivery.id, self.owner)
            return False
        prepared = await self.worker.prepare(live, delivery, self.owner)
        if live is None or prepared is None:
            return True  # dead-lettered
        body = self.sender.body(
            live,
            "event-notification",
            [prepared.event],
            status="active",
            events_since_start=prepared.events_since_start,
        )
        text = body.decode() if body is not None else f"ping {live.id}"
        sent = await self._send(connections, live.id, text)
        result = DeliveryResult.delivered() if sent else DeliveryResult.retry("websocket closed")
        _log.info(
            "subscription notification",
            subscription=live.id,
            client_id=live.owner.client_id,
            channel="websocket",
            event_number=delivery.event.number,
            ok=sent,
        )
        self.worker.audit(live, delivery, prepared.disclosed, result)
        if sent:
            await self.queue.delivered(delivery.id, self.owner)
        else:
            await self.queue.release(delivery.id, self.owner)
        return sent

    async def _send(self, connections: Sequence[Bound], subscription_id: str, text: str) -> bool:
        """Send on the first connection that takes it (the most recently bound first); one
        that fails is gone and loses its bindings."""
        for connection in reversed(connections):
            if await connection.notify(subscription_id, text):
                return True
            self.drop(connection)
        return False

    async def _pause(self) -> None:
        await wait_for_event(self._wake, self.poll_seconds)
        self._wake.clear()

    async def run(self) -> None:
        """Deliver forever; database trouble is logged and retried."""

        async def once() -> float:
            if not await self.step():
                await self._pause()
            return 0.0

        await forever(once, what="websocket delivery", log=_log, transient=(FhirError,))

    async def release_in_flight(self) -> None:
        """At shutdown (the hub's task cancelled): hand back the deliveries it held, so that
        a client that binds to another server gets them at once, not after their lease."""
        await self._in_flight.release(self.queue)

    async def close(self) -> None:
        """Close every connection (the server is stopping)."""
        await asyncio.gather(
            *(c.shutdown() for c in list(self._connections)), return_exceptions=True
        )
