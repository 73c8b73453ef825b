"""Notification shapes: the resources a notification carries besides its focus.

R5 ``SubscriptionTopic.notificationShape``
(https://hl7.org/fhir/R5/subscriptiontopic-definitions.html#SubscriptionTopic.notificationShape):
for a focus of the shape's ``resource`` type, the ``include`` and ``revInclude`` values are
``_include``/``_revinclude`` search parameters. In the Backport IG's notification Bundle those
resources are ``additional-context`` of the event
(https://hl7.org/fhir/uv/subscriptions-backport/notifications.html): references in an
``id-only`` payload, the resources themselves in a ``full-resource`` one, never in an ``empty``
one.

They are found as the FHIR search engine finds them, *as the subscription's owner may use the
repository*, so every one is checked like any API search include (a patient app never gets
another patient's resource, nor one its scopes or security labels hide): an ``include``
(``Observation:patient``, ``DiagnosticReport:result:Observation``) is resolved from the focus's
own index rows (the references of that search parameter, of the named target type) and each
target read through that repository, a point read each instead of a search per notification
(which cost a fifth of a notification's CPU time); ``revInclude`` values, and any include not of
that simple form, run as ``[focus type]?_id=<focus id>&_revinclude=...``. At most
:data:`MAX_CONTEXT` resources per event, as read now (the focus is the version that triggered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.fhir.search.values import ReferenceValue
from healthbridge.fhir.types import Resource
from healthbridge.infra.logging import get_logger
from healthbridge.store.repository import Repository
from healthbridge.subscriptions.topics import Topic

MAX_CONTEXT: Final = 50
_log = get_logger("healthbridge.subscriptions.shapes")


@dataclass(frozen=True, slots=True)
class Shape:
    """What a topic's notification shape adds for a focus type: includes read directly as
    (search parameter, target type or None), and a search for the rest (None: nothing)."""

    includes: tuple[tuple[str, str | None], ...] = ()
    search: SearchQuery | None = None


def shape_of(search: SearchParser, topic: Topic | None, focus_type: str, focus_id: str) -> Shape:
    """The shape of ``topic`` for a focus ``focus_type/focus_id`` (empty when it has none)."""
    if topic is None:
        return Shape()
    shapes = [s for s in topic.notification_shapes if s.resource == focus_type]
    direct: list[tuple[str, str | None]] = []
    searched: list[tuple[str, str]] = []
    for value in (v for s in shapes for v in s.include):
        parts = value.split(":")
        if len(parts) in (2, 3) and parts[0] == focus_type and parts[1] not in ("", "*"):
            direct.append((parts[1], parts[2] if len(parts) == 3 else None))
        else:
            searched.append(("_include", value))
    searched += [("_revinclude", value) for s in shapes for value in s.rev_include]
    query = None
    if searched:
        try:
            query = search.parse(focus_type, [("_id", focus_id), *searched, ("_count", "1")])
        except FhirError as exc:
            _log.warning("notification shape left out", topic=topic.url, error=str(exc))
    return Shape(tuple(direct), query)


async def context(
    repository: Repository, indexer: Indexer, focus: Resource, shape: Shape
) -> tuple[Resource, ...]:
    """The shape's resources for ``focus`` through ``repository`` (the owner's view): each once,
    the deleted and the forbidden left out, at most :data:`MAX_CONTEXT`."""
    if not shape.includes and shape.search is None:
        return ()
    found: dict[tuple[str, str], Resource] = {}
    if shape.includes:
        rows = indexer.lazy_rows(focus)  # only the included parameters: not all 44
        for param, target in shape.includes:
            for value in rows.get(param, []):
                if len(found) >= MAX_CONTEXT:
                    break
                if not isinstance(value, ReferenceValue) or value.target_id is None:
                    continue
                kind = value.target_type
                if kind is None or (target is not None and kind != target):
                    continue
                if (kind, value.target_id) not in found:
                    read = await _read(repository, kind, value.target_id)
                    if read is not None:
                        found[(kind, value.target_id)] = read
    if shape.search is not None and len(found) < MAX_CONTEXT:
        page = await repository.search(shape.search)
        for stored in page.included:
            if not stored.deleted and (stored.resource_type, stored.id) not in found:
                found[(stored.resource_type, stored.id)] = jsonformat.loads(stored.content)
    return tuple(found.values())[:MAX_CONTEXT]


async def _read(repository: Repository, resource_type: str, id: str) -> Resource | None:
    """The current version as ``repository`` shows it; None when gone or not for its reader."""
    try:
        stored = await repository.read(resource_type, id)
    except FhirError:  # 404, 410, or not the owner's to see: left out, as a search include
        return None
    return None if stored.deleted else jsonformat.loads(stored.content)
