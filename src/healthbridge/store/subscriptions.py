"""The durable delivery queue of subscription notifications.

Subscriptions Backport IG (https://hl7.org/fhir/uv/subscriptions-backport/): every
notification-worthy event of a subscription gets the next number of its
``eventsSinceSubscriptionStart`` counter (1, 2, 3...), and a client can ask for past events by
number (``$events``) and tell from a gap that it missed one. Here live those numbers, the
recorded events, and the state of delivering each of them to the subscription's endpoint.

Semantics shared by every backend (memory fake :mod:`.memory_subscriptions`, SQL
:mod:`.sql.subscriptions`; the same contract tests run on each):

* :meth:`DeliveryQueue.enqueue` is ONE transaction: it numbers a batch of events per
  subscription in the order given, stores them as pending deliveries due now, and moves the
  batch's dispatcher cursor (the last outbox seq matched) forward with them. A crash keeps both
  or neither. An event already recorded for the same (subscription, outbox seq) is skipped, so a
  dispatcher that re-runs from its cursor (or from before it) never records an event twice.
* :meth:`DeliveryQueue.claim` leases at most ONE delivery per subscription, always the lowest
  undelivered event number of that subscription: event n+1 is never handed out before n was
  delivered or dead-lettered. Only subscriptions in status ``active`` are served. A lease
  expires: the delivery of a worker that died is handed out again (at-least-once). Of
  concurrent claimers, in this process or others, no two get the same delivery. ``only`` and
  ``skip`` narrow a claim to some subscriptions or keep it off others (the websocket channel:
  its deliveries go to the connection bound to the subscription, never to the generic worker,
  https://hl7.org/fhir/uv/subscriptions-backport/channels.html#websockets).
* ``delivered``/``failed``/``dead_letter``/``release`` act only for the owner of the lease
  (a false :class:`Settled` otherwise, changing nothing) and say when the subscription's next
  pending event may be claimed, so that a worker claims again only when something is due.
  ``failed`` keeps the delivery pending until ``retry_at`` (the caller computes the backoff);
  ``dead_letter`` gives up on it (kept for inspection and :meth:`DeliveryQueue.redeliver`) and
  lets the next event of the subscription go; ``release`` hands it back untried (due at once,
  no attempt or failure counted).
* A subscription unknown to the queue is created by its first ``enqueue`` in status
  ``requested`` (nothing is delivered until :meth:`DeliveryQueue.set_status` makes it
  ``active``), or by ``set_status``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from healthbridge.store.repository import StoredResource

SubscriptionStatus = Literal["requested", "active", "error", "off"]
"""https://hl7.org/fhir/R4/valueset-subscription-status.html"""
DeliveryState = Literal["pending", "delivered", "dead"]
STATUSES: tuple[SubscriptionStatus, ...] = ("requested", "active", "error", "off")
LAST_EVENT = 2**62
"""Larger than any event number (the default upper bound of :meth:`DeliveryQueue.events`)."""
MAX_CLAIM_FILTER = 8192
"""Most subscription ids one :meth:`DeliveryQueue.claim` may name in ``only`` and in ``skip``
(each; SQL binds one parameter per id); more is a ``ValueError``."""


def check_claim_filter(only: Collection[str] | None, skip: Collection[str]) -> None:
    """``ValueError`` when ``only`` or ``skip`` names more than :data:`MAX_CLAIM_FILTER` ids."""
    for name, ids in (("only", only or ()), ("skip", skip)):
        if len(ids) > MAX_CLAIM_FILTER:
            raise ValueError(f"claim: {name} names {len(ids)} ids, at most {MAX_CLAIM_FILTER}")


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling a leased delivery did; true when it did something."""

    held: bool
    """The delivery was pending under the caller's lease (else nothing changed)."""
    next_attempt: datetime | None = None
    """When the subscription's next pending event may be claimed (None: none is pending)."""

    def __bool__(self) -> bool:
        return self.held

    def due(self, now: datetime) -> bool:
        """Whether the subscription has an event a claim at ``now`` would hand out."""
        return self.next_attempt is not None and self.next_attempt <= now


NOT_HELD = Settled(held=False)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One notification-worthy event for one subscription: the outbox row it comes from, the
    focus resource version, and whatever else the notification needs (``extra``, JSON)."""

    subscription_id: str
    outbox_seq: int
    focus_type: str
    focus_id: str
    focus_version: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    """What a dispatcher matched in the outbox rows up to ``after_seq``: its events, recorded
    together with ``dispatcher``'s cursor moving to ``after_seq``."""

    dispatcher: str
    after_seq: int
    events: Sequence[NewEvent]


@dataclass(frozen=True, slots=True)
class SubscriptionEvent:
    """A recorded event: ``number`` is its ``eventNumber`` (IG: events-since-subscription-start)."""

    subscription_id: str
    number: int
    outbox_seq: int
    focus_type: str
    focus_id: str
    focus_version: int
    extra: dict[str, Any]
    recorded: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """The delivery of one event. ``owner`` and ``lease_until`` are set while a worker holds
    it; ``attempts`` counts failed tries; ``due`` is when it may be tried (again)."""

    id: int
    event: SubscriptionEvent
    state: DeliveryState
    attempts: int
    due: datetime
    owner: str | None
    lease_until: datetime | None
    error: str | None
    delivered: datetime | None
    events_since_start: int | None = None
    """The subscription's ``eventsSinceSubscriptionStart`` when this delivery was claimed
    (None outside a claim)."""
    focus: StoredResource | None = None
    """The focus version as the claim read it, where the queue reads it with the claim (one
    round trip less per notification); None: not read (the worker reads it)."""


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """Per subscription: its status (and ``error`` reason), the last event number given out
    (``events_since_start``), consecutive failures, the number of the last event delivered
    (0: none yet), and when its next delivery may be tried (None: nothing pending)."""

    subscription_id: str
    status: SubscriptionStatus
    events_since_start: int
    error: str | None
    failures: int
    last_delivered: int
    next_attempt: datetime | None


class DeliveryQueue(Protocol):
    async def enqueue(self, batch: Batch) -> list[SubscriptionEvent]:
        """Record ``batch`` in one transaction (see the module docstring); the events recorded
        (those not recorded before), with their numbers, in the order given."""
        ...

    async def dispatcher_cursor(self, name: str) -> int:
        """The ``after_seq`` of the last batch of dispatcher ``name``; 0 when it never ran."""
        ...

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
        """Lease up to ``limit`` due deliveries to ``owner`` until ``now + lease_s``: per active
        subscription at most one, its lowest undelivered event, none held by a live lease.
        ``only`` (when given) claims just those subscriptions (none when empty), ``skip`` never
        those; each names at most :data:`MAX_CLAIM_FILTER` ids."""
        ...

    async def delivered(self, id: int, owner: str) -> Settled:
        """The delivery reached its endpoint: done; the subscription's failures reset."""
        ...

    async def failed(self, id: int, owner: str, error: str, retry_at: datetime) -> Settled:
        """A try failed: one more attempt counted, due again at ``retry_at``."""
        ...

    async def dead_letter(self, id: int, owner: str, error: str) -> Settled:
        """Give up on the delivery (kept for inspection and replay); the next event goes."""
        ...

    async def release(self, id: int, owner: str) -> Settled:
        """Hand the leased delivery back untried: due at once for the next claimer, with no
        attempt and no failure counted (a claimer that is not the one to send it)."""
        ...

    async def set_status(
        self, subscription_id: str, status: SubscriptionStatus, error: str | None = None
    ) -> SubscriptionState:
        """Set the status and its error text (None clears it); ``active`` resets failures."""
        ...

    async def status(self, subscription_id: str) -> SubscriptionState | None:
        """The subscription's state; None when the queue never heard of it."""
        ...

    async def events(
        self, subscription_id: str, since: int = 1, until: int = LAST_EVENT, limit: int = 100
    ) -> list[Delivery]:
        """Recorded events numbered ``since`` to ``until`` (inclusive) that are still kept, in
        number order, with their delivery state (``$events`` of the IG)."""
        ...

    async def redeliver(self, subscription_id: str, from_event: int) -> int:
        """Make every event numbered ``from_event`` or higher pending and due again, in order
        (replay, also of dead letters); how many."""
        ...

    async def purge_delivered(self, older_than: datetime) -> int:
        """Remove deliveries delivered before ``older_than``; how many. Dead letters stay."""
        ...
