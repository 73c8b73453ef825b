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

from starlette.types import ASGIApp

from healthbridge.audit.recorder import AuditRecorder
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.infra.sealing import Sealer
from healthbridge.rest.operations.registry import Operation
from healthbridge.rest.write_hooks import WriteHooks
from healthbridge.security.access import AccessPolicy
from healthbridge.security.care_team import care_relationships
from healthbridge.security.context import Revocations
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.subscriptions import replay, websocket
from healthbridge.subscriptions.builtin_topics import builtin_topics
from healthbridge.subscriptions.channels.registry import Channels, channels_config
from healthbridge.subscriptions.delivery import DeliveryWorker, RetryPolicy
from healthbridge.subscriptions.dispatcher import Dispatcher
from healthbridge.subscriptions.lease import Lease
from healthbridge.subscriptions.lifecycle import SubscriptionWrites
from healthbridge.subscriptions.live import LiveSubscriptions
from healthbridge.subscriptions.matching import Matcher
from healthbridge.subscriptions.missed_doses import missed_dose_scheduler
from healthbridge.subscriptions.operations import SubscriptionOperations
from healthbridge.subscriptions.owners import Owners, Ownership
from healthbridge.subscriptions.sender import Sender
from healthbridge.subscriptions.timekeeping import Timekeeper
from healthbridge.subscriptions.topic_catalog import TopicCatalog
from healthbridge.subscriptions.websocket_hub import WebsocketHub
from healthbridge.subscriptions.websocket_tokens import (
    WS_PATH,
    BindingTokenOperation,
    BindingTokens,
)

DISPATCHER: Final = "subscription-dispatcher"
DISPATCHER_LEASE_S: Final = 10.0
"""One process dispatches at a time; another takes over this long after it dies."""
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
        revocations: Revocations | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        """``revocations`` (the token verifier; None with ``--no-auth``) says when an owner's
        authorization was revoked: its subscriptions stop (:mod:`.standing`); ``sealer`` seals
        the owners' signing secrets at rest (the app's; None only in tests)."""
        self.settings = settings
        self.repository = repository  # unrestricted: the owner's access is applied per event
        search = SearchParser(definitions)
        self.catalog = TopicCatalog(builtin_topics(), repository, search)
        self.matcher = Matcher(definitions)
        self.channels = Channels(channels_config(settings))
        self.owners = Owners(repository.records, sealer)
        self.ownership = Ownership(self.owners)  # who may change or delete a Subscription
        self.writes = SubscriptionWrites(
            self.catalog,
            self.matcher,
            self.channels,
            self.owners,
            repository.subscriptions,
            settings.subscription_max_per_client,
        )
        self.live = LiveSubscriptions(repository, search, self.catalog, self.matcher, self.owners)
        # as the FHIR API's: the owners' reads are checked alike (clinicians held to their care)
        care = care_relationships(settings.user_access, repository, settings.care_relationship_days)
        policy = AccessPolicy(search, care=care)
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
            lease_s=settings.subscription_timeout_seconds + 10,
            recorder=recorder,
            revocations=revocations,
        )
        self.dispatcher = Dispatcher(
            repository,
            self.live,
            self.matcher,
            policy,
            self.sender,
            on_queued=self._queued,
            handshake_lease_s=settings.subscription_timeout_seconds + 30,
            lease=Lease(repository.records, DISPATCHER, self.worker.owner, DISPATCHER_LEASE_S),
            revocations=revocations,
        )
        self.timekeeper = Timekeeper(
            repository,
            self.live,
            self.sender,
            retention=timedelta(hours=settings.subscription_retention_hours),
        )
        self.missed_doses = missed_dose_scheduler(
            settings,
            repository,
            definitions,
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        )
        self.ws_tokens = BindingTokens(repository.records, settings.subscription_ws_token_seconds)
        self.hub = WebsocketHub(repository, self.live, self.worker, self.sender)
        self._tasks: list[asyncio.Task[None]] = []

    def _queued(self) -> None:
        """The dispatcher queued events: the worker and the websocket hub look now."""
        self.worker.wake()
        self.hub.wake()

    def websockets(self) -> dict[str, ASGIApp]:
        """The websocket channel's endpoint by path (:mod:`.websocket`), for the FHIR router."""
        serve = websocket.endpoint(
            self.hub, self.ws_tokens, self.live, self.sender, self.repository.subscriptions
        )
        return {WS_PATH: serve}

    def register(self, hooks: WriteHooks) -> None:
        hooks.register("Subscription", self.writes)

    def operations(self) -> list[Operation]:
        """``$status`` and ``$events`` (:mod:`.operations`), ``$redeliver`` (:mod:`.replay`)."""
        return [
            *SubscriptionOperations(
                self.catalog, self.owners, self.settings.fhir_base_url()
            ).operations(),
            replay.operation(),
            *BindingTokenOperation(
                self.catalog, self.owners, self.ws_tokens, self.settings.fhir_base_url()
            ).operations(),
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
            asyncio.create_task(self.hub.run(), name="subscription-websockets"),
        ]
        if self.missed_doses is not None:  # one process scans at a time (it holds the lease)
            self._tasks.append(
                asyncio.create_task(self.missed_doses.run(), name="subscription-missed-doses")
            )
        return self._tasks

    async def close(self) -> None:
        await self.hub.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.worker.release_in_flight()
        await self.hub.release_in_flight()
        await self.dispatcher.resign()
        if self.missed_doses is not None:
            await self.missed_doses.close()
        await self.channels.aclose()
