"""The authorization code flow (RFC 6749 section 4.1, RFC 7636 PKCE, SMART App Launch
https://hl7.org/fhir/smart-app-launch/app-launch.html) and SECURITY.md's items: wrong code 400,
wrong client 400/401, reused code 400 invalid_grant with its tokens revoked, codes live at most
10 minutes, PKCE (missing, blank, wrong, verifier = challenge, plain) refused, unregistered
redirect URIs never redirected to, invalid aud or launch -> no code, the token response fields
and headers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from pydantic import ValidationError

from healthbridge.auth.clients import Client
from healthbridge.settings import Settings
from tests.auth.conftest import FHIR, REDIRECT, Harness, make_harness, pkce, query_of


def _authorize(auth: Harness, params: dict[str, str]) -> Any:
    query = {k: v for k, v in params.items() if not k.startswith("_")}
    return auth.client.get("/auth/authorize?" + urlencode(query), follow_redirects=False)


def _refused_by_redirect(answer: Any, params: dict[str, str], error: str) -> None:
    assert answer.status_code == 302, answer.text
    found = query_of(answer.headers["location"])
    assert answer.headers["location"].startswith(REDIRECT)
    assert found["error"] == error and found["state"] == params["state"]
    assert "code" not in found


def test_the_whole_flow_and_the_token_response(any_auth: Harness) -> None:
    auth = any_auth
    params = auth.authorize_params()
    code = auth.code_for(params)
    answer = auth.exchange(params, code)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["pragma"] == "no-cache"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert set(body["scope"].split()) == {
        "launch/patient",
        "openid",
        "fhirUser",
        "offline_access",
        "patient/*.rs",
    }
    assert body["patient"] == "p1"
    assert body["refresh_token"] and body["id_token"] and body["access_token"]
    claims = auth.claims(body["access_token"])
    assert claims["iss"] == "http://localhost" and claims["aud"] == FHIR
    assert claims["sub"] == "pat" and claims["client_id"] == "app"
    assert claims["patient"] == "p1" and claims["fhirUser"] == "Patient/p1"
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"] and claims["grant"]
    assert auth.fhir("Patient/p1", body["access_token"]).status_code == 200


def test_wrong_code(auth: Harness) -> None:
    params = auth.authorize_params()
    auth.code_for(params)
    answer = auth.exchange(params, "not-a-code")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_wrong_client(auth: Harness) -> None:
    auth.public_app("other")
    params = auth.authorize_params()
    code = auth.code_for(params)
    answer = auth.exchange(params, code, client_id="other")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    unknown = auth.exchange(params, code, client_id="nobody")
    assert unknown.status_code in (400, 401) and unknown.json()["error"] == "invalid_client"


def test_confidential_client_must_authenticate(auth: Harness) -> None:
    secret = auth.secret_app()
    params = auth.authorize_params(client_id="conf")
    code = auth.code_for(params)
    anonymous = auth.exchange(params, code)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    params = auth.authorize_params(client_id="conf")
    code = auth.code_for(params)
    wrong = auth.client.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": params["_verifier"],
        },
        auth=("conf", "wrong-secret"),
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    params = auth.authorize_params(client_id="conf")
    code = auth.code_for(params)
    right = auth.client.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": params["_verifier"],
        },
        auth=("conf", secret),
    )
    assert right.status_code == 200, right.text


def test_a_reused_code_fails_and_revokes_its_tokens(any_auth: Harness) -> None:
    auth = any_auth
    params = auth.authorize_params()
    code = auth.code_for(params)
    first = auth.exchange(params, code).json()
    assert auth.fhir("Patient/p1", first["access_token"]).status_code == 200
    again = auth.exchange(params, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert auth.fhir("Patient/p1", first["access_token"]).status_code == 401
    refresh = auth.client.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": "app",
        },
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_codes_expire(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(auth_code_seconds=601)
    assert Settings().auth_code_seconds <= 600
    for auth in make_harness("memory", tmp_path, auth_code_seconds=1):
        params = auth.authorize_params()
        code = auth.code_for(params)
        time.sleep(1.2)
        answer = auth.exchange(params, code)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "missing"),
        ({"code_challenge": ""}, "blank"),
        ({"code_challenge_method": "plain"}, "plain"),
        ({"code_challenge_method": None}, "no method (plain by default)"),
        ({"code_challenge": "short"}, "malformed"),
    ],
)
def test_pkce_is_required_and_s256_only(
    auth: Harness, overrides: dict[str, str | None], reason: str
) -> None:
    params = auth.authorize_params(**overrides)
    _refused_by_redirect(_authorize(auth, params), params, "invalid_request")


def test_pkce_is_required_of_confidential_clients_too(auth: Harness) -> None:
    auth.secret_app()
    params = auth.authorize_params(
        client_id="conf", code_challenge=None, code_challenge_method=None
    )
    _refused_by_redirect(_authorize(auth, params), params, "invalid_request")


@pytest.mark.parametrize("verifier", ["", "wrong", "x" * 43, "challenge"])
def test_pkce_verifier_must_match(auth: Harness, verifier: str) -> None:
    params = auth.authorize_params()
    code = auth.code_for(params)
    if verifier == "challenge":
        verifier = params["code_challenge"]  # the verifier equal to the challenge
    answer = auth.exchange(params, code, code_verifier=verifier)
    assert answer.status_code in (400, 401)
    assert answer.json()["error"] in ("invalid_request", "invalid_grant")


def test_a_verifier_without_parameter_is_refused(auth: Harness) -> None:
    params = auth.authorize_params()
    code = auth.code_for(params)
    answer = auth.client.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": "app",
        },
    )
    assert answer.status_code == 400


@pytest.mark.parametrize(
    "redirect",
    [
        "https://evil.example/callback",
        REDIRECT + "/extra",
        REDIRECT + "?x=1",
        REDIRECT.upper(),
        "https://app.example.org/callback#frag",
    ],
)
def test_unregistered_redirect_uris_are_never_redirected_to(auth: Harness, redirect: str) -> None:
    params = auth.authorize_params(redirect_uri=redirect)
    answer = _authorize(auth, params)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "text/html" in answer.headers["content-type"]
    # Not even after signing in and posting the consent form with the bad URI.
    good = auth.authorize_params()
    page = auth.consent_page(good)
    tampered = page.text.replace(REDIRECT, redirect)
    posted = auth.approve(tampered)
    assert posted.status_code == 400 and "location" not in posted.headers


def test_unknown_client_gets_an_error_page(auth: Harness) -> None:
    params = auth.authorize_params(client_id="nobody")
    answer = _authorize(auth, params)
    assert answer.status_code == 400 and "location" not in answer.headers


@pytest.mark.parametrize("aud", ["https://other.example/fhir", FHIR + "/", "", None])
def test_invalid_aud_gets_no_code(auth: Harness, aud: str | None) -> None:
    params = auth.authorize_params(aud=aud)
    if aud == "":
        params["aud"] = ""
    _refused_by_redirect(_authorize(auth, params), params, "invalid_request")


def test_loopback_aliases_of_the_base_are_accepted(tmp_path: Path) -> None:
    for auth in make_harness("memory", tmp_path, public_base_url="http://127.0.0.1:8080/fhir"):
        params = auth.authorize_params(aud="http://localhost:8080/fhir")
        assert _authorize(auth, params).status_code == 200


def test_invalid_launch_gets_no_code(auth: Harness) -> None:
    params = auth.authorize_params(scope="launch openid patient/*.rs", launch="made-up")
    _refused_by_redirect(_authorize(auth, params), params, "invalid_request")
    # The launch scope without a launch parameter is no EHR launch either.
    params = auth.authorize_params(scope="launch openid patient/*.rs")
    _refused_by_redirect(_authorize(auth, params), params, "invalid_request")


def test_scopes_the_client_may_not_ask_for(auth: Harness) -> None:
    auth.public_app("narrow", scope="openid patient/Observation.rs")
    params = auth.authorize_params(client_id="narrow", scope="patient/Patient.rs")
    _refused_by_redirect(_authorize(auth, params), params, "invalid_scope")
    params = auth.authorize_params(client_id="narrow", scope="patient/Observation.xyz")
    _refused_by_redirect(_authorize(auth, params), params, "invalid_scope")
    # Asking for more than allowed: only the allowed part is offered.
    params = auth.authorize_params(
        client_id="narrow", scope="openid patient/Observation.rs patient/Patient.rs"
    )
    code = auth.code_for(params)
    body = auth.exchange(params, code).json()
    assert set(body["scope"].split()) == {"openid", "patient/Observation.rs"}


def test_deny_returns_access_denied_with_state(auth: Harness) -> None:
    params = auth.authorize_params()
    page = auth.consent_page(params)
    answer = auth.approve(page.text, decision="deny")
    _refused_by_redirect(answer, params, "access_denied")


def test_forms_need_their_csrf_token(auth: Harness) -> None:
    params = auth.authorize_params()
    page = auth.consent_page(params)
    data = {k: v for k, v in auth_fields(page.text).items() if k != "csrf"}
    data["decision"] = "allow"
    answer = auth.client.post("/auth/authorize", data=data, follow_redirects=False)
    assert answer.status_code == 403 and "location" not in answer.headers
    data["csrf"] = "forged-token-forged-token"
    answer = auth.client.post("/auth/authorize", data=data, follow_redirects=False)
    assert answer.status_code == 403
    login = auth.client.post(
        "/auth/login", data={"username": "pat", "password": "x" * 10, "next": ""}
    )
    assert login.status_code == 403


def auth_fields(html: str) -> dict[str, str]:
    from tests.auth.forms import form

    return dict(form(html, "/auth/authorize").fields)


def test_state_is_echoed_exactly(auth: Harness) -> None:
    state = "a b&c=d/é"
    params = auth.authorize_params(state=state)
    code = auth.code_for(params)
    assert code


def test_the_redirect_keeps_registered_query_parameters(auth: Harness) -> None:
    uri = "https://app.example.org/cb?tenant=7"
    auth.register(
        Client("q", "Query App", "none", (uri,), frozenset({"authorization_code"}), "openid")
    )
    _verifier, challenge = pkce()
    params = auth.authorize_params(
        client_id="q", redirect_uri=uri, scope="openid", code_challenge=challenge
    )
    page = auth.consent_page(params)
    answer = auth.approve(page.text)
    found = query_of(answer.headers["location"])
    assert found["tenant"] == "7" and found["code"]


def test_id_token_verifies_against_jwks_uri_and_fhir_user_resolves(auth: Harness) -> None:
    """OpenID Connect Core 3.1.3.7 and SMART's fhirUser: the id_token is signed by a key of
    ``jwks_uri``, is for this client, echoes the nonce, and its fhirUser is readable."""
    params = auth.authorize_params(nonce="n-0S6_WzA2Mj")
    body = auth.exchange(params, auth.code_for(params)).json()
    config = auth.client.get("/.well-known/openid-configuration").json()
    jwks = KeySet.import_key_set(auth.client.get(urlsplit(config["jwks_uri"]).path).json())
    id_token = jwt.decode(body["id_token"], jwks, algorithms=["RS256"])
    claims = id_token.claims
    assert claims["iss"] == config["issuer"] and claims["aud"] == ["app"]
    assert claims["sub"] == "pat" and claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["exp"] > time.time() and claims["auth_time"] <= time.time()
    assert claims["fhirUser"] == f"{FHIR}/Patient/p1"
    relative = claims["fhirUser"].removeprefix(FHIR + "/")
    assert auth.fhir(relative, body["access_token"]).status_code == 200
