"""The topics a Subscription may name: the built-in ones and the Basic topics stored on the server.

Subscriptions Backport IG, https://hl7.org/fhir/uv/subscriptions-backport/components.html#subscription-topics:
a server's topics are R4 ``Basic`` resources carrying the R5 SubscriptionTopic in cross-version
extensions (:mod:`.topic_basic`); this server also ships six of its own (:mod:`.builtin_topics`).
A stored topic with the canonical of a built-in one does not replace it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.infra.logging import get_logger
from healthbridge.store.repository import Repository
from healthbridge.subscriptions.topic_basic import FHIR_TYPES
from healthbridge.subscriptions.topics import Topic, parse_topic

MAX_STORED_TOPICS = 1000
_log = get_logger("healthbridge.subscriptions.topics")


class TopicCatalog:
    """Built-in plus stored topics by canonical (``url`` and ``url|version``)."""

    def __init__(
        self, builtin: tuple[Topic, ...], repository: Repository, search: SearchParser
    ) -> None:
        self.builtin = builtin
        self._repository = repository  # unrestricted: topics are the server's own
        self._search = search
        self._stored: tuple[Topic, ...] = ()
        self._by_canonical: dict[str, Topic] = {}
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._index()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the stored topics change (the CapabilityStatement lists them)."""
        self._listeners.append(listener)

    @property
    def topics(self) -> tuple[Topic, ...]:
        return (*self.builtin, *self._stored)

    def get(self, canonical: str) -> Topic | None:
        """The topic a Subscription's ``criteria`` names (``url`` or ``url|version``)."""
        return self._by_canonical.get(canonical)

    async def refresh(self) -> None:
        """Reload the stored Basic topics (a malformed one is logged and skipped)."""
        async with self._lock:
            query = self._search.parse(
                "Basic",
                [("code", f"{FHIR_TYPES}|SubscriptionTopic"), ("_count", str(MAX_STORED_TOPICS))],
            )
            page = await self._repository.search(query)
            stored = []
            for found in page.matches:
                try:
                    stored.append(parse_topic(jsonformat.loads(found.content)))
                except FhirError as exc:
                    _log.warning("stored topic skipped", id=found.id, error=str(exc))
            changed = tuple(stored) != self._stored
            self._stored = tuple(stored)
            self._index()
        if changed:
            for listener in self._listeners:
                listener()

    def _index(self) -> None:
        index: dict[str, Topic] = {}
        for topic in reversed(self.topics):  # the built-in ones win
            index[topic.url] = topic
            index[topic.canonical] = topic
        self._by_canonical = index
