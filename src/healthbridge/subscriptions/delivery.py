"""The delivery worker: queued events sent to their subscriptions' endpoints, retried, given up.

Backport IG: https://hl7.org/fhir/uv/subscriptions-backport/notifications.html (event
notifications), https://hl7.org/fhir/uv/subscriptions-backport/errors.html (errors and status).
Each worker (one per process; several processes share the queue's leases) claims due deliveries
(at most one in flight per subscription, in event-number order) and for each:

* builds the ``event-notification`` Bundle; a ``full-resource`` payload holds the focus version
  as the subscription's owner reads it (the checks of any API read apply), and an event whose
  focus the owner can no longer read is given up, not sent;
* sends it through the channel, signed with the subscription's secret;
* on success marks it delivered; on failure retries with exponential backoff and full jitter
  (``base_delay`` doubling per attempt up to ``max_delay``, at least the receiver's
  ``Retry-After``) until ``retry_period`` after the event was recorded, then dead-letters it
  (at once when the failure is permanent, e.g. 410 Gone or a refused address); after
  ``max_failures`` consecutive failures the subscription goes to ``error`` with the reason.

Websocket subscriptions are left to the connections bound to them (:mod:`.websocket_hub`):
the worker skips them when it claims, and hands back untried one it claimed before it knew.

Every notification sent is audited as a disclosure of its focus to the subscription's owner:
an IHE BALP ``read`` AuditEvent (https://profiles.ihe.net/ITI/BALP/) whose agent is the owner
(client, user, launch patient), whose entity is the focus version (and its Patient), outcome
success or serious failure (the receiver did not take it), described as ``Subscription/<id>
event <n>``; the worker waits for room in the audit buffer before sending, as the REST path
does. It is also logged (``subscription notification``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from healthbridge.audit.recorder import AuditRecorder
from healthbridge.audit.records import AuditRecord, Who
from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.types import Resource
from healthbridge.infra.logging import get_logger
from healthbridge.infra.tasks import forever, wait_for_event
from healthbridge.security.access import AccessPolicy
from healthbridge.security.context import NeverRevoked, Revocations
from healthbridge.store.repository import Repository, StoredResource
from healthbridge.store.subscriptions import (
    MAX_CLAIM_FILTER,
    Delivery,
    DeliveryQueue,
    Settled,
    SubscriptionEvent,
)
from healthbridge.subscriptions.channels.base import DeliveryResult
from healthbridge.subscriptions.channels.websocket import is_websocket, websocket_ids
from healthbridge.subscriptions.in_flight import InFlight
from healthbridge.subscriptions.live import Live, LiveSubscriptions
from healthbridge.subscriptions.notifications import Event
from healthbridge.subscriptions.sender import Sender, instant
from healthbridge.subscriptions.shapes import context, shape_of
from healthbridge.subscriptions.standing import REASON as REVOKED
from healthbridge.subscriptions.standing import withdrawn

_log = get_logger("healthbridge.subscriptions.delivery")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_delay: float = 5.0  # seconds
    max_delay: float = 3600.0
    retry_period: timedelta = timedelta(hours=72)
    max_failures: int = 10

    def delay(self, attempts: int, retry_after: float | None, rng: Callable[[], float]) -> float:
        """Seconds before try ``attempts + 1``: full jitter over the doubled base, capped."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempts, 32))
        return max(ceiling * (0.5 + rng() / 2), retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One event's notification content: the event (focus and shape resources), the
    subscription's event count, and what it discloses (for the audit record)."""

    event: Event
    events_since_start: int
    disclosed: tuple[bytes, ...]


class DeliveryWorker:
    def __init__(
        self,
        repository: Repository,
        live: LiveSubscriptions,
        policy: AccessPolicy,
        sender: Sender,
        retry: RetryPolicy,
        *,
        owner: str,
        lease_s: float = 60.0,
        batch_size: int = 20,
        poll_seconds: float = 0.5,
        rng: Callable[[], float] = random.random,
        recorder: AuditRecorder | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self.repository = repository
        self.queue: DeliveryQueue = repository.subscriptions
        self.live = live
        self.policy = policy
        self.sender = sender
        self.retry = retry
        self.owner = owner
        self.lease_s = lease_s
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._rng = rng
        self.recorder = recorder
        self.revocations = revocations or NeverRevoked()
        self._wake = asyncio.Event()
        self._in_flight = InFlight(owner)  # claimed, not settled yet
        self._websockets: tuple[dict[str, Live] | None, list[str]] = (None, [])

    def wake(self) -> None:
        """New events were queued in this process: look now rather than at the next poll."""
        self._wake.set()

    async def step(self) -> int:
        """Claim and deliver once; how many deliveries were tried."""
        claimed = await self._claim(self.batch_size)
        await asyncio.gather(*(self._settle(d, live) for d, live in claimed))
        return len(claimed)

    async def _claim(self, limit: int) -> list[tuple[Delivery, Live | None]]:
        """Up to ``limit`` due deliveries leased to this worker, with their subscriptions;
        in flight (:meth:`release_in_flight`) until :meth:`_settle` is done with them."""
        subscriptions = await self.live.get()
        if self._websockets[0] is not subscriptions:  # worked out once per loaded set
            ids = websocket_ids((id, live.subscription) for id, live in subscriptions.items())
            self._websockets = (subscriptions, ids)
        websockets = self._websockets[1]
        claimed = await self._in_flight.claim(
            self.queue.claim(
                datetime.now(UTC),
                limit,
                self.lease_s,
                self.owner,
                skip=websockets[:MAX_CLAIM_FILTER],  # sent by their connections (websocket_hub)
            )
        )
        if any(d.event.subscription_id not in subscriptions for d in claimed):
            subscriptions = await self.live.get(stale=True)  # made by another process
        return [(d, subscriptions.get(d.event.subscription_id)) for d in claimed]

    async def _settle(self, delivery: Delivery, live: Live | None) -> bool:
        """Deliver one claimed delivery; True when its subscription has another event due now.
        Cancelled (shutdown): it stays in flight, to be handed back; failed otherwise: its
        lease runs out and a later claim retries it."""
        return await self._in_flight.settle(delivery, self._deliver(delivery, live))

    async def release_in_flight(self) -> None:
        """At shutdown (the worker's task cancelled): hand back the deliveries it held, so that
        the next worker sends them at once rather than after their lease (one may have reached
        its endpoint already: delivery is at least once)."""
        await self._in_flight.release(self.queue)

    async def prepare(self, live: Live | None, delivery: Delivery, owner: str) -> Prepared | None:
        """What the notification of ``delivery`` carries, once there is room in the audit
        buffer (the REST path waits alike); None after dead-lettering it (as ``owner``, the
        lease holder: this worker or the websocket hub) when the subscription is not live, its
        owner's authorization was revoked (:mod:`.standing`) or it may no longer read the
        focus."""
        if live is None:
            await self.queue.dead_letter(delivery.id, owner, "the subscription is not live")
            return None
        if await withdrawn(self.revocations, self.queue, live):
            await self.queue.dead_letter(delivery.id, owner, REVOKED)
            return None
        found = await self.event(live, delivery.event, delivery.focus)
        if found is None:
            await self.queue.dead_letter(
                delivery.id, owner, "the subscription's owner may no longer read the focus"
            )
            return None
        event, disclosed = found
        since = delivery.events_since_start  # as claimed (a claim always carries it)
        if since is None:
            since = delivery.event.number
        if self.recorder is not None:
            await self.recorder.room()
        return Prepared(event, since, disclosed)

    async def _deliver(self, delivery: Delivery, live: Live | None) -> bool:
        if live is not None and is_websocket(live.subscription):  # not ours to send
            await self.queue.release(delivery.id, self.owner)  # (made by another process)
            return True
        prepared = await self.prepare(live, delivery, self.owner)
        if live is None or prepared is None:
            return True  # dead-lettered: the next event may be due
        result = await self.sender.send(
            live,
            "event-notification",
            [prepared.event],
            status="active",
            events_since_start=prepared.events_since_start,
        )
        _log.info(
            "subscription notification",
            subscription=live.id,
            client_id=live.owner.client_id,
            focus=f"{delivery.event.focus_type}/{delivery.event.focus_id}",
            event_number=delivery.event.number,
            ok=result.ok,
            status_code=result.status_code,
            error=result.error,
        )
        self.audit(live, delivery, prepared.disclosed, result)
        if result.ok:
            settled = await self.queue.delivered(delivery.id, self.owner)
        else:
            settled = await self._failed(delivery, live, result)
        return settled.due(datetime.now(UTC))

    async def _failed(self, delivery: Delivery, live: Live, result: DeliveryResult) -> Settled:
        error = result.error or f"HTTP {result.status_code}"
        now = datetime.now(UTC)
        retry_at = now + timedelta(
            seconds=self.retry.delay(delivery.attempts, result.retry_after, self._rng)
        )
        if result.permanent or retry_at > delivery.event.recorded + self.retry.retry_period:
            settled = await self.queue.dead_letter(delivery.id, self.owner, error)
        else:
            settled = await self.queue.failed(delivery.id, self.owner, error, retry_at)
        state = await self.queue.status(live.id)
        if state is not None and state.failures >= self.retry.max_failures:
            reason = f"{state.failures} deliveries failed in a row; the last: {error}"
            await self.queue.set_status(live.id, "error", reason)
            _log.warning("subscription set to error", subscription=live.id, reason=reason)
        return settled

    def audit(
        self, live: Live, delivery: Delivery, disclosed: tuple[bytes, ...], result: DeliveryResult
    ) -> None:
        """The notification as a disclosure to the owner (module docstring)."""
        if self.recorder is None:
            return
        owner = live.owner
        recorded = delivery.event
        self.recorder.record(
            AuditRecord(
                interaction="read",
                status=200 if result.ok else 502,
                resource_type=recorded.focus_type,
                id=recorded.focus_id,
                version=str(recorded.focus_version),
                resources=tuple(c for c in disclosed if c),
                who=Who(owner.subject, owner.fhir_user, owner.client_id, patient=owner.patient),
                description=f"Subscription/{live.id} event {recorded.number}"
                + ("" if result.ok else f" not delivered: {result.error}"),
            )
        )

    async def event(
        self, live: Live, recorded: SubscriptionEvent, claimed: StoredResource | None = None
    ) -> tuple[Event, tuple[bytes, ...]] | None:
        """The notification event, with the resources of the topic's notification shape
        (:mod:`.shapes`), and what it discloses (the focus, and the shape's resources in a
        full-resource payload), all read as the owner may (None: it may not read the focus).
        ``claimed``: the focus version when the claim read it (checked as a vread would be)."""
        interaction = recorded.extra.get("interaction", "update")
        access = live.owner.access()
        scoped = self.policy.wrap(self.repository, access)
        if claimed is not None and not claimed.deleted:  # (a vread of a delete answers 410)
            visible = await self.policy.shown(access, claimed)
            if visible is None:
                return None
            stored = visible
        else:
            try:
                stored = await scoped.vread(
                    recorded.focus_type, recorded.focus_id, recorded.focus_version
                )
            except FhirError:
                return None
        payload = live.subscription.content
        focus = (
            jsonformat.loads(stored.content)
            if payload == "full-resource" and not stored.deleted
            else {"resourceType": recorded.focus_type, "id": recorded.focus_id}
        )
        extra: tuple[Resource, ...] = ()
        if payload != "empty" and not stored.deleted:  # the topic's notification shape
            topic = live.compiled.topic.topic if live.compiled.topic is not None else None
            shape = shape_of(self.policy.search, topic, recorded.focus_type, recorded.focus_id)
            parsed = payload == "full-resource" or not shape.includes  # (else not looked at)
            content = focus if parsed else jsonformat.loads(stored.content)
            extra = await context(scoped, self.policy.indexer, content, shape)
        event = Event(recorded.number, instant(recorded.recorded), interaction, focus, extra)
        shown = extra if payload == "full-resource" else ()
        return event, (stored.content, *(jsonformat.dumps(r) for r in shown))

    async def _pause(self) -> None:
        await wait_for_event(self._wake, self.poll_seconds)
        self._wake.clear()

    async def run(self) -> None:
        """Deliver forever, up to ``batch_size`` deliveries at once. A claim is made when new
        events were queued in this process (:meth:`wake`), when a settled delivery's
        subscription has its next event due (one event of a subscription is claimable at a
        time), when the last claim took every free slot (more may be due), and otherwise every
        ``poll_seconds`` (events queued by other processes, retries that came due): not after
        every settled delivery, each claim being a write. Database trouble is logged and
        retried."""
        running: set[asyncio.Task[bool]] = set()
        saturated = False  # the last claim filled every free slot

        def settled(task: asyncio.Task[bool]) -> None:
            running.discard(task)
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:
                _log.error("subscription delivery failed", error=repr(error))
            if error is not None or saturated or task.result():
                self._wake.set()

        async def once() -> float:
            nonlocal saturated
            free = self.batch_size - len(running)
            claimed = await self._claim(free) if free > 0 else []
            saturated = len(claimed) >= free
            for delivery, live in claimed:
                task = asyncio.create_task(self._settle(delivery, live))
                running.add(task)
                task.add_done_callback(settled)
            if not claimed or not saturated:
                await self._pause()
            return 0.0

        try:
            await forever(once, what="subscription delivery", log=_log, transient=(FhirError,))
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
