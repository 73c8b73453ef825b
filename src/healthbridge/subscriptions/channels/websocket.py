"""The ``websocket`` channel (https://hl7.org/fhir/uv/subscriptions-backport/channels.html#websockets).

Unlike the pushed channels it has no endpoint and is not built by
:class:`~.registry.Channels`: a client asks ``$get-ws-binding-token``
(:mod:`healthbridge.subscriptions.websocket_tokens`), opens the server's websocket endpoint and
binds with the token; the connection that holds the binding pulls the subscription's queued
events (:mod:`healthbridge.subscriptions.websocket_hub`). The generic delivery worker leaves
these subscriptions alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from healthbridge.subscriptions.subscription import Subscription

CHANNEL_TYPE: Final = "websocket"


def is_websocket(subscription: Subscription) -> bool:
    """Is the subscription served over the websocket endpoint (core type, no custom system)?"""
    return subscription.channel_type == CHANNEL_TYPE and subscription.channel_type_system is None


def websocket_ids(subscriptions: Iterable[tuple[str, Subscription]]) -> list[str]:
    """The ids of the websocket subscriptions among (id, subscription) pairs."""
    return [id for id, subscription in subscriptions if is_websocket(subscription)]
