"""The administrators' client registration API (RFC 7591 metadata; not open dynamic
registration: SECURITY.md "Patient and user tokens cannot call ... client registration")."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.auth.conftest import REDIRECT, Harness

KEY = RSAKey.generate_key(2048, parameters={"kid": "svc-key"}, private=True)


def _admin(auth: Harness) -> dict[str, str]:
    token = auth.tokens("admin", scope="openid user/*.rs")["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _register(auth: Harness, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return auth.client.post("/auth/register", json=body, headers=headers)


def test_registration_needs_an_admin_token(auth: Harness) -> None:
    body = {"client_name": "X", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    assert auth.client.post("/auth/register", json=body).status_code == 401
    patient = {"Authorization": f"Bearer {auth.tokens()['access_token']}"}
    assert _register(auth, body, patient).status_code == 403
    assert auth.client.get("/auth/register/app", headers=patient).status_code == 403


def test_register_a_confidential_app_then_use_and_disable_it(auth: Harness) -> None:
    admin = _admin(auth)
    answer = _register(
        auth,
        {
            "client_name": "Registered App",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_post",
            "grant_types": ["authorization_code"],
            "scope": "openid patient/*.rs",
        },
        admin,
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    made = answer.json()
    client_id, secret = made["client_id"], made["client_secret"]
    assert made["token_endpoint_auth_method"] == "client_secret_post"
    shown = auth.client.get(f"/auth/register/{client_id}", headers=admin).json()
    assert shown["client_name"] == "Registered App" and "client_secret" not in shown
    stored = auth.run(auth.repo.records.get_record("client", client_id))
    assert stored is not None and secret not in str(stored.value)
    params = auth.authorize_params(client_id=client_id, scope="openid patient/*.rs")
    code = auth.code_for(params)
    token = auth.exchange(params, code, client_secret=secret)
    assert token.status_code == 200, token.text
    assert auth.client.delete(f"/auth/register/{client_id}", headers=admin).status_code == 204
    params = auth.authorize_params(client_id=client_id, scope="openid patient/*.rs")
    query = {k: v for k, v in params.items() if not k.startswith("_")}
    assert auth.client.get("/auth/authorize", params=query).status_code == 400


def test_register_a_backend_service(auth: Harness) -> None:
    admin = _admin(auth)
    answer = _register(
        auth,
        {
            "client_name": "Nightly export",
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "scope": "system/*.rs",
            "jwks": {"keys": [KEY.as_dict(private=False)]},
        },
        admin,
    )
    assert answer.status_code == 201, answer.text
    client_id = answer.json()["client_id"]
    assert "client_secret" not in answer.json()
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": "http://localhost/auth/token",
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode({"alg": "RS384", "kid": "svc-key"}, claims, KEY, algorithms=["RS384"])
    token = auth.client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert token.status_code == 200, token.text


@pytest.mark.parametrize(
    "body",
    [
        {"client_name": "x", "redirect_uris": ["http://evil.example/cb"]},
        {"client_name": "x", "redirect_uris": ["javascript:alert(1)"]},
        {"client_name": "x", "redirect_uris": ["https://a.example/cb#frag"]},
        {"client_name": "x", "redirect_uris": []},
        {"client_name": "", "redirect_uris": [REDIRECT]},
        {"client_name": "x", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "magic"},
        {
            "client_name": "x",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "none",
        },
        {
            "client_name": "x",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [KEY.as_dict(private=True)]},
        },
        {"client_name": "x", "redirect_uris": [REDIRECT], "scope": "patient/Observation.xyz"},
        {"client_name": "x", "redirect_uris": "not a list"},
    ],
)
def test_bad_metadata(auth: Harness, body: dict[str, Any]) -> None:
    answer = _register(auth, body, _admin(auth))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] in ("invalid_client_metadata", "invalid_request")


def test_native_and_loopback_redirects_are_allowed(auth: Harness) -> None:
    body = {
        "client_name": "Native",
        "token_endpoint_auth_method": "none",
        "redirect_uris": ["com.example.app:/callback", "http://127.0.0.1:7777/cb"],
    }
    assert _register(auth, body, _admin(auth)).status_code == 201
