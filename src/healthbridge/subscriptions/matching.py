"""Does a change trigger a subscription? https://hl7.org/fhir/R5/subscriptiontopic.html.

A :class:`Change` is one committed interaction (``create | update | delete``) with the previous
and current versions of the resource (``None`` where there is none). For a topic-based
subscription it triggers when some ``resourceTrigger`` of the topic fires and the subscription's
filters pass; for a classic one when the current version matches its criteria.

A resource trigger fires when
(subscriptiontopic-definitions.html#SubscriptionTopic.resourceTrigger):

* the resource type is the trigger's and the interaction one of its ``supportedInteraction``;
* its ``queryCriteria`` pass: ``previous`` is run on the previous version, ``current`` on the
  current one; on create (no previous version) the previous test counts as ``resultForCreate``,
  on delete the current test as ``resultForDelete`` (both default to ``test-fails``); with
  ``requireBoth`` every given test must pass, otherwise one is enough;
* its ``fhirPathCriteria`` yields ``true`` with ``%previous`` and ``%current`` bound.

When a trigger has both queryCriteria and fhirPathCriteria both must pass (the R5 spec offers them
as alternative renderings of one conceptual trigger, so for a well-formed topic this is the same
answer). Subscription filters (backport ``backport-filter-criteria``) apply to the focus
(the current version, the previous one on delete) when they name its resource type; filters on
other types do not restrict it. Classic criteria follow R4 (subscription.html): create and update
of a resource that matches; deletes do not notify.

Everything is compiled once: a topic's criteria per :class:`Topic` value, a subscription's filters
per :class:`Subscription`; a change's index rows are extracted at most once per version and each
topic evaluated at most once per change, however many subscriptions look at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.index import LazyRows
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.types import Resource
from healthbridge.subscriptions.criteria import (
    FhirPathCriteria,
    SearchCriteria,
    compile_fhirpath,
    compile_pairs,
    compile_search,
)
from healthbridge.subscriptions.subscription import Subscription
from healthbridge.subscriptions.topics import Interaction, QueryCriteria, ResourceTrigger, Topic

CLASSIC_INTERACTIONS: Final = frozenset({"create", "update"})


class Change:
    """One interaction on one resource; index rows are extracted lazily, once per version."""

    def __init__(
        self,
        indexer: Indexer,
        interaction: Interaction,
        previous: Resource | None,
        current: Resource | None,
    ) -> None:
        expected = {"create": (False, True), "update": (True, True), "delete": (True, False)}
        if expected.get(interaction) != (previous is not None, current is not None):
            raise ValueError(f"a {interaction} has the wrong previous/current versions")
        self.interaction = interaction
        self.previous = previous
        self.current = current
        focus = current if current is not None else previous
        assert focus is not None
        self.focus: Resource = focus
        self.resource_type: str = focus["resourceType"]
        self._indexer = indexer
        self._rows: dict[bool, LazyRows] = {}
        self.fired: dict[int, bool] = {}
        """Topic (by the id of its compiled form) -> whether it fires for this change: many
        subscriptions share a topic, its criteria (FHIRPath above all) run once per change."""

    def rows(self, current: bool) -> LazyRows:
        """Index values of the current (or previous) version, by parameter."""
        found = self._rows.get(current)
        if found is None:
            version = self.current if current else self.previous
            assert version is not None
            found = self._rows[current] = self._indexer.lazy_rows(version)
        return found


@dataclass(frozen=True, slots=True)
class CompiledTrigger:
    trigger: ResourceTrigger
    previous: SearchCriteria | None
    current: SearchCriteria | None
    fhirpath: FhirPathCriteria | None

    def fires(self, change: Change) -> bool:
        if change.resource_type != self.trigger.resource:
            return False
        if change.interaction not in self.trigger.interactions:
            return False
        query = self.trigger.query
        if query is not None and not self._query_passes(query, change):
            return False
        return self.fhirpath is None or self.fhirpath.passes(change.previous, change.current)

    def _query_passes(self, query: QueryCriteria, change: Change) -> bool:
        results: list[bool] = []
        if self.previous is not None:
            if change.previous is None:
                results.append(query.result_for_create == "test-passes")
            else:
                results.append(self.previous.matches(change.rows(current=False)))
        if self.current is not None:
            if change.current is None:
                results.append(query.result_for_delete == "test-passes")
            else:
                results.append(self.current.matches(change.rows(current=True)))
        return all(results) if query.require_both else any(results)


@dataclass(frozen=True, slots=True)
class CompiledTopic:
    topic: Topic
    triggers: tuple[CompiledTrigger, ...]

    def fires(self, change: Change) -> bool:
        """True when some resource trigger of the topic fires for ``change`` (worked out once
        per change, :attr:`Change.fired`)."""
        known = change.fired.get(id(self))
        if known is None:
            known = change.fired[id(self)] = any(t.fires(change) for t in self.triggers)
        return known


@dataclass(frozen=True, slots=True)
class CompiledSubscription:
    subscription: Subscription
    topic: CompiledTopic | None
    filters: dict[str, SearchCriteria] = field(default_factory=dict)  # by resource type
    classic: SearchCriteria | None = None

    @property
    def resource_types(self) -> frozenset[str]:
        """The types of the changes that can trigger it (others need not even be read)."""
        if self.classic is not None:
            return frozenset({self.classic.resource_type})
        if self.topic is None:
            return frozenset()
        return frozenset(t.trigger.resource for t in self.topic.triggers)

    def triggers(self, change: Change) -> bool:
        """Does ``change`` trigger this subscription (ignoring its status and end)?"""
        if self.classic is not None:
            return (
                change.interaction in CLASSIC_INTERACTIONS
                and change.resource_type == self.classic.resource_type
                and self.classic.matches(change.rows(current=True))
            )
        if self.topic is None or not self.topic.fires(change):
            return False
        wanted = self.filters.get(change.resource_type)
        return wanted is None or wanted.matches(change.rows(current=change.current is not None))


class Matcher:
    """Compiles topics and subscriptions against the server's definitions and matches changes."""

    def __init__(self, definitions: Definitions) -> None:
        self.definitions = definitions
        self._indexer = Indexer(definitions)
        self._parser = SearchParser(definitions)
        self._topics: dict[Topic, CompiledTopic] = {}

    def change(
        self, interaction: Interaction, previous: Resource | None, current: Resource | None
    ) -> Change:
        return Change(self._indexer, interaction, previous, current)

    def compile_topic(self, topic: Topic) -> CompiledTopic:
        """The topic's triggers compiled (cached per topic value); InvalidRequest naming the
        element for criteria this server cannot evaluate."""
        found = self._topics.get(topic)
        if found is None:
            triggers = tuple(
                self._trigger(t, f"SubscriptionTopic.resourceTrigger[{i}]")
                for i, t in enumerate(topic.resource_triggers)
            )
            found = self._topics[topic] = CompiledTopic(topic, triggers)
        return found

    def _trigger(self, trigger: ResourceTrigger, path: str) -> CompiledTrigger:
        if not self.definitions.is_resource_type(trigger.resource):
            raise InvalidRequest(
                f"{path}.resource: {trigger.resource!r} is not an R4 resource type",
                code="not-supported",
                expression=f"{path}.resource",
            )
        query = trigger.query
        previous = current = None
        if query is not None and query.previous is not None:
            previous = self._search(
                trigger.resource, query.previous, f"{path}.queryCriteria.previous"
            )
        if query is not None and query.current is not None:
            current = self._search(trigger.resource, query.current, f"{path}.queryCriteria.current")
        fhirpath = None
        if trigger.fhirpath is not None:
            fhirpath = compile_fhirpath(trigger.fhirpath, f"{path}.fhirPathCriteria")
        return CompiledTrigger(trigger, previous, current, fhirpath)

    def compile(self, subscription: Subscription, topic: Topic | None) -> CompiledSubscription:
        """A parsed subscription ready to match; ``topic`` is its topic (None when classic)."""
        if subscription.criteria is not None:
            resource_type = subscription.resource_type or ""
            if not self.definitions.is_resource_type(resource_type):
                raise InvalidRequest(
                    f"Subscription.criteria: {resource_type!r} is not an R4 resource type",
                    expression="Subscription.criteria",
                )
            _, _, query = subscription.criteria.partition("?")
            classic = (
                self._search(resource_type, query, "Subscription.criteria")
                if query
                else (SearchCriteria(resource_type, (), subscription.criteria))
            )
            return CompiledSubscription(subscription, None, classic=classic)
        if topic is None:
            raise ValueError("a topic-based subscription needs its topic")
        compiled = self.compile_topic(topic)
        by_type: dict[str, list[tuple[str, str]]] = {}
        for f in subscription.filters:
            by_type.setdefault(f.resource_type, []).append((f.name, f.value))
        filters = {
            resource_type: compile_pairs(
                self.definitions,
                self._parser,
                resource_type,
                pairs,
                "&".join(f"{n}={v}" for n, v in pairs),
                "Subscription.criteria.extension",
            )
            for resource_type, pairs in by_type.items()
        }
        return CompiledSubscription(subscription, compiled, filters)

    def _search(self, resource_type: str, text: str, path: str) -> SearchCriteria:
        return compile_search(self.definitions, self._parser, resource_type, text, path)
