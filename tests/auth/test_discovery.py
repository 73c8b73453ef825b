"""Discovery and CORS (SMART App Launch conformance
https://hl7.org/fhir/smart-app-launch/conformance.html, OpenID Connect Discovery 1.0, RFC 7517):
SECURITY.md "code_challenge_methods_supported is exactly ["S256"]; CORS is allowed on
discovery, token and FHIR endpoints for browser apps, never reflecting an arbitrary Origin
together with credentials"."""

from __future__ import annotations

from tests.auth.conftest import BASE, FHIR, Harness

EVIL = "https://evil.example"


def test_smart_configuration_lists_endpoints_and_capabilities(auth: Harness) -> None:
    answer = auth.client.get("/fhir/.well-known/smart-configuration")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    config = answer.json()
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["issuer"] == BASE
    assert config["authorization_endpoint"] == f"{BASE}/auth/authorize"
    assert config["token_endpoint"] == f"{BASE}/auth/token"
    assert config["jwks_uri"] == f"{BASE}/auth/jwks"
    assert config["revocation_endpoint"] == f"{BASE}/auth/revoke"
    assert config["introspection_endpoint"] == f"{BASE}/auth/introspect"
    assert config["registration_endpoint"] == f"{BASE}/auth/register"
    assert set(config["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert config["response_types_supported"] == ["code"]
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    required = {
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-standalone-patient",
        "permission-offline",
        "permission-patient",
        "permission-user",
        "permission-v2",
    }
    assert required <= set(config["capabilities"])
    assert {"openid", "fhirUser", "launch/patient", "offline_access"} <= set(
        config["scopes_supported"]
    )


def test_openid_configuration(auth: Harness) -> None:
    config = auth.client.get("/.well-known/openid-configuration").json()
    assert config["issuer"] == BASE
    assert config["jwks_uri"] == f"{BASE}/auth/jwks"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["subject_types_supported"] == ["public"]


def test_jwks_publishes_public_keys_only(auth: Harness) -> None:
    keys = auth.client.get("/auth/jwks").json()["keys"]
    assert len(keys) >= 1
    for key in keys:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_cors_on_discovery_never_reflects_origin_with_credentials(auth: Harness) -> None:
    for path in ("/fhir/.well-known/smart-configuration", "/.well-known/openid-configuration"):
        answer = auth.client.get(path, headers={"Origin": EVIL})
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in answer.headers
    answer = auth.client.get("/auth/jwks", headers={"Origin": EVIL})
    assert answer.headers["access-control-allow-origin"] == "*"


def test_cors_on_the_token_endpoint(auth: Harness) -> None:
    preflight = auth.client.options(
        "/auth/token",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in preflight.headers
    answer = auth.client.post(
        "/auth/token", data={"grant_type": "authorization_code"}, headers={"Origin": EVIL}
    )
    assert answer.status_code in (400, 401)
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers


def test_sign_in_pages_send_no_cors_headers(auth: Harness) -> None:
    params = {k: v for k, v in auth.authorize_params().items() if not k.startswith("_")}
    page = auth.client.get("/auth/authorize", params=params, headers={"Origin": EVIL})
    assert page.status_code == 200
    assert "access-control-allow-origin" not in page.headers


def test_discovery_is_under_the_fhir_base(auth: Harness) -> None:
    """The document lives at ``{FHIR base}/.well-known/smart-configuration`` although every
    other path under /fhir/ belongs to the FHIR API."""
    assert auth.client.get(f"{FHIR}/.well-known/smart-configuration").status_code == 200
    assert auth.client.get("/fhir/.well-known/other").status_code in (400, 401, 404)


def test_the_capability_statement_names_the_smart_endpoints(auth: Harness) -> None:
    """SMART conformance through the CapabilityStatement (the oauth-uris extension), for
    clients such as fhirclient that look there; public like discovery."""
    statement = auth.client.get("/fhir/metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert security["extension"][0]["url"].endswith("/oauth-uris")
    assert uris["authorize"] == f"{BASE}/auth/authorize"
    assert uris["token"] == f"{BASE}/auth/token"
    assert uris["revoke"] == f"{BASE}/auth/revoke"
