"""The email channel: a short plain-text message through the operator's SMTP server
(https://hl7.org/fhir/uv/subscriptions-backport/channels.html#email, R4
https://hl7.org/fhir/R4/subscription.html#2.46.7.3; the endpoint is a ``mailto:`` URL, RFC 6068).

Email is not a safe place for health data, so the text names only the subscription, the event
numbers and, for ``id-only`` and ``full-resource`` payloads, the ids of the focus resources
(read from the notification's SubscriptionStatus,
https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription-status-r4.html).
The Bundle itself is attached (``application/fhir+json``) only for ``full-resource``
subscriptions and only when the operator enables ``HEALTHBRIDGE_SMTP_ATTACH_FULL_RESOURCE``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import unquote

import aiosmtplib

from healthbridge.subscriptions.channels.base import DeliveryResult

_SAFE_ID_TYPES = ("empty", "id-only", "full-resource")


class BadMailto(ValueError):
    """The endpoint is not a ``mailto:`` URL with exactly one address."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int = 587
    security: str = "starttls"  # starttls | ssl | none
    user: str | None = None
    password: str | None = None
    sender: str = "healthbridge@localhost"
    attach_full_resource: bool = False
    timeout_s: float = 10.0


def recipient(endpoint: str) -> str:
    """The one address of a ``mailto:`` endpoint; no extra recipients, headers or body."""
    if not endpoint.lower().startswith("mailto:"):
        raise BadMailto("an email channel's endpoint must be a mailto: URL")
    address = unquote(endpoint[len("mailto:") :])
    if any(c in address for c in "?,;<>\r\n\0 ") or address.count("@") != 1:
        raise BadMailto("an email channel's endpoint must name exactly one address")
    if parseaddr(address)[1] != address or not all(address.split("@")):
        raise BadMailto("an email channel's endpoint must name exactly one address")
    return address


def focus_references(notification: bytes) -> list[str]:
    """The ``focus`` references of each notification-event in the Bundle's status entry."""
    try:
        bundle = json.loads(notification)
        status = bundle["entry"][0]["resource"]
    except (ValueError, KeyError, IndexError, TypeError):
        return []
    found: list[str] = []
    for parameter in _list(status.get("parameter") if isinstance(status, dict) else None):
        if parameter.get("name") != "notification-event":
            continue
        for part in _list(parameter.get("part")):
            reference = part.get("valueReference")
            if part.get("name") == "focus" and isinstance(reference, dict):
                value = reference.get("reference")
                if isinstance(value, str) and len(value) < 256 and value.isprintable():
                    found.append(value)
    return found


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class EmailChannel:
    def __init__(self, config: SmtpConfig, endpoint: str, content: str) -> None:
        self._config = config
        self.to = recipient(endpoint)
        self.content = content if content in _SAFE_ID_TYPES else "empty"

    def message(
        self, notification: bytes, subscription_id: str, event_numbers: Sequence[int]
    ) -> EmailMessage:
        events = ", ".join(map(str, event_numbers)) or "none (handshake or heartbeat)"
        lines = [f"Subscription: {subscription_id}", f"Event numbers: {events}"]
        if self.content != "empty":
            lines += [f"Resource: {ref}" for ref in focus_references(notification)]
        lines += ["", "Read the details from the server with your own credentials."]
        message = EmailMessage()
        message["From"] = self._config.sender
        message["To"] = self.to
        message["Subject"] = f"HealthBridge notification for subscription {subscription_id}"
        message.set_content("\n".join(lines) + "\n")
        if self.content == "full-resource" and self._config.attach_full_resource:
            message.add_attachment(
                notification,
                maintype="application",
                subtype="fhir+json",
                filename="notification.json",
            )
        return message

    async def send(
        self,
        notification: bytes,
        content_type: str,
        *,
        subscription_id: str,
        event_numbers: Sequence[int],
        headers: Sequence[tuple[str, str]] = (),
    ) -> DeliveryResult:
        config = self._config
        try:
            await aiosmtplib.send(
                self.message(notification, subscription_id, event_numbers),
                hostname=config.host,
                port=config.port,
                username=config.user,
                password=config.password,
                use_tls=config.security == "ssl",
                start_tls=config.security == "starttls",
                timeout=config.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            return _by_code(min(codes) if codes else 550, "the recipient was refused")
        except aiosmtplib.SMTPResponseException as exc:
            return _by_code(exc.code, "the mail server refused the message")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return DeliveryResult.retry(
                f"the mail server could not be reached ({type(exc).__name__})"
            )
        return DeliveryResult.delivered()


def _by_code(code: int, text: str) -> DeliveryResult:
    """SMTP replies 5xx are permanent, 4xx transient (RFC 5321 section 4.2.1)."""
    if 500 <= code < 600:
        return DeliveryResult.give_up(f"{text} ({code})")
    return DeliveryResult.retry(f"{text} ({code})")
