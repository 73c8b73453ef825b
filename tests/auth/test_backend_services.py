"""SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html):
client_credentials with private_key_jwt (RFC 7523). SECURITY.md: "jti replay -> invalid_client;
exp more than 5 minutes ahead, wrong aud, unknown iss/client_id, unregistered jku, no matching
kid -> rejected; RS384 and ES384 accepted; HS256/none refused; JWKS fetched only from the
registered URL with size cap, timeout and bounded caching"."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from healthbridge.auth import client_jwks
from healthbridge.auth.clients import Client
from tests.auth.conftest import Harness, make_harness

TOKEN_URL = "http://localhost/auth/token"
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
EC = ECKey.generate_key("P-384", parameters={"kid": "ec-1"}, private=True)
PUBLIC_JWKS = {"keys": [RSA.as_dict(private=False), EC.as_dict(private=False)]}


def assertion(
    client_id: str = "svc",
    *,
    key: Any = RSA,
    alg: str = "RS384",
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    head = {"alg": alg, "typ": "JWT", "kid": key.kid, **(header or {})}
    return jwt.encode(head, body, key, algorithms=[alg])


def backend_client(
    client_id: str = "svc", *, jwks: dict[str, Any] | None = None, jwks_uri: str | None = None
) -> Client:
    return Client(
        client_id,
        "Backend Service",
        "private_key_jwt",
        (),
        frozenset({"client_credentials"}),
        "system/*.rs system/Observation.cruds",
        jwks=jwks if jwks_uri is None else None,
        jwks_uri=jwks_uri,
    )


def token_request(auth: Harness, client_assertion: str, scope: str = "system/*.rs") -> Any:
    return auth.client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion,
        },
    )


@pytest.fixture
def backend(auth: Harness) -> Harness:
    auth.register(backend_client(jwks=PUBLIC_JWKS))
    return auth


def _refused(answer: Any) -> None:
    assert answer.status_code in (400, 401), answer.text
    assert answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize(("key", "alg"), [(RSA, "RS384"), (EC, "ES384")])
def test_rs384_and_es384_are_accepted(backend: Harness, key: Any, alg: str) -> None:
    answer = token_request(backend, assertion(key=key, alg=alg))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "system/*.rs"
    assert "refresh_token" not in body and "id_token" not in body
    assert answer.headers["cache-control"] == "no-store"
    claims = backend.claims(body["access_token"])
    assert claims["sub"] == "svc" and claims["client_id"] == "svc"
    assert backend.fhir("Patient/p1", body["access_token"]).status_code == 200


def test_jti_replay_is_invalid_client(backend: Harness) -> None:
    once = assertion()
    assert token_request(backend, once).status_code == 200
    _refused(token_request(backend, once))


def test_exp_more_than_five_minutes_ahead(backend: Harness) -> None:
    _refused(token_request(backend, assertion(exp=int(time.time()) + 600)))
    _refused(token_request(backend, assertion(exp=int(time.time()) - 120)))  # expired
    assert token_request(backend, assertion(exp=int(time.time()) + 290)).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://other.example/token"},
        {"aud": "http://localhost/fhir"},
        {"iss": "someone-else"},
        {"jti": None},
    ],
)
def test_wrong_claims(backend: Harness, claims: dict[str, Any]) -> None:
    if claims.get("jti", 1) is None:
        now = int(time.time())
        body = {"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": now + 200}
        token = jwt.encode({"alg": "RS384", "kid": "rsa-1"}, body, RSA, algorithms=["RS384"])
        _refused(token_request(backend, token))
        return
    _refused(token_request(backend, assertion(**claims)))


def test_unknown_client(backend: Harness) -> None:
    _refused(token_request(backend, assertion("nobody")))


def test_unregistered_jku_and_unknown_kid(backend: Harness) -> None:
    _refused(token_request(backend, assertion(header={"jku": "https://evil.example/jwks"})))
    _refused(token_request(backend, assertion(header={"kid": "no-such-key"})))
    headless = assertion(header={"kid": ""})
    _refused(token_request(backend, headless))
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
    _refused(token_request(backend, assertion(key=stranger)))  # right kid, wrong key


def test_hs256_none_and_rs256_are_refused(backend: Harness) -> None:
    secret = OctKey.import_key(b"a shared secret that is long enough!")
    hs = assertion(key=secret, alg="HS256", header={"kid": "rsa-1"})
    _refused(token_request(backend, hs))
    good = assertion().split(".")
    header = json.loads(base64.urlsafe_b64decode(good[0] + "=="))
    none_head = base64.urlsafe_b64encode(json.dumps({**header, "alg": "none"}).encode())
    _refused(token_request(backend, f"{none_head.rstrip(b'=').decode()}.{good[1]}."))
    _refused(token_request(backend, assertion(alg="RS256")))


def test_scopes_must_be_system_and_registered(backend: Harness) -> None:
    answer = token_request(backend, assertion(), scope="patient/*.rs")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_scope"
    answer = token_request(backend, assertion(), scope="system/Patient.cruds")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_scope"
    answer = token_request(backend, assertion(), scope="system/Observation.rs system/Patient.c")
    assert answer.status_code == 200 and answer.json()["scope"] == "system/Observation.rs"


def test_client_credentials_needs_the_grant_type(auth: Harness) -> None:
    client = backend_client("coder", jwks=PUBLIC_JWKS)
    auth.register(
        Client(
            "coder",
            client.name,
            "private_key_jwt",
            ("https://app.example.org/callback",),
            frozenset({"authorization_code"}),
            client.scope,
            jwks=PUBLIC_JWKS,
        )
    )
    answer = token_request(auth, assertion("coder"))
    assert answer.status_code == 400 and answer.json()["error"] == "unauthorized_client"


# --- JWKS by URL ----------------------------------------------------------------------------


class _JwksServer:
    """A tiny HTTP server on 127.0.0.1 that counts the requests it gets."""

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None):
        self.hits = 0
        self.body = body
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer(json.dumps(PUBLIC_JWKS).encode())
    yield server
    server.close()


def test_jwks_fetched_from_an_allow_listed_url_and_cached(
    tmp_path: Path, jwks_server: _JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = f"127.0.0.1:{jwks_server.port}"
    for auth in make_harness("memory", tmp_path, auth_jwks_allowed_hosts=allowed):
        auth.register(backend_client(jwks_uri=jwks_server.url))
        assert token_request(auth, assertion()).status_code == 200
        assert token_request(auth, assertion(key=EC, alg="ES384")).status_code == 200
        assert jwks_server.hits == 1  # cached
        # An unknown kid refetches, but not within MIN_REFETCH_S of the last fetch.
        _refused(token_request(auth, assertion(header={"kid": "rotated"})))
        assert jwks_server.hits == 1
        monkeypatch.setattr(client_jwks, "MIN_REFETCH_S", 0.0)
        rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"}, private=True)
        jwks_server.body = json.dumps({"keys": [rotated.as_dict(private=False)]}).encode()
        assert token_request(auth, assertion(key=rotated)).status_code == 200
        assert jwks_server.hits == 2


def test_jwks_url_on_loopback_is_refused_unless_allow_listed(
    auth: Harness, jwks_server: _JwksServer
) -> None:
    auth.register(backend_client(jwks_uri=jwks_server.url))
    _refused(token_request(auth, assertion()))
    assert jwks_server.hits == 0  # no connection was made
