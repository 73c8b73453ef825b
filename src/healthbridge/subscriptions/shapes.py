"""Notification shapes: the resources a notification carries besides its focus.

R5 ``SubscriptionTopic.notificationShape``
(https://hl7.org/fhir/R5/subscriptiontopic-definitions.html#SubscriptionTopic.notificationShape):
for a focus of the shape's ``resource`` type, the ``include`` and ``revInclude`` values are
``_include``/``_revinclude`` search parameters. In the Backport IG's notification Bundle those
resources are ``additional-context`` of the event
(https://hl7.org/fhir/uv/subscriptions-backport/notifications.html): references in an
``id-only`` payload, the resources themselves in a ``full-resource`` one, never in an ``empty``
one.

They are found with the FHIR search engine itself: ``[focus type]?_id=<focus id>&_include=...``
run through the repository *as the subscription's owner may use it*, so every include is
checked like any API search include (a patient app never gets another patient's resource, nor
one its scopes or security labels hide), and capped like one. At most :data:`MAX_CONTEXT`
resources per event, as read now (the focus is the version that triggered).
"""

from __future__ import annotations

from typing import Final

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.fhir.types import Resource
from healthbridge.infra.logging import get_logger
from healthbridge.store.repository import Repository
from healthbridge.subscriptions.topics import Topic

MAX_CONTEXT: Final = 50
_log = get_logger("healthbridge.subscriptions.shapes")


def shape_query(
    search: SearchParser, topic: Topic | None, focus_type: str, focus_id: str
) -> SearchQuery | None:
    """The search that finds the focus with its shape's resources (None: the topic's shape
    asks for none for this type, or it cannot be run here)."""
    if topic is None:
        return None
    shapes = [s for s in topic.notification_shapes if s.resource == focus_type]
    includes = [("_include", value) for s in shapes for value in s.include]
    includes += [("_revinclude", value) for s in shapes for value in s.rev_include]
    if not includes:
        return None
    try:
        return search.parse(focus_type, [("_id", focus_id), *includes, ("_count", "1")])
    except FhirError as exc:
        _log.warning("notification shape left out", topic=topic.url, error=str(exc))
        return None


async def context(repository: Repository, query: SearchQuery | None) -> tuple[Resource, ...]:
    """The shape's resources found by ``query`` through ``repository`` (the owner's view)."""
    if query is None:
        return ()
    page = await repository.search(query)
    found = [s for s in page.included if not s.deleted][:MAX_CONTEXT]
    return tuple(jsonformat.loads(s.content) for s in found)
