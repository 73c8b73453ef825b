"""The live subscriptions of the server, compiled for matching and cached.

https://hl7.org/fhir/R4/subscription.html (statuses ``requested | active | error | off``) and the
Backport IG workflow (https://hl7.org/fhir/uv/subscriptions-backport/workflow.html). A
Subscription is live when its resource says ``requested`` or ``active`` and its owner is recorded
(:mod:`.owners`, written after the API write commits). Each is parsed against the current
topics and compiled once; the set is reloaded when a Subscription or a topic changes (the
dispatcher sees that in the outbox) and at least every ``max_age`` seconds, so that a process
that did not dispatch that change catches up too. A stored Subscription that no longer parses
(a topic removed) is logged and left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.infra.logging import get_logger
from healthbridge.store.repository import Repository
from healthbridge.subscriptions.matching import CompiledSubscription, Matcher
from healthbridge.subscriptions.owners import Owner, Owners
from healthbridge.subscriptions.subscription import Subscription, parse_subscription
from healthbridge.subscriptions.topic_catalog import TopicCatalog

PAGE = 500
_log = get_logger("healthbridge.subscriptions.live")


@dataclass(frozen=True, slots=True)
class Live:
    id: str
    version: int  # of the Subscription resource: each write asks for a new handshake
    subscription: Subscription
    compiled: CompiledSubscription
    owner: Owner


class LiveSubscriptions:
    def __init__(
        self,
        repository: Repository,
        search: SearchParser,
        catalog: TopicCatalog,
        matcher: Matcher,
        owners: Owners,
        *,
        max_age: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository  # unrestricted: every subscription of the server
        self._search = search
        self._catalog = catalog
        self._matcher = matcher
        self.owners = owners
        self.max_age = max_age
        self._clock = clock
        self._loaded_at: float | None = None
        self.by_id: dict[str, Live] = {}

    async def get(self, *, stale: bool = False) -> dict[str, Live]:
        """The live subscriptions by id, reloaded when ``stale`` or older than ``max_age``."""
        now = self._clock()
        if stale or self._loaded_at is None or now - self._loaded_at >= self.max_age:
            await self.load()
            self._loaded_at = now
        return self.by_id

    async def load(self) -> None:
        await self._catalog.refresh()
        owners = {o.subscription_id: o for o in await self.owners.all()}
        query = self._search.parse(
            "Subscription", [("status", "requested,active"), ("_count", str(PAGE))]
        )
        found: dict[str, Live] = {}
        cursor: str | None = None
        while True:
            page = await self._repository.search(query, cursor)
            for stored in page.matches:
                owner = owners.get(stored.id)
                if owner is not None:
                    live = self._compile(stored.id, stored.version_id, stored.content, owner)
                    if live is not None:
                        found[stored.id] = live
            cursor = page.next_cursor
            if cursor is None:
                break
        self.by_id = found

    def _compile(self, id: str, version: int, content: bytes, owner: Owner) -> Live | None:
        try:
            subscription = parse_subscription(jsonformat.loads(content), self._catalog.get)
            topic = self._catalog.get(subscription.topic) if subscription.topic else None
            compiled = self._matcher.compile(subscription, topic)
        except FhirError as exc:
            _log.warning("stored subscription left out", id=id, error=str(exc))
            return None
        return Live(id, version, subscription, compiled, owner)
