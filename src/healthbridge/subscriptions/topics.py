"""SubscriptionTopic definitions: https://hl7.org/fhir/R5/subscriptiontopic.html.

In R4 a topic travels as a ``Basic`` with the R5 cross-version extensions
(https://hl7.org/fhir/uv/subscriptions-backport/components.html#subscription-topics, profile
http://hl7.org/fhir/5.0/StructureDefinition/profile-SubscriptionTopic; read by
:mod:`healthbridge.subscriptions.topic_basic`); the topics shipped with the server are plain
SubscriptionTopic JSON. :func:`parse_topic` reads either into a frozen :class:`Topic`:

* ``resourceTrigger`` (subscriptiontopic-definitions.html#SubscriptionTopic.resourceTrigger): the
  resource type, the interactions it fires on (all three when absent), ``queryCriteria``
  (``previous``/``current`` search strings, ``resultForCreate``/``resultForDelete``,
  ``requireBoth``) and ``fhirPathCriteria``; evaluated by
  :mod:`healthbridge.subscriptions.matching`;
* ``eventTrigger``: kept (the event code and resource) but never evaluated here: something
  outside the write path (a scheduler, an operation) raises such events;
* ``canFilterBy``: the filters a Subscription may ask for (resource, ``filterParameter``, the
  allowed modifiers and comparators);
* ``notificationShape``: the ``_include``/``_revInclude`` a notification carries.

Malformed topics raise :class:`~healthbridge.fhir.errors.InvalidRequest` with the FHIRPath of
the offending SubscriptionTopic element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.types import Resource
from healthbridge.subscriptions.topic_basic import topic_json

Interaction = Literal["create", "update", "delete"]
TestResult = Literal["test-passes", "test-fails"]
INTERACTIONS: Final[tuple[Interaction, ...]] = ("create", "update", "delete")
TEST_RESULTS: Final = frozenset({"test-passes", "test-fails"})
STATUSES: Final = frozenset({"draft", "active", "retired", "unknown"})
STRUCTURE_DEFINITION: Final = "http://hl7.org/fhir/StructureDefinition/"
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")


@dataclass(frozen=True, slots=True)
class QueryCriteria:
    """subscriptiontopic-definitions.html#SubscriptionTopic.resourceTrigger.queryCriteria."""

    previous: str | None = None
    result_for_create: TestResult | None = None
    current: str | None = None
    result_for_delete: TestResult | None = None
    require_both: bool = False


@dataclass(frozen=True, slots=True)
class ResourceTrigger:
    resource: str  # a resource type name (``Encounter``)
    interactions: tuple[Interaction, ...] = INTERACTIONS
    query: QueryCriteria | None = None
    fhirpath: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """An event the topic fires on, raised outside the write path (not evaluated here)."""

    resource: str
    system: str | None
    code: str | None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class CanFilterBy:
    filter_parameter: str
    resource: str | None = None  # None: any resource type the topic triggers on
    modifiers: tuple[str, ...] = ()  # allowed modifiers and comparators (``gt``, ``not`` ...)
    description: str | None = None


@dataclass(frozen=True, slots=True)
class NotificationShape:
    resource: str
    include: tuple[str, ...] = ()
    rev_include: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Topic:
    url: str
    version: str | None = None
    title: str | None = None
    name: str | None = None
    status: str = "active"
    description: str | None = None
    resource_triggers: tuple[ResourceTrigger, ...] = ()
    event_triggers: tuple[EventTrigger, ...] = ()
    can_filter_by: tuple[CanFilterBy, ...] = ()
    notification_shapes: tuple[NotificationShape, ...] = ()
    id: str | None = None

    @property
    def canonical(self) -> str:
        """``url|version`` (or the url alone), as a Subscription's criteria may name it."""
        return f"{self.url}|{self.version}" if self.version else self.url

    @property
    def resource_types(self) -> tuple[str, ...]:
        """The resource types the topic's triggers are about, in first-seen order."""
        seen = [t.resource for t in self.resource_triggers] + [
            t.resource for t in self.event_triggers
        ]
        return tuple(dict.fromkeys(seen))


def parse_topic(resource: Resource) -> Topic:
    """A Basic-with-extensions or a SubscriptionTopic JSON resource, as a :class:`Topic`."""
    if not isinstance(resource, dict):
        raise InvalidRequest("A SubscriptionTopic must be a JSON object", code="structure")
    if resource.get("resourceType") == "Basic":
        resource = topic_json(resource)
    if resource.get("resourceType") != "SubscriptionTopic":
        raise InvalidRequest(
            "Expected a SubscriptionTopic (or a Basic carrying one), "
            f"not {resource.get('resourceType')!r}",
            expression="resourceType",
        )
    return _topic(resource)


def _topic(data: Resource) -> Topic:
    path = "SubscriptionTopic"
    url = _string(data, "url", path, required=True)
    assert url is not None
    status = _string(data, "status", path) or "active"
    if status not in STATUSES:
        raise _bad(f"{path}.status", f"unknown status {status!r}")
    triggers = tuple(
        _resource_trigger(t, f"{path}.resourceTrigger[{i}]")
        for i, t in enumerate(_objects(data, "resourceTrigger", path))
    )
    events = tuple(
        _event_trigger(t, f"{path}.eventTrigger[{i}]")
        for i, t in enumerate(_objects(data, "eventTrigger", path))
    )
    if not triggers and not events:
        raise _bad(path, "a topic needs at least one resourceTrigger or eventTrigger")
    return Topic(
        url=url,
        version=_string(data, "version", path),
        title=_string(data, "title", path),
        name=_string(data, "name", path),
        status=status,
        description=_string(data, "description", path),
        resource_triggers=triggers,
        event_triggers=events,
        can_filter_by=tuple(
            _can_filter_by(f, f"{path}.canFilterBy[{i}]")
            for i, f in enumerate(_objects(data, "canFilterBy", path))
        ),
        notification_shapes=tuple(
            _shape(s, f"{path}.notificationShape[{i}]")
            for i, s in enumerate(_objects(data, "notificationShape", path))
        ),
        id=data.get("id") if isinstance(data.get("id"), str) else None,
    )


def _resource_trigger(data: dict[str, Any], path: str) -> ResourceTrigger:
    resource = resource_type(_string(data, "resource", path, required=True), f"{path}.resource")
    codes = _strings(data, "supportedInteraction", path)
    for code in codes:
        if code not in INTERACTIONS:
            raise _bad(f"{path}.supportedInteraction", f"unknown interaction {code!r}")
    interactions = tuple(i for i in INTERACTIONS if i in codes) if codes else INTERACTIONS
    query = data.get("queryCriteria")
    fhirpath = _string(data, "fhirPathCriteria", path)
    return ResourceTrigger(
        resource=resource,
        interactions=interactions,
        query=_query(query, f"{path}.queryCriteria") if query is not None else None,
        fhirpath=fhirpath,
        description=_string(data, "description", path),
    )


def _query(data: object, path: str) -> QueryCriteria:
    if not isinstance(data, dict):
        raise _bad(path, "must be an object")
    results: list[TestResult | None] = []
    for key in ("resultForCreate", "resultForDelete"):
        value = _string(data, key, path)
        if value is not None and value not in TEST_RESULTS:
            raise _bad(f"{path}.{key}", f"must be test-passes or test-fails, not {value!r}")
        results.append(value)  # type: ignore[arg-type]
    both = data.get("requireBoth", False)
    if not isinstance(both, bool):
        raise _bad(f"{path}.requireBoth", "must be a boolean")
    previous, current = _string(data, "previous", path), _string(data, "current", path)
    if previous is None and current is None:
        raise _bad(path, "needs a previous or a current criteria")
    return QueryCriteria(previous, results[0], current, results[1], both)


def _event_trigger(data: dict[str, Any], path: str) -> EventTrigger:
    resource = resource_type(_string(data, "resource", path, required=True), f"{path}.resource")
    event = data.get("event")
    codings = event.get("coding") if isinstance(event, dict) else None
    first = codings[0] if isinstance(codings, list) and codings else {}
    if not isinstance(first, dict) or not first.get("code"):
        raise _bad(f"{path}.event", "an event trigger needs an event coding")
    return EventTrigger(
        resource, first.get("system"), first.get("code"), _string(data, "description", path)
    )


def _can_filter_by(data: dict[str, Any], path: str) -> CanFilterBy:
    parameter = _string(data, "filterParameter", path, required=True)
    assert parameter is not None
    raw = _string(data, "resource", path)
    modifiers = (*_strings(data, "modifier", path), *_strings(data, "comparator", path))
    return CanFilterBy(
        filter_parameter=parameter,
        resource=resource_type(raw, f"{path}.resource") if raw is not None else None,
        modifiers=tuple(dict.fromkeys(m.lstrip(":") for m in modifiers)),
        description=_string(data, "description", path),
    )


def _shape(data: dict[str, Any], path: str) -> NotificationShape:
    resource = resource_type(_string(data, "resource", path, required=True), f"{path}.resource")
    return NotificationShape(
        resource, tuple(_strings(data, "include", path)), tuple(_strings(data, "revInclude", path))
    )


def resource_type(value: str | None, path: str) -> str:
    """A resource type name from a type name or its core StructureDefinition URL."""
    name = (value or "").removeprefix(STRUCTURE_DEFINITION)
    if not _TYPE_NAME.fullmatch(name):
        raise _bad(path, f"{value!r} is not a resource type (nor {STRUCTURE_DEFINITION}<type>)")
    return name


# -- JSON helpers ---------------------------------------------------------------------------
def _bad(path: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {text}", expression=path)


def _string(data: dict[str, Any], key: str, path: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise InvalidRequest(
                f"{path}.{key} is required", code="required", expression=f"{path}.{key}"
            )
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{path}.{key}", "must be a non-empty string")
    return value


def _strings(data: dict[str, Any], key: str, path: str) -> list[str]:
    value = data.get(key)
    values = value if isinstance(value, list) else [] if value is None else [value]
    for i, item in enumerate(values):
        if not isinstance(item, str) or not item:
            raise _bad(f"{path}.{key}[{i}]", "must be a non-empty string")
    return values


def _objects(data: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
    value = data.get(key)
    values = value if isinstance(value, list) else [] if value is None else [value]
    for i, item in enumerate(values):
        if not isinstance(item, dict):
            raise _bad(f"{path}.{key}[{i}]", "must be an object")
    return values
