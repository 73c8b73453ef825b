"""R4 Subscription resources, topic-based and classic: https://hl7.org/fhir/R4/subscription.html.

Topic-based subscriptions follow the Backport IG profile
(https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription.html):
``criteria`` is the topic's canonical URL, each ``_criteria`` extension ``backport-filter-criteria``
a search-style filter (``Encounter?patient=Patient/123``; several filters are ANDed), the
channel type ``rest-hook | websocket | email | message`` (``sms`` too, as R4 allows it) in
``channel.type`` or a custom type in the ``backport-channel-type`` extension, and the channel
extensions ``backport-heartbeat-period``, ``backport-timeout``, ``backport-max-count``;
``channel.payload`` is the MIME type and its ``backport-payload-content`` extension says how much
goes into a notification (``empty | id-only | full-resource``).

Classic subscriptions carry a search in ``criteria`` (``Observation?code=http://loinc.org|1234-5``);
their content follows R4: no ``payload`` means an empty notification, a payload the resource.

:func:`parse_subscription` checks the resource and each filter against the topic's
``canFilterBy`` (parameter, resource type, modifiers and comparators) and raises
:class:`~healthbridge.fhir.errors.InvalidRequest` naming what is wrong. Whether the filter values
parse for their search parameters is checked when the matcher compiles the subscription
(:meth:`healthbridge.subscriptions.matching.Matcher.compile`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from healthbridge.fhir.datetimes import parse_instant
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.types import Resource
from healthbridge.subscriptions.topics import Topic

Content = Literal["empty", "id-only", "full-resource"]
BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
PROFILE: Final = BACKPORT + "backport-subscription"
FILTER_CRITERIA: Final = BACKPORT + "backport-filter-criteria"
CHANNEL_TYPE: Final = BACKPORT + "backport-channel-type"
PAYLOAD_CONTENT: Final = BACKPORT + "backport-payload-content"
HEARTBEAT_PERIOD: Final = BACKPORT + "backport-heartbeat-period"
TIMEOUT: Final = BACKPORT + "backport-timeout"
MAX_COUNT: Final = BACKPORT + "backport-max-count"

STATUSES: Final = frozenset({"requested", "active", "error", "off"})
CHANNEL_TYPES: Final = frozenset({"rest-hook", "websocket", "email", "sms", "message"})
CONTENTS: Final = frozenset({"empty", "id-only", "full-resource"})
JSON_MIME: Final = frozenset({"application/fhir+json", "application/json", "json"})
COMPARATORS: Final = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
_PREFIXED = re.compile(r"(eq|ne|gt|lt|ge|le|sa|eb|ap)[-+0-9]")
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")

TopicLookup = Callable[[str], Topic | None]


@dataclass(frozen=True, slots=True)
class Filter:
    """One parameter of a filter-criteria string, e.g. ``Encounter?patient=Patient/123``."""

    resource_type: str
    parameter: str  # the search parameter code, without modifier
    modifier: str | None
    value: str  # as written (commas OR values)

    @property
    def name(self) -> str:
        return f"{self.parameter}:{self.modifier}" if self.modifier else self.parameter


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str | None
    status: str
    topic: str | None  # the topic canonical (``url`` or ``url|version``) when topic-based
    criteria: str | None  # the classic search criteria when not topic-based
    filters: tuple[Filter, ...]
    channel_type: str  # rest-hook | websocket | email | sms | message | a custom code
    channel_type_system: str | None  # the custom channel type's system, if any
    endpoint: str | None
    headers: tuple[tuple[str, str], ...]
    payload: str | None  # the MIME type
    content: Content
    heartbeat_period: int | None = None  # seconds
    timeout: int | None = None  # seconds
    max_count: int | None = None
    end: str | None = None

    @property
    def topic_based(self) -> bool:
        return self.topic is not None

    @property
    def resource_type(self) -> str | None:
        """The resource type of a classic subscription's criteria."""
        return None if self.criteria is None else self.criteria.partition("?")[0]


def parse_subscription(resource: Resource, topics: TopicLookup) -> Subscription:
    """Read an R4 Subscription; ``topics`` resolves a topic canonical to its :class:`Topic`."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Subscription":
        raise InvalidRequest("Expected a Subscription resource", expression="resourceType")
    status = resource.get("status")
    if status not in STATUSES:
        raise _bad("Subscription.status", f"must be one of {', '.join(sorted(STATUSES))}")
    criteria, channel = _required(resource, "criteria", str), _required(resource, "channel", dict)
    raw_filters = _filter_strings(resource)
    topic = _topic(criteria, raw_filters, topics)
    channel_type, system = _channel_type(channel)
    payload = _payload(channel)
    return Subscription(
        id=resource.get("id") if isinstance(resource.get("id"), str) else None,
        status=status,
        topic=criteria if topic is not None else None,
        criteria=None if topic is not None else criteria,
        filters=_filters(raw_filters, topic) if topic is not None else (),
        channel_type=channel_type,
        channel_type_system=system,
        endpoint=_endpoint(channel, channel_type),
        headers=_headers(channel),
        payload=payload,
        content=_content(channel, payload, topic is not None),
        heartbeat_period=_count(channel, HEARTBEAT_PERIOD, "heartbeat-period", minimum=0),
        timeout=_count(channel, TIMEOUT, "timeout", minimum=0),
        max_count=_count(channel, MAX_COUNT, "max-count", minimum=1),
        end=_end(resource.get("end")),
    )


def _required(resource: Resource, key: str, kind: type) -> Any:
    value = resource.get(key)
    if not isinstance(value, kind) or not value:
        raise InvalidRequest(
            f"Subscription.{key} is required", code="required", expression=f"Subscription.{key}"
        )
    return value


def _topic(criteria: str, raw_filters: list[str], topics: TopicLookup) -> Topic | None:
    """The topic of a topic-based subscription (criteria a canonical URL, or filters given);
    None for classic criteria, which are checked here."""
    if not _SCHEME.match(criteria) and not raw_filters:
        _check_classic(criteria)
        return None
    topic = topics(criteria)
    if topic is None:
        raise InvalidRequest(
            f"Subscription.criteria: unknown SubscriptionTopic {criteria!r}",
            code="not-supported",
            expression="Subscription.criteria",
        )
    return topic


# -- criteria and filters --------------------------------------------------------------------
def _filter_strings(resource: Resource) -> list[str]:
    element = resource.get("_criteria")
    found: list[str] = []
    for ext in _extensions(element):
        if ext.get("url") == FILTER_CRITERIA:
            value = ext.get("valueString")
            if not isinstance(value, str) or not value.strip():
                raise _bad(
                    f"Subscription.criteria.extension[{len(found)}]",
                    "a backport-filter-criteria needs a valueString",
                )
            found.append(value)
    return found


def _check_classic(criteria: str) -> None:
    resource_type = criteria.partition("?")[0]
    if not _TYPE_NAME.fullmatch(resource_type):
        raise _bad(
            "Subscription.criteria",
            f"{criteria!r} is neither a topic canonical URL nor a search such as "
            "'Observation?code=http://loinc.org|1234-5'",
        )


def _filters(raw: list[str], topic: Topic) -> tuple[Filter, ...]:
    out: list[Filter] = []
    for i, text in enumerate(raw):
        path = f"Subscription.criteria.extension[{i}]"
        head, question, query = text.partition("?")
        if not question:
            head, query = _default_type(topic, path), text
        if head not in topic.resource_types:
            raise _bad(path, f"the topic {topic.url} has no trigger for {head!r} ({text!r})")
        pairs = parse_qsl(query, keep_blank_values=True)
        if not pairs:
            raise _bad(path, f"{text!r} has no filter parameter")
        for name, value in pairs:
            parameter, _, modifier = name.partition(":")
            found = Filter(head, parameter, modifier or None, value)
            _allowed(found, topic, path)
            out.append(found)
    return tuple(out)


def _default_type(topic: Topic, path: str) -> str:
    if len(topic.resource_types) == 1:
        return topic.resource_types[0]
    raise _bad(path, "name the resource type of the filter, e.g. 'Encounter?patient=Patient/1'")


def _allowed(found: Filter, topic: Topic, path: str) -> None:
    """The filter must be one the topic's ``canFilterBy`` offers, with a modifier and
    comparator it lists."""
    offers = [
        c
        for c in topic.can_filter_by
        if c.filter_parameter == found.parameter and c.resource in (None, found.resource_type)
    ]
    if not offers:
        known = ", ".join(sorted({c.filter_parameter for c in topic.can_filter_by})) or "none"
        raise _bad(
            path,
            f"the topic {topic.url} cannot filter {found.resource_type} by "
            f"{found.parameter!r} (canFilterBy: {known})",
        )
    allowed = {m for c in offers for m in c.modifiers}
    if found.modifier is not None and found.modifier not in allowed:
        raise _bad(path, f"the topic does not allow the modifier :{found.modifier} on {found.name}")
    for value in found.value.split(","):
        match = _PREFIXED.match(value)
        if match and match.group(1) != "eq" and match.group(1) not in allowed:
            raise _bad(
                path, f"the topic does not allow the comparator {match.group(1)} on {found.name}"
            )


# -- channel ---------------------------------------------------------------------------------
def _channel_type(channel: dict[str, Any]) -> tuple[str, str | None]:
    for ext in _extensions(channel.get("_type")):
        if ext.get("url") == CHANNEL_TYPE:
            coding = ext.get("valueCoding")
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                raise _bad("Subscription.channel.type.extension", "needs a valueCoding with a code")
            system = coding.get("system")
            return coding["code"], system if isinstance(system, str) else None
    code = channel.get("type")
    if code not in CHANNEL_TYPES:
        raise _bad(
            "Subscription.channel.type",
            f"{code!r} is not one of {', '.join(sorted(CHANNEL_TYPES))} (use the "
            "backport-channel-type extension for other channels)",
        )
    return code, None


def _endpoint(channel: dict[str, Any], channel_type: str) -> str | None:
    endpoint = channel.get("endpoint")
    if endpoint is None:
        if channel_type in ("rest-hook", "email", "message"):
            raise InvalidRequest(
                f"Subscription.channel.endpoint is required for {channel_type} channels",
                code="required",
                expression="Subscription.channel.endpoint",
            )
        return None
    if not isinstance(endpoint, str) or not _SCHEME.match(endpoint):
        raise _bad("Subscription.channel.endpoint", "must be an absolute URL")
    if channel_type == "rest-hook" and not endpoint.lower().startswith(("http://", "https://")):
        raise _bad("Subscription.channel.endpoint", "a rest-hook endpoint is an http(s) URL")
    return endpoint


def _headers(channel: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = channel.get("header")
    values = raw if isinstance(raw, list) else [] if raw is None else [raw]
    out: list[tuple[str, str]] = []
    for i, header in enumerate(values):
        path = f"Subscription.channel.header[{i}]"
        if not isinstance(header, str) or "\r" in header or "\n" in header:
            raise _bad(path, "must be a single-line 'Name: value' string")
        name, colon, value = header.partition(":")
        if not colon or not _HEADER_NAME.fullmatch(name.strip()):
            raise _bad(path, f"{header!r} is not an HTTP header 'Name: value'")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def _payload(channel: dict[str, Any]) -> str | None:
    payload = channel.get("payload")
    if payload is None:
        return None
    if not isinstance(payload, str):
        raise _bad("Subscription.channel.payload", "must be a MIME type")
    if payload.split(";")[0].strip().lower() not in JSON_MIME:
        raise InvalidRequest(
            f"Subscription.channel.payload: {payload!r} is not supported; this server sends "
            "application/fhir+json",
            code="not-supported",
            expression="Subscription.channel.payload",
        )
    return payload


def _content(channel: dict[str, Any], payload: str | None, topic_based: bool) -> Content:
    for ext in _extensions(channel.get("_payload")):
        if ext.get("url") == PAYLOAD_CONTENT:
            code = ext.get("valueCode")
            if code not in CONTENTS:
                raise _bad(
                    "Subscription.channel.payload.extension",
                    f"payload content must be empty, id-only or full-resource, not {code!r}",
                )
            return code  # type: ignore[no-any-return]
    if payload is None:
        return "empty"
    return "id-only" if topic_based else "full-resource"


def _count(channel: dict[str, Any], url: str, label: str, minimum: int) -> int | None:
    for ext in _extensions(channel):
        if ext.get("url") == url:
            value = ext.get("valuePositiveInt", ext.get("valueUnsignedInt"))
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise _bad(
                    "Subscription.channel.extension", f"{label} must be an integer >= {minimum}"
                )
            return value
    return None


def _end(value: object) -> str | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        parse_instant(value)
    except ValueError:
        raise _bad("Subscription.end", f"{value!r} is not an instant") from None
    return value


def _extensions(element: object) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        return []
    raw = element.get("extension")
    return [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []


def _bad(path: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {text}", expression=path)
