"""Subscription notification channels (rest-hook, email, message queues): the
:class:`~.base.Channel` protocol, its implementations and the :class:`~.registry.Channels`
that builds them from the settings. https://hl7.org/fhir/uv/subscriptions-backport/channels.html
"""

from __future__ import annotations

from healthbridge.subscriptions.channels.base import Channel, DeliveryResult
from healthbridge.subscriptions.channels.registry import Channels, ChannelsConfig, channels_config
from healthbridge.subscriptions.channels.signature import new_secret, sign, verify_signature

__all__ = [
    "Channel",
    "Channels",
    "ChannelsConfig",
    "DeliveryResult",
    "channels_config",
    "new_secret",
    "sign",
    "verify_signature",
]
