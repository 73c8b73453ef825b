"""Subscription writes through the FHIR API: parsed, channel-checked, capped, owned, keyed.

https://hl7.org/fhir/uv/subscriptions-backport/workflow.html (creating a subscription) and
https://hl7.org/fhir/uv/subscriptions-backport/safety_security.html (endpoints, secrets).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from healthbridge.subscriptions.owners import Owners
from tests.auth.conftest import Harness
from tests.subscriptions.api import (
    USER_SCOPES,
    bearer,
    harness,
    patient_token,
    subscription,
    token,
)
from tests.support.http_receiver import Answer, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(Answer(200))
    yield running
    running.close()


@pytest.fixture
def h(tmp_path: Path, receiver: Receiver) -> Iterator[Harness]:
    yield from harness(tmp_path, receiver, subscription_max_per_client=2)


def _secret(response_header: str, id: str) -> str:
    reference, secret = response_header.split(" ")
    assert reference == f"Subscription/{id}"
    return secret


def test_create_records_the_owner_and_returns_the_secret_once(
    h: Harness, receiver: Receiver
) -> None:
    """The creator's authorization is recorded; the secret is in the create's answer only."""
    pat = patient_token(h)
    created = h.client.post(
        "/fhir/Subscription", json=subscription(receiver.url()), headers=bearer(pat)
    )
    assert created.status_code == 201, created.text
    id = created.json()["id"]
    secret = _secret(created.headers["x-subscription-secret"], id)
    owner = h.run(Owners(h.repo.records, h.sealer).get(id))
    assert owner is not None
    assert (owner.client_id, owner.patient, owner.fhir_user) == ("app", "p1", "Practitioner/dr1")
    assert owner.subject == "doc" and "patient/*.rs" in owner.scopes
    assert owner.secret == secret and owner.status == "requested"
    assert owner.access().patient == "p1"
    assert secret not in h.client.get(f"/fhir/Subscription/{id}", headers=bearer(pat)).text
    # the same owner updating it keeps the secret and gets no header
    body = created.json() | {"reason": "changed"}
    again = h.client.put(f"/fhir/Subscription/{id}", json=body, headers=bearer(pat))
    assert again.status_code == 200, again.text
    assert "x-subscription-secret" not in again.headers
    kept = h.run(Owners(h.repo.records, h.sealer).get(id))
    assert kept is not None and kept.secret == secret
    # sealed at rest: the record holds no usable secret (a database copy cannot sign)
    stored = h.run(h.repo.records.get_record("subscription", id))
    assert stored is not None and secret not in str(stored.value)
    assert stored.value["secret"].startswith("sealed:")


def test_a_new_writer_becomes_the_owner_with_a_new_secret(h: Harness, receiver: Receiver) -> None:
    """Another user updating the subscription cannot inherit the first owner's authorization."""
    pat = patient_token(h)
    doc = token(h, "admin", USER_SCOPES)
    created = h.client.post(
        "/fhir/Subscription", json=subscription(receiver.url()), headers=bearer(pat)
    )
    id = created.json()["id"]
    first = _secret(created.headers["x-subscription-secret"], id)
    taken = h.client.put(f"/fhir/Subscription/{id}", json=created.json(), headers=bearer(doc))
    assert taken.status_code == 200, taken.text
    second = _secret(taken.headers["x-subscription-secret"], id)
    owner = h.run(Owners(h.repo.records, h.sealer).get(id))
    assert owner is not None and owner.secret == second != first
    assert owner.subject == "admin" and owner.patient is None


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:9/hook",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
        "file:///etc/passwd",
        "http://localhost:1/hook",
    ],
)
def test_endpoints_that_would_reach_inside_are_refused(h: Harness, endpoint: str) -> None:
    """SSRF: refused with an OperationOutcome on channel.endpoint, nothing stored."""
    pat = patient_token(h)
    refused = h.client.post("/fhir/Subscription", json=subscription(endpoint), headers=bearer(pat))
    assert refused.status_code in (400, 422), refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Subscription.channel.endpoint"]
    assert h.run(Owners(h.repo.records, h.sealer).all()) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"criteria": "http://example.org/no-such-topic"}, "Subscription.criteria"),
        ({"status": "bogus"}, "Subscription.status"),
        ({"_criteria": {"extension": [{"url": "x", "valueString": 1}]}}, None),
    ],
)
def test_bad_subscriptions_are_outcomes(
    h: Harness, receiver: Receiver, change: dict[str, object], where: str | None
) -> None:
    pat = patient_token(h)
    body = subscription(receiver.url()) | change
    refused = h.client.post("/fhir/Subscription", json=body, headers=bearer(pat))
    assert 400 <= refused.status_code < 500, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    if where is not None:
        assert where in refused.text


def test_filters_outside_can_filter_by_are_refused(h: Harness, receiver: Receiver) -> None:
    pat = patient_token(h)
    body = subscription(receiver.url(), filters=("Observation?value-quantity=5",))
    refused = h.client.post("/fhir/Subscription", json=body, headers=bearer(pat))
    assert refused.status_code == 400, refused.text


def test_the_per_client_cap(h: Harness, receiver: Receiver) -> None:
    """At most subscription_max_per_client live subscriptions per client (here 2); turned off
    ones do not count, deleting one frees a place."""
    pat = patient_token(h)
    ids = []
    for _ in range(2):
        made = h.client.post(
            "/fhir/Subscription", json=subscription(receiver.url()), headers=bearer(pat)
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    third = h.client.post(
        "/fhir/Subscription", json=subscription(receiver.url()), headers=bearer(pat)
    )
    assert third.status_code == 422, third.text
    assert third.json()["issue"][0]["code"] == "business-rule"
    off = h.client.post(
        "/fhir/Subscription",
        json=subscription(receiver.url(), status="off"),
        headers=bearer(pat),
    )
    assert off.status_code == 201, off.text
    assert h.client.delete(f"/fhir/Subscription/{ids[0]}", headers=bearer(pat)).status_code in (
        200,
        204,
    )
    assert h.run(Owners(h.repo.records, h.sealer).get(ids[0])) is None
    again = h.client.post(
        "/fhir/Subscription", json=subscription(receiver.url()), headers=bearer(pat)
    )
    assert again.status_code == 201, again.text


def test_transaction_entries_are_checked_too(h: Harness) -> None:
    """Every write path runs the check: a transaction with a refused endpoint is rejected."""
    doc = token(h, "doc", USER_SCOPES)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": subscription("http://169.254.169.254/"),
                "request": {"method": "POST", "url": "Subscription"},
            }
        ],
    }
    refused = h.client.post("/fhir", json=bundle, headers=bearer(doc))
    assert refused.status_code == 400, refused.text
    assert "Subscription.channel.endpoint" in refused.text


def test_patch_is_checked(h: Harness, receiver: Receiver) -> None:
    """PATCH reads the Subscription first, which only administrators and backend services may
    (security/access.py PRIVATE): an administrator's PATCH is checked like any write."""
    doc = token(h, "admin", USER_SCOPES)
    made = h.client.post(
        "/fhir/Subscription", json=subscription(receiver.url()), headers=bearer(doc)
    )
    id = made.json()["id"]
    patch = [{"op": "replace", "path": "/channel/endpoint", "value": "http://10.0.0.1/x"}]
    refused = h.client.patch(
        f"/fhir/Subscription/{id}",
        json=patch,
        headers=bearer(doc) | {"content-type": "application/json-patch+json"},
    )
    assert refused.status_code in (400, 422), refused.text
    assert "Subscription.channel.endpoint" in refused.text


@pytest.mark.parametrize(
    "channel",
    [
        {"type": "rest-hook"},
        {"type": "rest-hook", "endpoint": ""},
        {"type": "rest-hook", "endpoint": "http://x/" + "a" * 5000},
        {"type": "rest-hook", "endpoint": "not a url"},
        {"type": "rest-hook", "endpoint": "http://[::1]/x"},
        {"type": "rest-hook", "endpoint": "http://ok.example/", "header": ["X-A: b\r\nX-B: c"]},
        {"type": "rest-hook", "endpoint": "http://ok.example/", "header": ["Host: evil"]},
        {"type": "email", "endpoint": "mailto:a@example.org"},
        {"type": "message", "endpoint": "amqp://x"},
        {"type": "carrier-pigeon", "endpoint": "http://ok.example/"},
        {"type": "rest-hook", "endpoint": "http://ok.example/", "payload": 5},
    ],
)
def test_hostile_channels_are_outcomes_never_500(h: Harness, channel: dict[str, object]) -> None:
    doc = token(h, "doc", USER_SCOPES)
    body = subscription("http://unused.example/") | {"channel": channel}
    refused = h.client.post("/fhir/Subscription", json=body, headers=bearer(doc))
    assert 400 <= refused.status_code < 500, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert h.run(Owners(h.repo.records, h.sealer).all()) == []


def test_a_transaction_hands_out_each_secret(h: Harness, receiver: Receiver) -> None:
    """One X-Subscription-Secret header per subscription a transaction creates; a browser app
    may read it (CORS exposes it)."""
    doc = token(h, "doc", USER_SCOPES)
    entry = {
        "resource": subscription(receiver.url()),
        "request": {"method": "POST", "url": "Subscription"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    answer = h.client.post(
        "/fhir", json=bundle, headers=bearer(doc) | {"Origin": "https://app.example.org"}
    )
    assert answer.status_code == 200, answer.text
    ids = [e["response"]["location"].split("/")[1] for e in answer.json()["entry"]]
    given = dict(v.split(" ") for v in answer.headers.get_list("x-subscription-secret"))
    owners = Owners(h.repo.records, h.sealer)
    for id in ids:
        owner = h.run(owners.get(id))
        assert owner is not None and given[f"Subscription/{id}"] == owner.secret
    assert "X-Subscription-Secret" in answer.headers["access-control-expose-headers"]


@pytest.mark.parametrize("conditional", [True, False])
def test_one_transaction_cannot_pass_the_cap(
    tmp_path: Path, receiver: Receiver, conditional: bool
) -> None:
    """Each Subscription entry takes a place in the client's quota, so one transaction cannot
    create more than the cap (one entry beyond it fails the whole transaction). With a
    conditional entry the checks run inside the transaction's unit of work: on SQLite taking
    places there must not wait on that unit's own writer."""
    for h in harness(tmp_path, receiver, "sqlite", subscription_max_per_client=2):
        doc = token(h, "doc", USER_SCOPES)
        patient = {
            "resource": {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|1"},
        }
        entry = {
            "resource": subscription(receiver.url()),
            "request": {"method": "POST", "url": "Subscription"},
        }
        bundle = {"resourceType": "Bundle", "type": "transaction"}
        first = [patient] if conditional else []
        over = h.client.post(
            "/fhir", json=bundle | {"entry": [*first, entry, entry, entry]}, headers=bearer(doc)
        )
        assert over.status_code == 422, over.text
        assert "business-rule" in over.text
        done = h.client.post(
            "/fhir", json=bundle | {"entry": [*first, entry, entry]}, headers=bearer(doc)
        )
        assert done.status_code == 200, done.text
        assert len(h.run(Owners(h.repo.records, h.sealer).all())) == 2


SELF_SCOPES = "launch/patient openid fhirUser patient/*.rs patient/Subscription.cruds"


def test_a_patient_signing_in_subscribes_and_only_the_owner_changes_it(
    h: Harness, receiver: Receiver
) -> None:
    """A patient signing in themselves (patient/ scopes only) may subscribe: the subscription is
    theirs, confined to their own record. Nobody but its owner, an administrator or a backend
    service may change or delete a subscription: to another user it does not exist (404)."""
    pat = token(h, "pat", SELF_SCOPES)
    made = h.client.post(
        "/fhir/Subscription", json=subscription(receiver.url()), headers=bearer(pat)
    )
    assert made.status_code == 201, made.text
    id = made.json()["id"]
    owner = h.run(Owners(h.repo.records, h.sealer).get(id))
    assert owner is not None and owner.patient == "p1" and owner.access().patient == "p1"
    assert owner.fhir_user == "Patient/p1"

    doc = token(h, "doc", USER_SCOPES)  # user/*.cruds, but not the owner
    body = made.json() | {"reason": "taken over"}
    taken = h.client.put(f"/fhir/Subscription/{id}", json=body, headers=bearer(doc))
    assert taken.status_code == 404, taken.text
    gone = h.client.delete(f"/fhir/Subscription/{id}", headers=bearer(doc))
    assert gone.status_code == 404, gone.text
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"Subscription/{id}"}}],
    }
    assert h.client.post("/fhir", json=bundle, headers=bearer(doc)).status_code == 404
    kept = h.run(Owners(h.repo.records, h.sealer).get(id))
    assert kept is not None and kept.subject == "pat"

    changed = h.client.put(f"/fhir/Subscription/{id}", json=body, headers=bearer(pat))
    assert changed.status_code == 200, changed.text
    assert h.client.delete(f"/fhir/Subscription/{id}", headers=bearer(pat)).status_code in (
        200,
        204,
    )
    assert h.run(Owners(h.repo.records, h.sealer).get(id)) is None


def _conditional_transaction(endpoint: str) -> dict[str, object]:
    """A conditional create of a Patient and a new Subscription, in one transaction."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "identifier": [{"value": "tx-1"}]},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=tx-1"},
            },
            {
                "resource": subscription(endpoint),
                "request": {"method": "POST", "url": "Subscription"},
            },
        ],
    }


def test_a_conditional_transaction_checks_the_endpoint_before_it_holds_its_locks(
    h: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction with conditional entries holds its unit of work (on SQLite: the only
    writer) from the conditions to the commit; the endpoint's host is resolved before it, not
    while every other write waits. A refused endpoint still fails the whole transaction."""
    from healthbridge.rest.write_hooks import in_unit_of_work
    from healthbridge.subscriptions.channels import registry

    looked_up: list[bool] = []
    real = registry.check_url

    def recording(*args: object, **kwargs: object) -> object:
        looked_up.append(in_unit_of_work())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry, "check_url", recording)
    admin = bearer(token(h, "admin", USER_SCOPES))
    done = h.client.post("/fhir", json=_conditional_transaction(receiver.url()), headers=admin)
    assert done.status_code == 200, done.text
    assert looked_up and not any(looked_up)
    refused = h.client.post(
        "/fhir", json=_conditional_transaction("http://10.0.0.7/hook"), headers=admin
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["issue"][0]["expression"][0].startswith("Bundle.entry[1]")
    found = h.client.get("/fhir/Subscription", headers=admin).json()
    assert found.get("total", len(found.get("entry", []))) == 1  # the first one only
