"""The events the authorization server reports for the audit trail (SECURITY.md: "token
issue/refresh/revoke, login/logout/failed login ... produces an AuditEvent"): the service calls
the sink it is given for each of them, with the user, client, token jti and address."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.testclient import TestClient

from healthbridge.auth.config import AuthConfig
from healthbridge.auth.events import AuthEvent
from healthbridge.auth.service import AuthService
from healthbridge.store.memory import MemoryRepository
from tests.auth.conftest import BASE, FHIR, PATIENT_RESOURCE, Harness
from tests.support.sealing import SEALER


def test_every_sign_in_and_token_event_reaches_the_sink() -> None:
    events: list[AuthEvent] = []

    async def sink(event: AuthEvent) -> None:
        events.append(event)

    repo = MemoryRepository()
    service = AuthService(
        AuthConfig(BASE, FHIR, frozenset({FHIR})), repo, sealer=SEALER, events=sink
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.close()

    app = Starlette(routes=service.routes(), lifespan=lifespan)
    with TestClient(app, base_url=BASE) as client:
        auth = Harness(client, repo, sealer=SEALER)
        auth.put(PATIENT_RESOURCE)
        auth.user("pat", "Patient/p1")
        auth.public_app()
        params = auth.authorize_params()
        assert auth.sign_in(params, "pat", "wrong password").status_code == 401
        tokens = auth.tokens()
        refreshed = client.post(
            "/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": "app",
            },
        ).json()
        client.post("/auth/revoke", data={"token": refreshed["access_token"], "client_id": "app"})
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["login-failed", "login"]
    assert "token-issued" in kinds and "token-refreshed" in kinds and "token-revoked" in kinds
    issued = next(e for e in events if e.kind == "token-issued")
    assert issued.subject == "pat" and issued.client_id == "app" and issued.patient == "p1"
    assert issued.jti == auth.claims(tokens["access_token"])["jti"]
    assert issued.address == "testclient" and issued.grant
    revoked = next(e for e in events if e.kind == "token-revoked")
    assert revoked.jti == auth.claims(refreshed["access_token"])["jti"]
    failed = events[0]
    assert failed.outcome == "failure" and failed.subject == "pat"


def test_sign_ins_and_tokens_reach_the_audit_trail(auth: Harness) -> None:
    """Through the app: the audit trail (docs/audit.md) holds a Login and an ITI-71 token
    AuditEvent for the user, and the failed sign-in as a failure."""
    params = auth.authorize_params()
    assert auth.sign_in(params, "pat", "wrong password").status_code == 401
    auth.tokens()
    auth.user("aud", None, "auditor")
    token = auth.tokens("aud", scope="openid user/*.rs")["access_token"]
    seen: list[tuple[str, str | None, str]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = auth.fhir("AuditEvent?_count=100", token)
        assert answer.status_code == 200, answer.text
        seen = [
            (
                ",".join(c["code"] for c in e["resource"].get("subtype", [])),
                e["resource"]["agent"][0].get("who", {}).get("identifier", {}).get("value"),
                e["resource"]["outcome"],
            )
            for e in answer.json().get("entry", [])
        ]
        if any("token-issue" in s and who == "pat" for s, who, _ in seen):
            break
        time.sleep(0.2)
    assert ("110122", "pat", "0") in seen  # the sign-in
    assert any(s == "110122" and who == "pat" and outcome != "0" for s, who, outcome in seen)
    assert any("token-issue" in s and "ITI-71" in s and who == "pat" for s, who, _ in seen)
