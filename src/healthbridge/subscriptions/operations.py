"""``$status`` and ``$events`` of the Subscriptions Backport IG.

* ``GET [base]/Subscription/[id]/$status`` and ``GET [base]/Subscription/$status[?id=...]``:
  https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-status.html
  -- a ``searchset`` Bundle of SubscriptionStatus Parameters (type ``query-status``);
* ``GET [base]/Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=``:
  https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-events.html
  -- a ``history`` Bundle of type ``query-event`` with the recorded events still kept.

Both answer only the subscription's owner (the client, user and launch patient that last wrote
it), an
administrator or a system-wide backend service, and read the Subscription itself through the
caller's access; a full-resource ``$events`` reads each focus as the caller may (one it may not
read is listed by reference only).
"""

from __future__ import annotations

import uuid
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError, InvalidRequest, NotFound
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import resource_json
from healthbridge.rest.operations.registry import Operation
from healthbridge.security.access import is_admin
from healthbridge.security.context import AccessContext
from healthbridge.store.subscriptions import LAST_EVENT, Delivery
from healthbridge.subscriptions.notifications import (
    Event,
    StatusInfo,
    notification_bundle,
    status_bundle,
    status_parameters,
)
from healthbridge.subscriptions.owners import Owner, Owners
from healthbridge.subscriptions.sender import instant
from healthbridge.subscriptions.subscription import CONTENTS, Subscription, parse_subscription
from healthbridge.subscriptions.topic_catalog import TopicCatalog

IG: Final = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
MAX_STATUSES = 100
MAX_EVENTS = 100


def may_inspect(owner: Owner | None, access: AccessContext) -> bool:
    if access.unrestricted or is_admin(access) or "system" in access.scopes.contexts:
        return True
    return owner is not None and owner.held_by(access)


class SubscriptionOperations:
    def __init__(self, catalog: TopicCatalog, owners: Owners, base_url: str) -> None:
        self.catalog = catalog
        self.owners = owners
        self.base = base_url.rstrip("/")

    def operations(self) -> list[Operation]:
        subscription = frozenset({"Subscription"})
        return [
            Operation(
                "status",
                IG + "backport-subscription-status",
                frozenset({"type", "instance"}),
                frozenset({"GET", "POST"}),
                self.status,
                subscription,
            ),
            Operation(
                "events",
                IG + "backport-subscription-events",
                frozenset({"instance"}),
                frozenset({"GET", "POST"}),
                self.events,
                subscription,
            ),
        ]

    async def _subscription(self, ctx: RestContext, id: str) -> Subscription:
        """The Subscription, if the caller may inspect it (its owner, an administrator or a
        backend service); 404 otherwise, as for one that does not exist. Read past the access
        policy, which keeps Subscriptions from everyone else (security/access.py PRIVATE)."""
        if not may_inspect(await self.owners.get(id), ctx.service.access):
            raise NotFound(f"Subscription/{id} is not known", code="not-found")
        stored = await ctx.service.using(ctx.service.unrestricted).read("Subscription", id)
        await self.catalog.refresh()
        return parse_subscription(jsonformat.loads(stored.content), self.catalog.get)

    async def _status(self, ctx: RestContext, id: str) -> dict[str, object]:
        subscription = await self._subscription(ctx, id)
        state = await ctx.service.repository.subscriptions.status(id)
        errors = ({"text": state.error},) if state is not None and state.error else ()
        info = StatusInfo(
            "query-status",
            state.status if state is not None else subscription.status,
            state.events_since_start if state is not None else 0,
            errors,
        )
        return status_parameters(
            subscription, info, [], base=self.base, status_id=str(uuid.uuid4())
        )

    async def status(self, ctx: RestContext, request: Request) -> Response:
        id = request.path_params.get("id")
        ids = [id] if id else _ids(request)
        if not ids:
            page = await ctx.service.unrestricted.search(
                ctx.search.parse("Subscription", [("_count", str(MAX_STATUSES))])
            )
            owners = {o.subscription_id: o for o in await self.owners.all()}
            access = ctx.service.access
            ids = [s.id for s in page.matches if may_inspect(owners.get(s.id), access)]
        statuses = [await self._status(ctx, one) for one in ids[:MAX_STATUSES]]
        bundle = status_bundle(statuses, bundle_id=str(uuid.uuid4()), timestamp=instant())
        return resource_json(bundle, request)

    async def events(self, ctx: RestContext, request: Request) -> Response:
        id = request.path_params["id"]
        since = _number(request, "eventsSinceNumber", 1)
        until = _number(request, "eventsUntilNumber", LAST_EVENT)
        content = request.query_params.get("content")
        if content is not None and content not in CONTENTS:
            raise InvalidRequest(
                f"content must be one of {', '.join(sorted(CONTENTS))}", expression="content"
            )
        subscription = await self._subscription(ctx, id)
        chosen = content or subscription.content
        queue = ctx.service.repository.subscriptions
        kept = await queue.events(id, since, until, MAX_EVENTS)
        events = [await _event(ctx, d, chosen == "full-resource") for d in kept]
        state = await queue.status(id)
        info = StatusInfo(
            "query-event",
            state.status if state is not None else subscription.status,
            state.events_since_start if state is not None else 0,
        )
        bundle = notification_bundle(
            subscription,
            info,
            events,
            base=self.base,
            bundle_id=str(uuid.uuid4()),
            status_id=str(uuid.uuid4()),
            timestamp=instant(),
            content=chosen,  # type: ignore[arg-type]
        )
        return resource_json(bundle, request)


async def _event(ctx: RestContext, delivery: Delivery, full: bool) -> Event:
    recorded = delivery.event
    focus = {"resourceType": recorded.focus_type, "id": recorded.focus_id}
    interaction = recorded.extra.get("interaction", "update")
    if full and interaction != "delete":
        try:
            stored = await ctx.service.vread(
                recorded.focus_type, recorded.focus_id, str(recorded.focus_version)
            )
            focus = jsonformat.loads(stored.content)
        except FhirError:
            pass  # the caller may not read it (now): by reference only
    return Event(recorded.number, instant(recorded.recorded), interaction, focus)


def _ids(request: Request) -> list[str]:
    return [i.removeprefix("Subscription/") for i in request.query_params.getlist("id") if i]


def _number(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 18:
        raise InvalidRequest(f"{name} must be a positive integer", code="value", expression=name)
    return int(value)
