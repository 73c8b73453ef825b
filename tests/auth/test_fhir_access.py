"""The FHIR API under real tokens from the authorization server (SECURITY.md "Object- and
field-level authorization" and "Audit"): what a patient token, a read-only token, a clinician,
an administrator and an auditor may do, over HTTP."""

from __future__ import annotations

import time
from typing import Any

from tests.auth.conftest import Harness

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
}


def _obs(patient: str, **extra: Any) -> dict[str, Any]:
    return {**OBSERVATION, "subject": {"reference": f"Patient/{patient}"}, **extra}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PATIENT_SCOPES = "launch/patient openid fhirUser patient/*.cruds"


def _patient_token(auth: Harness, scope: str = PATIENT_SCOPES) -> str:
    return str(auth.tokens("pat", scope=scope)["access_token"])


def test_no_token_is_exactly_401_with_a_bearer_challenge(auth: Harness) -> None:
    answer = auth.client.get("/fhir/Patient/p1")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert auth.client.get("/fhir/metadata").status_code == 200  # public


def test_a_patient_token_sees_its_own_record_and_404_for_anothers(auth: Harness) -> None:
    token = _patient_token(auth)
    assert auth.fhir("Patient/p1", token).status_code == 200
    other = auth.fhir("Patient/p2", token)
    missing = auth.fhir("Patient/nobody", token)
    assert other.status_code == missing.status_code == 404
    assert other.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]
    for path in ("Patient/p2/_history", "Patient/p2/_history/1", "Patient?_id=p2"):
        answer = auth.fhir(path, token)
        assert answer.status_code in (200, 404), answer.text
        if answer.status_code == 200:  # a search: empty, not an error that leaks
            assert answer.json().get("total", 0) == 0 and not answer.json().get("entry")
    created = auth.client.post("/fhir/Observation", json=_obs("p1"), headers=_bearer(token))
    assert created.status_code == 201, created.text
    bundle = auth.fhir("Observation?_include=Observation:subject", token).json()
    seen = {e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in bundle["entry"]}
    assert "Patient/p1" in seen and "Patient/p2" not in seen


def test_writes_to_another_patient_and_transactions_with_one_are_refused(
    auth: Harness,
) -> None:
    token = _patient_token(auth)
    refused = auth.client.post("/fhir/Observation", json=_obs("p2"), headers=_bearer(token))
    assert refused.status_code == 403
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _obs("p1"), "request": {"method": "POST", "url": "Observation"}},
            {"resource": _obs("p2"), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    answer = auth.client.post("/fhir", json=transaction, headers=_bearer(token))
    assert answer.status_code == 403, answer.text
    everything = auth.fhir("Observation", _patient_token(auth)).json()
    assert not everything.get("entry")  # the p1 entry was not written either


def test_read_only_scopes_cannot_write_and_method_overrides_do_not_bypass(
    auth: Harness,
) -> None:
    token = _patient_token(auth, "launch/patient patient/*.read")
    headers = _bearer(token)
    assert (
        auth.client.post("/fhir/Observation", json=_obs("p1"), headers=headers).status_code == 403
    )
    overridden = auth.client.get(
        "/fhir/Patient/p1", headers={**headers, "X-HTTP-Method-Override": "DELETE"}
    )
    assert overridden.status_code == 200
    assert auth.client.get("/fhir/Patient/p1?_method=DELETE", headers=headers).status_code == 200
    assert auth.fhir("Patient/p1", token).status_code == 200  # still there


def test_patient_and_user_tokens_cannot_run_system_operations(auth: Harness) -> None:
    for token in (
        _patient_token(auth),
        auth.tokens("doc", scope="openid fhirUser user/*.cruds")["access_token"],
    ):
        answer = auth.client.post(
            "/fhir/$reindex", json={"resourceType": "Parameters"}, headers=_bearer(token)
        )
        assert answer.status_code == 403, answer.text
        assert auth.fhir("AuditEvent", token).status_code == 403
        sp = {
            "resourceType": "SearchParameter",
            "url": "http://x/sp",
            "name": "x",
            "status": "active",
            "description": "x",
            "code": "x",
            "base": ["Patient"],
            "type": "token",
            "expression": "Patient.gender",
        }
        assert (
            auth.client.post("/fhir/SearchParameter", json=sp, headers=_bearer(token)).status_code
            == 403
        )


def test_every_request_is_audited_and_only_auditors_read_the_trail(auth: Harness) -> None:
    token = _patient_token(auth)
    claims = auth.claims(token)
    assert auth.fhir("Patient/p1", token).status_code == 200
    assert auth.fhir("Patient/p2", token).status_code == 404
    assert auth.client.get("/fhir/Patient/p1").status_code == 401
    auth.user("aud", None, "auditor")
    auditor = auth.tokens("aud", scope="openid user/AuditEvent.rs")["access_token"]
    deadline = time.monotonic() + 10
    while True:
        answer = auth.fhir("AuditEvent?patient=p1&subtype=read&_count=100", auditor)
        assert answer.status_code == 200, answer.text
        events = [e["resource"] for e in answer.json().get("entry", [])]
        if events or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert events, "the patient's read was not audited"
    event = events[0]
    agents = str(event["agent"])
    assert "Patient/p1" in agents and claims["jti"] in agents and "app" in agents
    failures = auth.fhir("AuditEvent?outcome=4&_count=100", auditor)
    if failures.status_code == 400:  # outcome is not a search parameter of the trail
        failures = auth.fhir("AuditEvent?subtype=read&_count=100", auditor)
    outcomes = [e["resource"]["outcome"] for e in failures.json().get("entry", [])]
    assert "4" in outcomes  # the 404-by-policy and the 401 are in the trail too


def test_fhir_user_resolves_to_a_resource_the_token_may_read(auth: Harness) -> None:
    """SECURITY.md: the id_token's fhirUser resolves to a resource the access token may read."""
    for username, scope in (
        ("pat", "launch/patient openid fhirUser patient/*.rs"),
        ("doc", "openid fhirUser user/*.rs"),
    ):
        tokens = auth.tokens(username, scope=scope)
        fhir_user = auth.claims(tokens["id_token"])["fhirUser"]
        reference = fhir_user.removeprefix("http://localhost/fhir/")
        answer = auth.fhir(reference, tokens["access_token"])
        assert answer.status_code == 200, (username, fhir_user, answer.text)


def test_browser_apps_get_cors_without_credentials(auth: Harness) -> None:
    """SECURITY.md: CORS on the FHIR endpoints for browser apps, never reflecting an arbitrary
    Origin together with credentials; the preflight needs no token."""
    evil = "https://evil.example"
    preflight = auth.client.options(
        "/fhir/Patient/p1",
        headers={
            "Origin": evil,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers
    token = _patient_token(auth)
    answer = auth.client.get("/fhir/Patient/p1", headers={**_bearer(token), "Origin": evil})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "ETag" in answer.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in answer.headers
    refused = auth.client.get("/fhir/Patient/p1", headers={"Origin": evil})
    assert refused.status_code == 401  # the app can read why
    assert refused.headers["access-control-allow-origin"] == "*"
    plain = auth.client.get("/fhir/Patient/p1", headers=_bearer(token))
    assert "access-control-allow-origin" not in plain.headers
