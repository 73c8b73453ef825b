"""Discovery: SMART's ``/fhir/.well-known/smart-configuration``
(https://hl7.org/fhir/smart-app-launch/conformance.html#using-well-known), OpenID Connect's
``/.well-known/openid-configuration``
(https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata) and the JWKS
(RFC 7517) at ``/auth/jwks``. All three are public, cacheable for a short while, and allow any
origin (CORS without credentials).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from healthbridge.auth.client_auth import ALGORITHMS as CLIENT_ASSERTION_ALGORITHMS
from healthbridge.auth.clients import AUTH_METHODS
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.http import CORS_HEADERS
from healthbridge.auth.keys import ALGORITHM, KeyRing

CAPABILITIES = (
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
    "permission-v1",
    "permission-v2",
)
SCOPES = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
CACHE = "public, max-age=300"


def _endpoints(config: AuthConfig) -> dict[str, str]:
    return {
        "issuer": config.issuer,
        "jwks_uri": config.url("/auth/jwks"),
        "authorization_endpoint": config.url("/auth/authorize"),
        "token_endpoint": config.token_endpoint,
        "registration_endpoint": config.url("/auth/register"),
        "revocation_endpoint": config.url("/auth/revoke"),
        "introspection_endpoint": config.url("/auth/introspect"),
    }


def smart_configuration(config: AuthConfig) -> dict[str, Any]:
    return {
        **_endpoints(config),
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGORITHMS),
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": list(CAPABILITIES),
    }


def capability_security(config: AuthConfig) -> dict[str, Any]:
    """``CapabilityStatement.rest.security`` for SMART clients that still read endpoints from
    the CapabilityStatement (https://hl7.org/fhir/smart-app-launch/conformance.html#using-cs,
    the ``oauth-uris`` extension, e.g. fhirclient) rather than ``.well-known``."""
    endpoints = _endpoints(config)
    names = {
        "authorize": "authorization_endpoint",
        "token": "token_endpoint",
        "register": "registration_endpoint",
        "revoke": "revocation_endpoint",
        "introspect": "introspection_endpoint",
    }
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": name, "valueUri": endpoints[key]} for name, key in names.items()
                ],
            }
        ],
    }


def openid_configuration(config: AuthConfig) -> dict[str, Any]:
    return {
        **_endpoints(config),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": list(SCOPES),
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
    }


class Discovery:
    def __init__(self, config: AuthConfig, keys: KeyRing) -> None:
        self._config = config
        self._keys = keys

    def _json(self, body: dict[str, Any], cache: str = CACHE) -> Response:
        return JSONResponse(body, headers={**CORS_HEADERS, "Cache-Control": cache})

    async def smart(self, request: Request) -> Response:
        return self._json(smart_configuration(self._config))

    async def openid(self, request: Request) -> Response:
        return self._json(openid_configuration(self._config))

    async def jwks(self, request: Request) -> Response:
        await self._keys.current()
        return self._json(self._keys.jwks(), cache="public, max-age=60")
