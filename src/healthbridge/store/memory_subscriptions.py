"""The in-memory :class:`~healthbridge.store.subscriptions.DeliveryQueue` (same contract as
:mod:`.sql.subscriptions`). No method awaits, so each is atomic on the event loop. Nothing
survives the process. Event numbers: https://hl7.org/fhir/uv/subscriptions-backport/.

Like the SQL backend, each subscription keeps ``next_attempt``, when its head (lowest pending
event) may be claimed: the head's due time, or the end of the lease it is under.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator
from dataclasses import replace
from datetime import datetime, timedelta

from healthbridge.store.instants import Clock, utc
from healthbridge.store.subscriptions import (
    LAST_EVENT,
    NOT_HELD,
    Batch,
    Delivery,
    Settled,
    SubscriptionEvent,
    SubscriptionState,
    SubscriptionStatus,
    check_claim_filter,
)


def _new_state(subscription_id: str) -> SubscriptionState:
    return SubscriptionState(subscription_id, "requested", 0, None, 0, 0, None)


def _copy(delivery: Delivery) -> Delivery:
    """Callers get their own copy of ``extra``, as from a database."""
    event = replace(delivery.event, extra=copy.deepcopy(delivery.event.extra))
    return replace(delivery, event=event)


class MemorySubscriptions:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._states: dict[str, SubscriptionState] = {}
        self._deliveries: dict[int, Delivery] = {}
        self._by_source: set[tuple[int, str]] = set()  # (outbox_seq, subscription_id)
        self._cursors: dict[str, int] = {}
        self._next_id = 1

    def _now(self) -> datetime:
        return utc(self._clock())

    def _of(self, subscription_id: str) -> Iterator[Delivery]:
        return (d for d in self._deliveries.values() if d.event.subscription_id == subscription_id)

    def _head(self, subscription_id: str) -> Delivery | None:
        pending = [d for d in self._of(subscription_id) if d.state == "pending"]
        return min(pending, key=lambda d: d.event.number, default=None)

    def _next_attempt(self, subscription_id: str, now: datetime) -> datetime | None:
        head = self._head(subscription_id)
        if head is None:
            return None
        if head.lease_until is not None and head.lease_until > now:
            return head.lease_until
        return head.due

    async def enqueue(self, batch: Batch) -> list[SubscriptionEvent]:
        now = self._now()
        recorded: list[SubscriptionEvent] = []
        for item in batch.events:
            source = (item.outbox_seq, item.subscription_id)
            if source in self._by_source:
                continue
            self._by_source.add(source)
            state = self._states.get(item.subscription_id) or _new_state(item.subscription_id)
            number = state.events_since_start + 1
            self._states[item.subscription_id] = replace(
                state, events_since_start=number, next_attempt=state.next_attempt or now
            )
            event = SubscriptionEvent(
                item.subscription_id,
                number,
                item.outbox_seq,
                item.focus_type,
                item.focus_id,
                item.focus_version,
                copy.deepcopy(item.extra),
                now,
            )
            delivery = Delivery(self._next_id, event, "pending", 0, now, None, None, None, None)
            self._deliveries[self._next_id] = delivery
            self._next_id += 1
            recorded.append(_copy(delivery).event)
        self._cursors[batch.dispatcher] = max(
            self._cursors.get(batch.dispatcher, 0), batch.after_seq
        )
        return recorded

    async def dispatcher_cursor(self, name: str) -> int:
        return self._cursors.get(name, 0)

    async def claim(
        self,
        now: datetime,
        limit: int,
        lease_s: float,
        owner: str,
        *,
        only: Collection[str] | None = None,
        skip: Collection[str] = (),
    ) -> list[Delivery]:
        check_claim_filter(only, skip)
        now = utc(now)
        until = now + timedelta(seconds=lease_s)
        wanted = None if only is None else set(only)
        skipped = set(skip)
        ready = [
            s
            for s in self._states.values()
            if s.status == "active"
            and s.next_attempt is not None
            and s.next_attempt <= now
            and (wanted is None or s.subscription_id in wanted)
            and s.subscription_id not in skipped
        ]
        ready.sort(key=lambda s: (s.next_attempt, s.subscription_id))
        claimed: list[Delivery] = []
        for state in ready[: max(limit, 0)]:
            head = self._head(state.subscription_id)
            if head is None or head.due > now:
                continue
            if head.lease_until is not None and head.lease_until > now:
                continue
            head = replace(head, owner=owner, lease_until=until)
            self._deliveries[head.id] = head
            self._states[state.subscription_id] = replace(state, next_attempt=until)
            claimed.append(replace(_copy(head), events_since_start=state.events_since_start))
        return claimed

    def _owned(self, id: int, owner: str) -> Delivery | None:
        delivery = self._deliveries.get(id)
        if delivery is None or delivery.owner != owner or delivery.state != "pending":
            return None
        return delivery

    def _settle(self, delivery: Delivery, *, success: bool) -> Settled:
        """Store ``delivery`` and update its subscription's counters and next attempt."""
        self._deliveries[delivery.id] = delivery
        subscription_id = delivery.event.subscription_id
        state = self._states[subscription_id]
        if success:
            state = replace(state, failures=0, last_delivered=delivery.event.number)
        else:
            state = replace(state, failures=state.failures + 1)
        next_attempt = self._next_attempt(subscription_id, self._now())
        self._states[subscription_id] = replace(state, next_attempt=next_attempt)
        return Settled(held=True, next_attempt=next_attempt)

    async def delivered(self, id: int, owner: str) -> Settled:
        delivery = self._owned(id, owner)
        if delivery is None:
            return NOT_HELD
        done = replace(
            delivery, state="delivered", owner=None, lease_until=None, delivered=self._now()
        )
        return self._settle(done, success=True)

    async def failed(self, id: int, owner: str, error: str, retry_at: datetime) -> Settled:
        delivery = self._owned(id, owner)
        if delivery is None:
            return NOT_HELD
        retry = replace(
            delivery,
            attempts=delivery.attempts + 1,
            due=utc(retry_at),
            owner=None,
            lease_until=None,
            error=error,
        )
        return self._settle(retry, success=False)

    async def dead_letter(self, id: int, owner: str, error: str) -> Settled:
        delivery = self._owned(id, owner)
        if delivery is None:
            return NOT_HELD
        dead = replace(
            delivery,
            state="dead",
            attempts=delivery.attempts + 1,
            owner=None,
            lease_until=None,
            error=error,
        )
        return self._settle(dead, success=False)

    async def release(self, id: int, owner: str) -> Settled:
        delivery = self._owned(id, owner)
        if delivery is None:
            return NOT_HELD
        self._deliveries[id] = replace(delivery, owner=None, lease_until=None)
        subscription_id = delivery.event.subscription_id
        next_attempt = self._next_attempt(subscription_id, self._now())
        self._states[subscription_id] = replace(
            self._states[subscription_id], next_attempt=next_attempt
        )
        return Settled(held=True, next_attempt=next_attempt)

    async def set_status(
        self, subscription_id: str, status: SubscriptionStatus, error: str | None = None
    ) -> SubscriptionState:
        state = self._states.get(subscription_id) or _new_state(subscription_id)
        failures = 0 if status == "active" else state.failures
        state = replace(state, status=status, error=error, failures=failures)
        self._states[subscription_id] = state
        return state

    async def status(self, subscription_id: str) -> SubscriptionState | None:
        return self._states.get(subscription_id)

    async def events(
        self, subscription_id: str, since: int = 1, until: int = LAST_EVENT, limit: int = 100
    ) -> list[Delivery]:
        found = [d for d in self._of(subscription_id) if since <= d.event.number <= until]
        found.sort(key=lambda d: d.event.number)
        return [_copy(d) for d in found[: max(limit, 0)]]

    async def redeliver(self, subscription_id: str, from_event: int) -> int:
        state = self._states.get(subscription_id)
        if state is None:
            return 0
        now = self._now()
        again = [d for d in self._of(subscription_id) if d.event.number >= from_event]
        for delivery in again:
            self._deliveries[delivery.id] = replace(
                delivery, state="pending", due=now, attempts=0, error=None, delivered=None
            )
        leases = [
            d.lease_until
            for d in self._of(subscription_id)
            if d.state == "pending" and d.lease_until is not None and d.lease_until > now
        ]
        next_attempt = self._next_attempt(subscription_id, now)
        if next_attempt is not None and leases:
            next_attempt = max(next_attempt, *leases)
        self._states[subscription_id] = replace(state, next_attempt=next_attempt)
        return len(again)

    async def purge_delivered(self, older_than: datetime) -> int:
        limit = utc(older_than)
        old = [
            d
            for d in self._deliveries.values()
            if d.state == "delivered" and d.delivered is not None and d.delivered < limit
        ]
        for delivery in old:
            del self._deliveries[delivery.id]
            self._by_source.discard((delivery.event.outbox_seq, delivery.event.subscription_id))
        return len(old)
