"""Subscription writes through the FHIR API: checked before, owned and keyed after.

https://hl7.org/fhir/R4/subscription.html and the Backport IG's workflow
(https://hl7.org/fhir/uv/subscriptions-backport/workflow.html). Registered by ``app.py`` as the
``Subscription`` write hook (:mod:`healthbridge.rest.write_hooks`), so every write path (create,
update, conditional writes, PATCH, transaction and batch entries) runs it:

* before the write: the resource is parsed against the known topics (built-in and stored Basic
  topics, :class:`~.topic_catalog.TopicCatalog`), its filters compiled for the matcher, its
  channel checked (:meth:`~.channels.registry.Channels.check`: SSRF rules, resolved in a
  worker thread; ahead of a transaction's unit of work, :meth:`SubscriptionWrites.prepare`)
  and a place taken in the writing client's quota of ``subscription_max_per_client`` live
  subscriptions (422 ``business-rule`` beyond it; :mod:`.quota`, race-free);
* after the commit: the writer becomes the owner (:mod:`.owners`); a new owner gets a new HMAC
  secret, returned once in the response header ``X-Subscription-Secret: Subscription/<id>
  <secret>``; the delivery queue's status becomes ``requested`` (the dispatcher sends the
  handshake, then makes it ``active``) or ``off``. A delete removes the owner record.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Final

from healthbridge.fhir import jsonformat
from healthbridge.fhir.types import Resource
from healthbridge.rest.write_hooks import add_response_header, in_unit_of_work
from healthbridge.security.context import AccessContext
from healthbridge.store.repository import StoredResource
from healthbridge.store.subscriptions import DeliveryQueue
from healthbridge.subscriptions.channels.registry import Channels
from healthbridge.subscriptions.channels.signature import new_secret
from healthbridge.subscriptions.matching import Matcher
from healthbridge.subscriptions.owners import LIVE, Owner, Owners
from healthbridge.subscriptions.quota import ClientQuota
from healthbridge.subscriptions.subscription import Subscription, parse_subscription
from healthbridge.subscriptions.topic_catalog import TopicCatalog

SECRET_HEADER: Final = "X-Subscription-Secret"  # noqa: S105 - a header name
_CHECKED: ContextVar[frozenset[tuple[str, str | None, tuple[tuple[str, str], ...]]]] = ContextVar(
    "subscription_channels_checked", default=frozenset()
)
"""The channels the request being answered has checked (set per request task)."""


class SubscriptionWrites:
    """The ``Subscription`` write hook (module docstring)."""

    def __init__(
        self,
        catalog: TopicCatalog,
        matcher: Matcher,
        channels: Channels,
        owners: Owners,
        queue: DeliveryQueue,
        max_per_client: int,
    ) -> None:
        self.catalog = catalog
        self.matcher = matcher
        self.channels = channels
        self.owners = owners
        self.queue = queue
        self.quota = ClientQuota(owners.records, owners, max_per_client)

    async def parse(self, resource: Resource) -> Subscription:
        """``resource`` parsed and compiled against the current topics (InvalidRequest)."""
        await self.catalog.refresh()
        subscription = parse_subscription(resource, self.catalog.get)
        topic = self.catalog.get(subscription.topic) if subscription.topic else None
        self.matcher.compile(subscription, topic)
        return subscription

    async def prepare(self, resource: Resource, access: AccessContext) -> None:
        await self._check_channel(await self.parse(resource))

    async def check(self, resource: Resource, access: AccessContext) -> None:
        subscription = await self.parse(resource)
        await self._check_channel(subscription)
        if subscription.status in LIVE:
            await self.quota.reserve(access, besides=subscription.id)

    async def _check_channel(self, subscription: Subscription) -> None:
        """The channel's checks (SSRF rules: its host resolved, in a worker thread). Inside a
        unit of work, a channel this request checked already (:meth:`prepare`, or an earlier
        try of a PATCH) is not looked up again while the unit holds SQLite's writer."""
        channel = (subscription.channel_type, subscription.endpoint, subscription.headers)
        if in_unit_of_work() and channel in _CHECKED.get():
            return
        await asyncio.to_thread(self.channels.check, *channel)
        _CHECKED.set(_CHECKED.get() | {channel})

    async def written(self, stored: StoredResource, access: AccessContext) -> None:
        if stored.deleted:
            await self.owners.remove(stored.id)
            await self.queue.set_status(stored.id, "off")
            return
        status = jsonformat.loads(stored.content).get("status")
        status = status if isinstance(status, str) else "requested"
        existing = await self.owners.get(stored.id)
        if existing is not None and existing.same_principal(access):
            owner = Owner.of(stored.id, existing.secret, status, access)
        else:  # a new subscription, or a new writer: it owns it now, with a secret of its own
            owner = Owner.of(stored.id, new_secret(), status, access)
            add_response_header(SECRET_HEADER, f"Subscription/{stored.id} {owner.secret}")
        await self.owners.put(owner)
        if status in LIVE:
            await self.quota.settle(access)
        await self.queue.set_status(stored.id, "requested" if status in LIVE else "off")
