"""``$get-ws-binding-token``: short-lived tokens that bind a websocket to subscriptions.

Backport IG, websocket channel (https://hl7.org/fhir/uv/subscriptions-backport/channels.html#websockets)
and its operation
(https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-get-ws-binding-token.html):

* ``GET|POST [base]/Subscription/[id]/$get-ws-binding-token`` and
  ``GET|POST [base]/Subscription/$get-ws-binding-token?id=...`` (several ``id``; none: every
  websocket subscription the caller may inspect) answer a Parameters resource with ``token``,
  ``expiration``, one ``subscription`` per subscription and ``websocket-url``;
* only the subscription's owner, an administrator or a system-wide backend service may ask
  (:func:`~.operations.may_inspect`; anyone else gets 404, as from ``$status``), and only for a
  live (requested or active) subscription whose channel is ``websocket`` (422 otherwise).

A token is random (``secrets.token_urlsafe``), valid for ``subscription_ws_token_seconds`` and
may bind several times until it expires. The record store keeps only its SHA-256 digest (kind
``subscription-ws-token``), so any server process can check it, with a fingerprint of each
subscription's owner secret: a subscription written since by someone else (a new owner, a new
secret) no longer binds with an older token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import FhirError, InvalidRequest, NotFound, Unprocessable
from healthbridge.fhir.terminology.parameters import Inputs
from healthbridge.infra.tokens import digest, new_secret
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import BASE_PATH, read_resource, resource_json
from healthbridge.rest.operations.registry import Operation
from healthbridge.store.records import RecordStore
from healthbridge.subscriptions.channels.websocket import is_websocket
from healthbridge.subscriptions.operations import IG, may_inspect
from healthbridge.subscriptions.owners import LIVE, Owner, Owners
from healthbridge.subscriptions.sender import instant
from healthbridge.subscriptions.subscription import parse_subscription
from healthbridge.subscriptions.topic_catalog import TopicCatalog

KIND: Final = "subscription-ws-token"
WS_PATH: Final = BASE_PATH + "/$subscription-ws"
"""Where the websocket endpoint is served (:mod:`.websocket`)."""
MAX_PER_TOKEN: Final = 100
_ID_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def websocket_url(base_url: str) -> str:
    """The endpoint's URL under the FHIR base (``http`` -> ``ws``, ``https`` -> ``wss``)."""
    base = base_url.rstrip("/")
    scheme, sep, rest = base.partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    return f"{scheme}{sep}{rest}/$subscription-ws"


def fingerprint(owner: Owner) -> str:
    """Names the owner's secret without revealing it: changes when the subscription changes
    owner (a new secret)."""
    return hashlib.sha256(b"ws-binding:" + owner.secret.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Binding:
    """What a token binds: the subscription ids with their owners' fingerprints."""

    subscriptions: dict[str, str]  # id -> fingerprint
    expires: datetime


class BindingTokens:
    """Issues and checks binding tokens (module docstring)."""

    def __init__(
        self,
        records: RecordStore,
        lifetime_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.records = records
        self.lifetime = timedelta(seconds=lifetime_s)
        self._clock = clock

    async def issue(self, owners: Sequence[Owner]) -> tuple[str, datetime]:
        token = new_secret()
        expires = self._clock() + self.lifetime
        value: dict[str, Any] = {
            "subscriptions": {o.subscription_id: fingerprint(o) for o in owners}
        }
        await self.records.put_record(KIND, digest(token), value, expires)
        return token, expires

    async def redeem(self, token: str) -> Binding | None:
        """The binding of ``token``; None when it is unknown or expired."""
        if not token or len(token) > 512:
            return None
        record = await self.records.get_record(KIND, digest(token))
        if record is None or record.expires is None or record.expires <= self._clock():
            return None
        found = record.value.get("subscriptions")
        if not isinstance(found, dict):
            return None
        return Binding({str(k): str(v) for k, v in found.items()}, record.expires)


class BindingTokenOperation:
    """The ``$get-ws-binding-token`` operation (module docstring)."""

    def __init__(
        self, catalog: TopicCatalog, owners: Owners, tokens: BindingTokens, base_url: str
    ) -> None:
        self.catalog = catalog
        self.owners = owners
        self.tokens = tokens
        self.url = websocket_url(base_url)

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "get-ws-binding-token",
                IG + "backport-subscription-get-ws-binding-token",
                frozenset({"type", "instance"}),
                frozenset({"GET", "POST"}),
                self.handle,
                frozenset({"Subscription"}),
            )
        ]

    async def handle(self, ctx: RestContext, request: Request) -> Response:
        id = request.path_params.get("id")
        ids = [id] if id else await _ids(ctx, request)
        if not ids:
            ids = await self._all(ctx)
            if not ids:
                raise NotFound(
                    "The caller has no live websocket subscription; name one with id",
                    code="not-found",
                )
        if len(ids) > MAX_PER_TOKEN:
            raise InvalidRequest(f"At most {MAX_PER_TOKEN} ids per token", expression="id")
        owners = [await self._owner(ctx, one) for one in dict.fromkeys(ids)]
        token, expires = await self.tokens.issue(owners)
        parameters = [
            {"name": "token", "valueString": token},
            {"name": "expiration", "valueDateTime": instant(expires)},
            *(
                {"name": "subscription", "valueString": f"Subscription/{o.subscription_id}"}
                for o in owners
            ),
            {"name": "websocket-url", "valueUrl": self.url},
        ]
        return resource_json({"resourceType": "Parameters", "parameter": parameters}, request)

    async def _owner(self, ctx: RestContext, id: str) -> Owner:
        """The owner of subscription ``id`` if the caller may bind it (404 / 422 otherwise)."""
        owner = await self.owners.get(id)
        if owner is None or not may_inspect(owner, ctx.service.access):
            raise NotFound(f"Subscription/{id} is not known", code="not-found")
        stored = await ctx.service.using(ctx.service.unrestricted).read("Subscription", id)
        await self.catalog.refresh()
        subscription = parse_subscription(jsonformat.loads(stored.content), self.catalog.get)
        if not is_websocket(subscription):
            raise Unprocessable(
                f"Subscription/{id} has channel type {subscription.channel_type!r}, not "
                "websocket: it cannot be bound to a websocket",
                code="business-rule",
                expression="Subscription.channel.type",
            )
        if subscription.status not in LIVE:
            raise Unprocessable(
                f"Subscription/{id} is {subscription.status}: only requested or active "
                "subscriptions can be bound",
                code="business-rule",
                expression="Subscription.status",
            )
        return owner

    async def _all(self, ctx: RestContext) -> list[str]:
        """The caller's live websocket subscriptions (at most :data:`MAX_PER_TOKEN`)."""
        access = ctx.service.access
        found = []
        for owner in await self.owners.all():
            if owner.status not in LIVE or not may_inspect(owner, access):
                continue
            try:
                stored = await ctx.service.unrestricted.read("Subscription", owner.subscription_id)
            except FhirError:
                continue  # deleted meanwhile
            channel = jsonformat.loads(stored.content).get("channel")
            if isinstance(channel, dict) and channel.get("type") == "websocket":
                found.append(owner.subscription_id)
                if len(found) == MAX_PER_TOKEN:
                    break
        return found


async def _ids(ctx: RestContext, request: Request) -> list[str]:
    """The ``id`` inputs of a type-level call (query parameters or a POSTed Parameters)."""
    if request.method == "POST" and request.headers.get("content-length") not in (None, "0"):
        inputs = Inputs.from_parameters(await read_resource(request, ctx.limits))
    else:
        inputs = Inputs.from_query(request.query_params.multi_items())
    ids = []
    for value in inputs.all("id"):
        if not isinstance(value, str):
            raise InvalidRequest("Parameter 'id': expected an id", code="value", expression="id")
        one = value.removeprefix("Subscription/")
        if not one or len(one) > 64 or not set(one) <= _ID_CHARS:
            raise InvalidRequest(
                f"Parameter 'id': {value!r} is not a Subscription id", code="value", expression="id"
            )
        ids.append(one)
    return ids
