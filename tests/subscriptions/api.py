"""Shared pieces of the subscription API tests: a running app with its authorization server and
a real loopback receiver allow-listed for outbound requests, plus resource builders.

Subscriptions Backport IG: https://hl7.org/fhir/uv/subscriptions-backport/
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from healthbridge.subscriptions.subscription import FILTER_CRITERIA, PAYLOAD_CONTENT, PROFILE
from tests.auth.conftest import Harness, make_harness
from tests.support.databases import PostgresDatabase
from tests.support.http_receiver import Answer, Received, Receiver

LAB_TOPIC = "http://healthbridge.dev/fhir/SubscriptionTopic/lab-result-available"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category"
PATIENT_SCOPES = "launch/patient openid fhirUser patient/*.rs user/Subscription.cruds"
"""A patient-context app (SMART launch/patient) launched by a practitioner who picks the
patient, that may manage subscriptions (user/Subscription.cruds); its reads stay confined to that
patient. (A patient signing in themselves uses patient/Subscription scopes instead.)"""
USER_SCOPES = "openid fhirUser user/*.cruds"


def harness(
    tmp_path: Path,
    receiver: Receiver,
    kind: str = "memory",
    postgres: PostgresDatabase | None = None,
    **overrides: Any,
) -> Generator[Harness]:
    hosts = [receiver.host]
    yield from make_harness(kind, tmp_path, postgres, outbound_allowed_hosts=hosts, **overrides)


def subscription(
    endpoint: str,
    *,
    topic: str = LAB_TOPIC,
    filters: tuple[str, ...] = (),
    content: str = "full-resource",
    status: str = "requested",
) -> dict[str, Any]:
    extensions = [{"url": FILTER_CRITERIA, "valueString": f} for f in filters]
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [PROFILE]},
        "status": status,
        "reason": "test",
        "criteria": topic,
        **({"_criteria": {"extension": extensions}} if extensions else {}),
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]},
        },
    }


def observation(patient: str, value: float = 1.0, status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": status,
        "category": [{"coding": [{"system": LAB, "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": value, "unit": "mg/dL"},
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(h: Harness, username: str, scope: str) -> str:
    """An access token of the public app for ``username`` with ``scope``."""
    return str(h.tokens(username, scope=scope)["access_token"])


def patient_token(h: Harness, patient: str = "p1") -> str:
    """A token of the public app launched (by ``doc``) for ``patient`` with PATIENT_SCOPES."""
    params = h.authorize_params(scope=PATIENT_SCOPES)
    answer = h.exchange(params, h.code_for(params, "doc", patient=patient))
    assert answer.status_code == 200, answer.text
    assert answer.json()["patient"] == patient
    return str(answer.json()["access_token"])


class Inbox:
    """A loopback receiver that notes when each notification arrived and answers with the
    scripted statuses in turn (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.statuses = list(statuses)
        self.arrivals: list[tuple[float, Received]] = []
        self.receiver = Receiver(self._answer)

    def _answer(self, got: Received) -> Answer:
        self.arrivals.append((time.monotonic(), got))
        return Answer(self.statuses.pop(0) if self.statuses else 200)

    def notifications(self) -> list[dict[str, Any]]:
        return [json.loads(got.body) for _, got in self.arrivals]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The first ``count`` notifications, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count and time.monotonic() < deadline:
            time.sleep(0.002)
        assert len(self.arrivals) >= count, f"got {len(self.arrivals)} of {count} notifications"
        return self.notifications()[:count]

    def close(self) -> None:
        self.receiver.close()


def status_of(notification: dict[str, Any]) -> dict[str, Any]:
    """The SubscriptionStatus parameters of a notification Bundle, by name (events listed)."""
    status = notification["entry"][0]["resource"]
    found: dict[str, Any] = {"events": []}
    for p in status["parameter"]:
        if p["name"] == "notification-event":
            found["events"].append({part["name"]: part for part in p["part"]})
        else:
            found[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return found
