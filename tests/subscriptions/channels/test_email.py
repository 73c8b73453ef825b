"""The email channel against a real SMTP server (aiosmtpd) on loopback: a short plain-text
message with ids and event numbers only, the Bundle attached only for full-resource payloads
when the operator allows it; SMTP 5xx is permanent, 4xx and an unreachable server are retried.
https://hl7.org/fhir/uv/subscriptions-backport/channels.html#email
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from healthbridge.subscriptions.channels.email import (
    BadMailto,
    EmailChannel,
    SmtpConfig,
    recipient,
)

PATIENT_NAME = "Chalmers"
NOTIFICATION = json.dumps(
    {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {
                "resource": {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "type", "valueCode": "event-notification"},
                        {
                            "name": "notification-event",
                            "part": [
                                {"name": "event-number", "valueString": "3"},
                                {"name": "focus", "valueReference": {"reference": "Patient/p1"}},
                            ],
                        },
                    ],
                }
            },
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "name": [{"family": PATIENT_NAME}],
                }
            },
        ],
    }
).encode()


class Inbox:
    def __init__(self, refuse: int | None = None) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refuse = refuse

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse:
            return f"{self.refuse} mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=default))
        )  # type: ignore[arg-type])
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, SmtpConfig]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    config = SmtpConfig(host="127.0.0.1", port=controller.port, security="none", timeout_s=5)
    yield inbox, config
    controller.stop()


async def _send(channel: EmailChannel) -> Any:
    return await channel.send(
        NOTIFICATION, "application/fhir+json", subscription_id="sub-9", event_numbers=[3]
    )


@pytest.mark.parametrize("content", ["empty", "id-only", "full-resource"])
async def test_the_text_carries_ids_and_event_numbers_only(
    smtp: tuple[Inbox, SmtpConfig], content: str
) -> None:
    inbox, config = smtp
    result = await _send(EmailChannel(config, "mailto:nurse@example.org", content))
    assert result.ok
    [(to, message)] = inbox.messages
    assert to == ["nurse@example.org"]
    assert message["Subject"] == "HealthBridge notification for subscription sub-9"
    assert not message.is_multipart()
    text = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "sub-9" in text and "Event numbers: 3" in text
    assert PATIENT_NAME not in text
    assert ("Patient/p1" in text) is (content != "empty")


async def test_the_bundle_is_attached_only_when_the_operator_allows_it(
    smtp: tuple[Inbox, SmtpConfig],
) -> None:
    inbox, config = smtp
    allowed = replace(config, attach_full_resource=True)
    assert (await _send(EmailChannel(allowed, "mailto:nurse@example.org", "full-resource"))).ok
    assert (await _send(EmailChannel(allowed, "mailto:nurse@example.org", "id-only"))).ok
    full, ids_only = (message for _, message in inbox.messages)
    assert full.is_multipart() and not ids_only.is_multipart()
    [attachment] = list(full.iter_attachments())
    assert attachment.get_content_type() == "application/fhir+json"
    assert attachment.get_payload(decode=True) == NOTIFICATION


@pytest.mark.parametrize(("code", "permanent"), [(550, True), (450, False)])
async def test_refused_recipients(code: int, permanent: bool) -> None:
    controller = Controller(Inbox(refuse=code), hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        config = SmtpConfig(host="127.0.0.1", port=controller.port, security="none", timeout_s=5)
        result = await _send(EmailChannel(config, "mailto:nobody@example.org", "empty"))
    finally:
        controller.stop()
    assert not result.ok and result.permanent is permanent
    assert str(code) in result.error


async def test_an_unreachable_server_is_retried() -> None:
    config = SmtpConfig(host="127.0.0.1", port=_free_port(), security="none", timeout_s=2)
    result = await _send(EmailChannel(config, "mailto:nurse@example.org", "empty"))
    assert not result.ok and not result.permanent


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://example.org/",
        "mailto:a@example.org,b@example.org",
        "mailto:a@example.org?cc=b@example.org",
        "mailto:a@example.org%0d%0aBcc:%20b@example.org",
        "mailto:",
        "mailto:no-at-sign",
        "mailto:@example.org",
    ],
)
def test_bad_mailto_endpoints(endpoint: str) -> None:
    with pytest.raises(BadMailto):
        recipient(endpoint)
