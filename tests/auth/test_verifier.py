"""The access token verifier on the FHIR API (RFC 6750 section 3.1, RFC 9068; SECURITY.md: "No
token -> exactly 401 with WWW-Authenticate: Bearer. Expired, wrongly signed, alg: none, or
other-audience token -> 401 invalid_token")."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from healthbridge.auth.config import AuthConfig
from healthbridge.auth.issuance import Authorization, TokenIssuer
from healthbridge.auth.keys import KeyRing
from healthbridge.auth.tokens import TokenVerifier
from healthbridge.fhir.errors import Unauthorized
from healthbridge.store.instants import system_clock
from healthbridge.store.memory_records import MemoryRecords
from tests.auth.conftest import BASE, FHIR, Harness
from tests.support.sealing import SEALER


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _assert_invalid(answer: Any) -> None:
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="healthbridge"')
    assert 'error="invalid_token"' in challenge


def test_no_token_is_exactly_401_bearer(auth: Harness) -> None:
    answer = auth.fhir("Patient/p1", None)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="healthbridge"'
    basic = auth.client.get("/fhir/Patient/p1", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401
    assert basic.headers["www-authenticate"] == 'Bearer realm="healthbridge"'


def test_a_valid_token_reads(auth: Harness) -> None:
    token = auth.tokens()["access_token"]
    assert auth.fhir("Patient/p1", token).status_code == 200


def test_expired_token(auth: Harness) -> None:
    token = auth.tokens()["access_token"]
    claims = auth.claims(token)
    now = int(time.time())
    expired = auth.forge({**claims, "iat": now - 600, "exp": now - 60}, like=token)
    _assert_invalid(auth.fhir("Patient/p1", expired))
    assert auth.fhir("Patient/p1", auth.forge(claims, like=token)).status_code == 200


def test_wrongly_signed_token(auth: Harness) -> None:
    token = auth.tokens()["access_token"]
    claims = auth.claims(token)
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    other = RSAKey.generate_key(2048, private=True)
    forged = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": kid}, claims, other)
    _assert_invalid(auth.fhir("Patient/p1", forged))
    head, _body, signature = token.split(".")
    tampered = _b64({**claims, "patient": "p2"})
    _assert_invalid(auth.fhir("Patient/p2", f"{head}.{tampered}.{signature}"))


def test_alg_none_and_hs256_are_refused(auth: Harness) -> None:
    token = auth.tokens()["access_token"]
    claims = auth.claims(token)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    none = f"{_b64({**header, 'alg': 'none'})}.{_b64(claims)}."
    _assert_invalid(auth.fhir("Patient/p1", none))
    # HS256 "signed" with the public key's bytes: the classic algorithm confusion.
    public = json.dumps(auth.client.get("/auth/jwks").json()["keys"][0]).encode()
    hs = jwt.encode(
        {**header, "alg": "HS256"}, claims, OctKey.import_key(public), algorithms=["HS256"]
    )
    _assert_invalid(auth.fhir("Patient/p1", hs))


def test_other_audience_issuer_and_type(auth: Harness) -> None:
    tokens = auth.tokens()
    token = tokens["access_token"]
    claims = auth.claims(token)
    _assert_invalid(
        auth.fhir("Patient/p1", auth.forge({**claims, "aud": "https://x/fhir"}, like=token))
    )
    _assert_invalid(auth.fhir("Patient/p1", auth.forge({**claims, "iss": "https://x"}, like=token)))
    # An id_token (signed by the same key, typ JWT, aud = the client) is no access token.
    _assert_invalid(auth.fhir("Patient/p1", tokens["id_token"]))
    missing = {k: v for k, v in claims.items() if k != "jti"}
    _assert_invalid(auth.fhir("Patient/p1", auth.forge(missing, like=token)))


@pytest.mark.parametrize(
    "garbage", ["x", "a.b.c", "Zm9v.YmFy.YmF6", "e30.e30.", "." * 3, "é" * 20, "a" * 10000]
)
def test_garbage_tokens(auth: Harness, garbage: str) -> None:
    answer = auth.client.get(
        "/fhir/Patient/p1", headers={"Authorization": f"Bearer {garbage}".encode()}
    )
    _assert_invalid(answer)


# --- the verifier on its own ------------------------------------------------------------------


async def _setup() -> tuple[TokenIssuer, TokenVerifier, MemoryRecords]:
    records = MemoryRecords(system_clock)
    config = AuthConfig(BASE, FHIR, frozenset({FHIR}))
    keys = KeyRing(records, system_clock, timedelta(days=30), timedelta(minutes=10), sealer=SEALER)
    await keys.refresh()
    return TokenIssuer(config, keys), TokenVerifier(keys, records, BASE, frozenset({FHIR})), records


def _authorization(**kw: Any) -> Authorization:
    fields: dict[str, Any] = {
        "grant": "g1",
        "subject": "pat",
        "client_id": "app",
        "scope": "patient/Observation.rs openid",
        "fhir_user": "Patient/p1",
        "patient": "p1",
        "roles": frozenset({"auditor"}),
    }
    fields.update(kw)
    return Authorization(**fields)


async def test_the_access_context() -> None:
    issuer, verifier, _ = await _setup()
    token, claims = issuer.access_token(_authorization(encounter="e1"), "patient/Observation.rs")
    access = await verifier.authenticate(f"Bearer {token}")
    assert access.patient == "p1" and access.encounter == "e1"
    assert access.fhir_user == "Patient/p1" and access.client_id == "app"
    assert access.subject == "pat" and access.grant == "g1" and access.jti == claims["jti"]
    assert access.roles == frozenset({"auditor"}) and not access.unrestricted
    assert [s.text for s in access.scopes.resources] == ["patient/Observation.rs"]


async def test_revocation_by_jti_or_grant_takes_effect_at_once() -> None:
    issuer, verifier, records = await _setup()
    token, claims = issuer.access_token(_authorization(), "patient/*.rs")
    await verifier.authenticate(f"Bearer {token}")
    await records.add_record("revoked-token", claims["jti"], {})
    await records.signal.changed()  # what every revoking writer does after it commits
    with pytest.raises(Unauthorized) as raised:
        await verifier.authenticate(f"Bearer {token}")
    assert 'error="invalid_token"' in raised.value.headers["WWW-Authenticate"]
    other, _ = issuer.access_token(_authorization(grant="g2"), "patient/*.rs")
    await verifier.authenticate(f"Bearer {other}")
    await records.add_record("revoked-grant", "g2", {})
    await records.signal.changed()
    with pytest.raises(Unauthorized):
        await verifier.authenticate(f"Bearer {other}")


async def test_the_cache_is_bounded_and_the_hot_path_is_fast() -> None:
    records = MemoryRecords(system_clock)
    config = AuthConfig(BASE, FHIR, frozenset({FHIR}))
    keys = KeyRing(records, system_clock, timedelta(days=30), timedelta(minutes=10), sealer=SEALER)
    await keys.refresh()
    issuer = TokenIssuer(config, keys)
    verifier = TokenVerifier(keys, records, BASE, frozenset({FHIR}), cache_size=8)
    tokens = [issuer.access_token(_authorization(), "patient/*.rs")[0] for _ in range(20)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._cache) == 8
    hot = f"Bearer {tokens[-1]}"
    started = time.perf_counter()
    for _ in range(2000):
        await verifier.authenticate(hot)
    per_call = (time.perf_counter() - started) / 2000
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} us per verification"
