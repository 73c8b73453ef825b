"""The subscriptions feature as ``app.py`` composes it.

Subscriptions Backport IG: https://hl7.org/fhir/uv/subscriptions-backport/. One object per
process builds what the feature needs from Settings (topics, matcher, channels, owners), hands
the FHIR service its ``Subscription`` write hook (:mod:`.lifecycle`) and runs the background
work: the dispatcher (:mod:`.dispatcher`) and the delivery worker (:mod:`.delivery`).
:meth:`SubscriptionsFeature.start` starts them, :meth:`SubscriptionsFeature.close` ends them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import timedelta
from typing import Any, Final

from healthbridge.audit.recorder import AuditRecorder
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.rest.operations.registry import Operation
from healthbridge.rest.write_hooks import WriteHooks
from healthbridge.security.access import AccessPolicy
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.subscriptions import replay
from healthbridge.subscriptions.builtin_topics import builtin_topics
from healthbridge.subscriptions.channels.registry import Channels, channels_config
from healthbridge.subscriptions.delivery import DeliveryWorker, RetryPolicy
from healthbridge.subscriptions.dispatcher import Dispatcher
from healthbridge.subscriptions.lifecycle import SubscriptionWrites
from healthbridge.subscriptions.live import LiveSubscriptions
from healthbridge.subscriptions.matching import Matcher
from healthbridge.subscriptions.operations import SubscriptionOperations
from healthbridge.subscriptions.owners import Owners
from healthbridge.subscriptions.sender import Sender
from healthbridge.subscriptions.timekeeping import Timekeeper
from healthbridge.subscriptions.topic_catalog import TopicCatalog

TOPIC_CANONICAL: Final = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "capabilitystatement-subscriptiontopic-canonical"
)


class SubscriptionsFeature:
    def __init__(
        self,
        settings: Settings,
        repository: Repository,
        definitions: Definitions,
        recorder: AuditRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.repository = repository  # unrestricted: the owner's access is applied per event
        search = SearchParser(definitions)
        self.catalog = TopicCatalog(builtin_topics(), repository, search)
        self.matcher = Matcher(definitions)
        self.channels = Channels(channels_config(settings))
        self.owners = Owners(repository.records)
        self.writes = SubscriptionWrites(
            self.catalog,
            self.matcher,
            self.channels,
            self.owners,
            repository.subscriptions,
            settings.subscription_max_per_client,
        )
        self.live = LiveSubscriptions(repository, search, self.catalog, self.matcher, self.owners)
        policy = AccessPolicy(search)  # as the FHIR API's: the owners' reads are checked alike
        self.sender = Sender(self.channels, settings.fhir_base_url())
        self.worker = DeliveryWorker(
            repository,
            self.live,
            policy,
            self.sender,
            RetryPolicy(
                base_delay=settings.subscription_retry_base_seconds,
                retry_period=timedelta(hours=settings.subscription_retry_hours),
                max_failures=settings.subscription_max_failures,
            ),
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            lease_s=settings.subscription_timeout_seconds + 30,
            recorder=recorder,
        )
        self.dispatcher = Dispatcher(
            repository,
            self.live,
            self.matcher,
            policy,
            self.sender,
            on_queued=self.worker.wake,
            handshake_lease_s=settings.subscription_timeout_seconds + 30,
        )
        self.timekeeper = Timekeeper(
            repository,
            self.live,
            self.sender,
            retention=timedelta(hours=settings.subscription_retention_hours),
        )
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, hooks: WriteHooks) -> None:
        hooks.register("Subscription", self.writes)

    def operations(self) -> list[Operation]:
        """``$status`` and ``$events`` (:mod:`.operations`), ``$redeliver`` (:mod:`.replay`)."""
        return [
            *SubscriptionOperations(
                self.catalog, self.owners, self.settings.fhir_base_url()
            ).operations(),
            replay.operation(),
        ]

    def capability_extensions(self) -> dict[str, list[dict[str, Any]]]:
        """The topics this server offers, on the CapabilityStatement's Subscription entry
        (https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-capabilitystatement-subscriptiontopic-canonical.html)."""
        return {
            "Subscription": [
                {"url": TOPIC_CANONICAL, "valueCanonical": topic.canonical}
                for topic in self.catalog.topics
            ]
        }

    def start(self) -> list[asyncio.Task[None]]:
        """Start the dispatcher and the delivery worker of this process."""
        self._tasks = [
            asyncio.create_task(self.dispatcher.run(), name="subscription-dispatcher"),
            asyncio.create_task(self.worker.run(), name="subscription-delivery"),
            asyncio.create_task(self.timekeeper.run(), name="subscription-timekeeping"),
        ]
        return self._tasks

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.channels.aclose()
