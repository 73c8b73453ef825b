"""Replaying a subscription's events from a number on: ``$redeliver`` and the CLI.

Event numbers are the Backport IG's events-since-subscription-start
(https://hl7.org/fhir/uv/subscriptions-backport/notifications.html#event-numbering). Once a
receiver has been fixed, an administrator replays what it missed or lost:

* ``POST [base]/Subscription/[id]/$redeliver`` with ``eventsSinceNumber`` (query parameter or a
  POSTed Parameters resource; HealthBridge's own operation, administrators and backend services
  with ``system/*.cruds`` only): answers a Parameters resource with ``redelivered`` (how many
  events are due again) and ``status``;
* ``healthbridge subscriptions redeliver <id> --from <n>`` does the same on the database directly
  (:mod:`healthbridge.cli.subscriptions`).

Every kept event numbered ``eventsSinceNumber`` or higher (delivered, pending or dead-lettered)
is made pending and due now, in number order; the delivery worker of any server process sends
them as it sends new ones, in order, signed and audited. A subscription in ``error`` goes back to
``active`` (its failure count reset): the replay is the operator saying the endpoint works again.
Events older than the delivery retention were purged and are not replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir.errors import Forbidden, InvalidRequest, NotFound, Unprocessable
from healthbridge.fhir.terminology.parameters import Inputs
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import read_resource, resource_json
from healthbridge.rest.operations.registry import Operation
from healthbridge.security.access import is_admin
from healthbridge.store.subscriptions import DeliveryQueue, SubscriptionStatus

DEFINITION: Final = "http://healthbridge.dev/fhir/OperationDefinition/subscription-redeliver"
SINCE: Final = "eventsSinceNumber"


@dataclass(frozen=True, slots=True)
class Replayed:
    subscription_id: str
    redelivered: int
    status: SubscriptionStatus
    events_since_start: int


async def replay(queue: DeliveryQueue, subscription_id: str, from_event: int) -> Replayed:
    """Make events ``from_event``.. of the subscription due again (module docstring).
    NotFound when the queue never heard of it; Unprocessable for a number it never gave out."""
    state = await queue.status(subscription_id)
    if state is None:
        raise NotFound(f"Subscription/{subscription_id} has no recorded events", code="not-found")
    if from_event < 1 or from_event > max(state.events_since_start, 1):
        raise Unprocessable(
            f"{SINCE} must be between 1 and {state.events_since_start}, the last event number "
            f"of Subscription/{subscription_id}",
            code="value",
            expression=SINCE,
        )
    count = await queue.redeliver(subscription_id, from_event)
    if state.status == "error":
        state = await queue.set_status(subscription_id, "active")
    return Replayed(subscription_id, count, state.status, state.events_since_start)


def parameters(done: Replayed) -> dict[str, object]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "subscription",
                "valueReference": {"reference": f"Subscription/{done.subscription_id}"},
            },
            {"name": "redelivered", "valueInteger": done.redelivered},
            {"name": "status", "valueCode": done.status},
            {
                "name": "eventsSinceSubscriptionStart",
                "valueInteger64": str(done.events_since_start),
            },
        ],
    }


async def redeliver(ctx: RestContext, request: Request) -> Response:
    access = ctx.service.access
    if not (access.unrestricted or is_admin(access)):
        raise Forbidden(
            "$redeliver is an administrative operation: an administrator or a backend service "
            "with system/*.cruds",
            code="forbidden",
        )
    if request.method == "POST" and request.headers.get("content-length") not in (None, "0"):
        inputs = Inputs.from_parameters(await read_resource(request, ctx.limits))
    else:
        inputs = Inputs.from_query(request.query_params.multi_items())
    since = inputs.number(SINCE)
    if since is None:
        raise InvalidRequest(
            f"Give {SINCE}: the first event number to send again", expression=SINCE
        )
    done = await replay(ctx.service.repository.subscriptions, request.path_params["id"], since)
    return resource_json(parameters(done), request)


def operation() -> Operation:
    return Operation(
        "redeliver",
        DEFINITION,
        frozenset({"instance"}),
        frozenset({"POST"}),
        redeliver,
        frozenset({"Subscription"}),
    )
